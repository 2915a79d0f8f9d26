// The AVX2 path of kFast (int_kernels.h): weight packing and the kernels.
// Internal to int_kernels.cpp, which calls a kernel only on an x86-64 CPU that
// reports AVX2 and threads the calls. The kernels are bit-exact with the
// reference loops for every int8 weight in [-127, 127] and every uint8 or int8
// activation, given the caller's bound 255 * sum|w| <= 2^31 - 1 per output
// channel (int_kernels.cpp checks it); int_kernels_avx2.cpp says why.
#pragma once

#include <cstdint>
#include <vector>

namespace dfq::detail::avx2 {

// The sizes of one call: input nhwc [N, H, W, C], weight [O, C / G, KH, KW],
// output nhwc [N, Ho, Wo, O].
struct ConvShape {
  int64_t N, C, H, W, O, KH, KW, G, Ho, Wo;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

// How a layer's weights are packed (chosen by pack() from the weights and
// whether the kernels may use AVX-VNNI):
//  kBytes: max|w| <= 64, or any int8 weights with vnni; uint8 patches times
//          int8 weights by vpmaddubsw (vnni: vpdpbusd, AVX-VNNI's 256-bit form).
//  kPairs: 8-bit weights (max|w| > 64); int16 patches times int16 weights by vpmaddwd.
//  kDepthwise: one input and one output channel per group; vpmaddwd over pairs of taps.
enum class Scheme { kBytes, kPairs, kDepthwise };

// A step is 4 reduction indices (kBytes) or 2 (kPairs, kDepthwise: 2 taps).
// kBytes and kPairs reduce over kernel rows kh, each a span of the KW * Cg
// activations (kw, c) of input row ih, nhwc order, padded to whole steps.
struct PackedWeights {
  Scheme scheme = Scheme::kBytes;
  bool vnni = false;          // kBytes by vpdpbusd (the CPU has AVX-VNNI)
  int depth = 1;              // kBytes: steps whose vpmaddubsw results are summed in int16 (1, 2, 4 or 8; divides span)
  int64_t groups = 1;         // G
  int64_t K = 0;              // reduction length per group: KH * KW * C / G (kDepthwise: KH * KW)
  int64_t KH = 1;             // kernel rows
  int64_t span = 0;           // kBytes, kPairs: steps per kernel row, ceil(KW * Cg / (4 or 2))
  int64_t steps = 0;          // per block: KH * span (kDepthwise: ceil(K / 2))
  int64_t blocks = 0;         // 16-channel blocks per group (kDepthwise: of all channels)
  std::vector<int8_t> bytes;  // kBytes: [G][blocks][KH][span][16 channels][4 (kw, c)]
  std::vector<int16_t> pairs;  // kPairs: [G][blocks][KH][span][16 channels][2 (kw, c)];
                               // kDepthwise: [blocks][steps][16 channels][2 taps]
  std::vector<int32_t> shift;  // kBytes: 128 * sum(w) per output channel, [G][blocks][16]
  int64_t nbytes() const { return static_cast<int64_t>(bytes.size() + 2 * pairs.size() + 4 * shift.size()); }
};

// Packs int8 weights [O, Cg, KH, KW] (contiguous, values in [-127, 127],
// max_abs their largest magnitude) of a convolution with G groups, for the
// AVX-VNNI kernels when `vnni`.
PackedWeights pack(const int8_t* w, int64_t O, int64_t Cg, int64_t KH, int64_t KW, int64_t G, int64_t max_abs,
                   bool vnni);

// pack() of weights kept as the 4-bit nibbles of packing.h (values in [-8,
// 7]), without unpacking them first.
PackedWeights pack_int4(const uint8_t* nibbles, int64_t O, int64_t Cg, int64_t KH, int64_t KW, int64_t G,
                        int64_t max_abs, bool vnni);

// Output pixels per task of conv(): its gathered patches fill at most about 16 KiB.
int64_t tile_pixels(const PackedWeights& packed);

// kBytes / kPairs: the accumulators y of output pixels [pixel_begin,
// pixel_end) (at most tile_pixels()) and output-channel blocks [block_begin,
// block_end) (numbered g * blocks + b). x: uint8 (is_signed false) or int8.
void conv(const PackedWeights& packed, const ConvShape& s, const void* x, bool is_signed, int32_t* y,
          int64_t pixel_begin, int64_t pixel_end, int64_t block_begin, int64_t block_end);

// kPairs: conv() of an input already widened to int16 (the values of the
// uint8 or int8 input), so kernel rows are read in place instead of widened
// once per output pixel.
void conv16(const PackedWeights& packed, const ConvShape& s, const int16_t* x, int32_t* y, int64_t pixel_begin,
            int64_t pixel_end, int64_t block_begin, int64_t block_end);

// kDepthwise: the accumulators of output pixels [pixel_begin, pixel_end), every channel.
void depthwise(const PackedWeights& packed, const ConvShape& s, const void* x, bool is_signed, int32_t* y,
               int64_t pixel_begin, int64_t pixel_end);

}  // namespace dfq::detail::avx2
