// The AVX2 path of kFast (int_kernels_avx2.h). The file is compiled for the
// baseline ISA: only the functions marked DFQ_AVX2 use AVX2 (no -mavx2, so no
// inline function shared with other translation units is built for AVX2), and
// int_kernels.cpp calls the kernels only after __builtin_cpu_supports("avx2").
// On other architectures only the packing is built (the kernels abort).
//
// Exactness: every result equals the reference's int32 sum. S = sum|w| of an
// output channel; int_kernels.cpp refuses weights with 255 * S > 2^31 - 1.
//  kBytes (max|w| = m <= 64). The patches are uint8 u: the activation itself
//   for uint8 inputs; x + 128 (x ^ 0x80, in [0, 255]) for int8 inputs, with a
//   padded tap holding 128 (a shifted zero). vpmaddubsw(u, w) forms
//   u0*w0 + u1*w1 in a saturating int16: |.| <= 2 * 255 * m <= 32640 < 32767,
//   so it never saturates. `depth` d of these results are added in int16 by
//   vpaddw, d a power of two <= 8 with d * 2 * 255 * m <= 32767 (m <= 8, i.e.
//   4-bit weights: d <= 8; m <= 16: 4; m <= 32: 2; m <= 64: 1; d also divides
//   the steps of a kernel row, so blocks of d steps tile it), so every int16
//   partial sum has |.| <= 32640: exact, vpaddw never wraps. vpmaddwd with
//   ones adds adjacent int16 lanes into int32 exactly, and vpaddd adds those
//   into the int32 accumulators: each partial sum is a sum of a subset of the
//   products u * w, |.| <= 255 * S <= 2^31 - 1. For int8 inputs
//   sum(u * w) = sum(x * w) + 128 * sum(w) (padding included: there x = 0,
//   u = 128); subtracting the packed 128 * sum(w) leaves the true sum, which
//   fits int32, so the wrapping vpsubd yields it exactly.
//   Why the shift and not the sign trick (|x| times w with x's sign, vpsignb):
//   the sign trick would allow |w| <= 127 but costs a vpsignb (and a vpabsb)
//   per product in the inner loop; the shift costs one xor per gathered byte.
//   8-bit weights take kPairs instead.
//  kPairs (max|w| > 64). Patches (x itself, uint8 or int8; padding 0) and
//   weights are int16; vpmaddwd forms x0*w0 + x1*w1 in int32 exactly
//   (|.| <= 2 * 255 * 127); accumulated as above, |.| <= 255 * S.
//  kDepthwise. The activations of two taps, interleaved per channel and
//   widened to int16 (vpunpck[lh]bw, vpmov[sz]xbw), times the two taps' int16
//   weights by vpmaddwd: exact as kPairs.
// Padding of the reduction (a span's last step beyond KW * Cg, channels
// beyond Og in a block, the odd tap of an odd kernel) has weight 0, so
// whatever the patch holds there adds nothing (it is still initialized).
//
// Tiling (kBytes, kPairs): a task takes up to tile_pixels() output pixels and
// a range of 16-channel blocks. Per group it points each pixel's kernel rows
// at their spans: straight into the input when the span is contiguous there
// and inside it (uint8 inputs, kBytes, KW * Cg a multiple of 4: most 3x3 and
// 1x1 layers), else at a span gathered into a buffer (borders, int8 inputs,
// kPairs, grouped or dilated rows) or at a shared span of padding. Then, per
// block, a microkernel takes 4 pixels at a time: per step it loads the block's
// two weight vectors (8 channels x 4 k int8, or x 2 k int16) once and
// multiplies each by the 4 pixels' broadcast 4-byte groups, keeping 4 x 2 int32
// accumulators (and, for kBytes, 4 x 2 int16 sums) in registers. A block's
// weights (steps * 64 bytes) stay in L1 across the task's pixels.
#include "quant/int_kernels_avx2.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dfq::detail::avx2 {
namespace {

constexpr int64_t kBlock = 16;          // output channels per block: two 8-lane int32 vectors
constexpr int64_t kPatchBytes = 16384;  // a task's gathered patches, at most (about)
constexpr int kRows = 4;                // pixels per microkernel call
constexpr int kMaxDepth = 8;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// kBytes: the largest power of two d <= kMaxDepth dividing `span` with
// d * 2 * 255 * max_abs <= 32767 (exact int16 sums, see the top).
int depth_for(int64_t max_abs, int64_t span) {
  int d = kMaxDepth;
  while (d > 1 && (d * 2 * 255 * max_abs > 32767 || span % d != 0)) d /= 2;
  return d;
}

// kBytes / kPairs: [G][blocks][KH][span][16 channels][k per step] with
// k = kw * Cg + c in a kernel row, zero padded; kBytes also 128 * sum(w) per
// output channel.
// Weight i of [O, Cg, KH, KW], from int8 values or from the nibbles of
// packing.h (value i in byte i / 2, low nibble first, sign-extended).
struct Int8Weights {
  const int8_t* w;
  int8_t operator[](int64_t i) const { return w[i]; }
};
struct Int4Weights {
  const uint8_t* nibbles;
  int8_t operator[](int64_t i) const {
    const uint8_t byte = nibbles[i >> 1];
    return static_cast<int8_t>(static_cast<int8_t>(i & 1 ? byte : static_cast<uint8_t>(byte << 4)) >> 4);
  }
};

template <class Weights>
void pack_gemm(Weights w, int64_t O, int64_t Cg, int64_t KH, int64_t KW, int64_t G, PackedWeights& p) {
  const int64_t Og = O / G;
  const bool bytes = p.scheme == Scheme::kBytes;
  const int64_t per_step = bytes ? 4 : 2;
  p.span = ceil_div(KW * Cg, per_step);
  p.steps = KH * p.span;
  p.blocks = ceil_div(Og, kBlock);
  const auto size = static_cast<size_t>(G * p.blocks * p.steps * kBlock * per_step);
  if (bytes) {
    p.bytes.assign(size, 0);
    p.shift.assign(static_cast<size_t>(G * p.blocks * kBlock), 0);
  } else {
    p.pairs.assign(size, 0);
  }
  // Per output channel and kernel row, the taps (kw, c) in row order fill a
  // step's per_step bytes, then move on to the next step.
  const int64_t KHW = KH * KW, lane_stride = kBlock * per_step;
  for (int64_t g = 0; g < G; ++g)
    for (int64_t i = 0; i < Og; ++i) {
      const int64_t o = g * Og + i, block = g * p.blocks + i / kBlock, lane = i % kBlock;
      const int64_t src = o * p.K;  // [Cg][KH][KW]
      int64_t sum = 0;
      for (int64_t kh = 0; kh < KH; ++kh) {
        const auto first = static_cast<size_t>(((block * p.steps + kh * p.span) * kBlock + lane) * per_step);
        int8_t* bytes_at = bytes ? p.bytes.data() + first : nullptr;
        int16_t* pairs_at = bytes ? nullptr : p.pairs.data() + first;
        int64_t j = 0;
        for (int64_t kw = 0; kw < KW; ++kw)
          for (int64_t c = 0; c < Cg; ++c) {
            const int8_t v = w[src + c * KHW + kh * KW + kw];
            if (bytes) bytes_at[j] = v;
            else pairs_at[j] = v;
            sum += v;
            if (++j == per_step) {
              j = 0;
              if (bytes) bytes_at += lane_stride;
              else pairs_at += lane_stride;
            }
          }
      }
      if (bytes) p.shift[static_cast<size_t>(block * kBlock + lane)] = static_cast<int32_t>(128 * sum);
    }
}

// kDepthwise: [blocks][tap pairs][16 channels][2 taps], zero padded.
template <class Weights>
void pack_depthwise(Weights w, int64_t C, PackedWeights& p) {
  p.steps = ceil_div(p.K, 2);
  p.blocks = ceil_div(C, kBlock);
  p.pairs.assign(static_cast<size_t>(p.blocks * p.steps * kBlock * 2), 0);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < p.K; ++t)
      p.pairs[static_cast<size_t>((((c / kBlock) * p.steps + t / 2) * kBlock + c % kBlock) * 2 + t % 2)] =
          w[c * p.K + t];
}

template <class Weights>
void pack_into(Weights w, int64_t O, int64_t Cg, int64_t KH, int64_t KW, int64_t G, int64_t max_abs, bool vnni,
               PackedWeights& p) {
  p.groups = G;
  p.K = KH * KW * Cg;
  p.KH = KH;
  if (Cg == 1 && O == G) {
    p.scheme = Scheme::kDepthwise;
    pack_depthwise(w, O, p);
    return;
  }
  p.scheme = max_abs <= 64 || vnni ? Scheme::kBytes : Scheme::kPairs;
  p.vnni = vnni;
  pack_gemm(w, O, Cg, KH, KW, G, p);
  p.depth = vnni ? 1 : depth_for(max_abs, p.span);
}

}  // namespace

PackedWeights pack(const int8_t* w, int64_t O, int64_t Cg, int64_t KH, int64_t KW, int64_t G, int64_t max_abs,
                   bool vnni) {
  PackedWeights p;
  pack_into(Int8Weights{w}, O, Cg, KH, KW, G, max_abs, vnni, p);
  return p;
}

PackedWeights pack_int4(const uint8_t* nibbles, int64_t O, int64_t Cg, int64_t KH, int64_t KW, int64_t G,
                        int64_t max_abs, bool vnni) {
  PackedWeights p;
  pack_into(Int4Weights{nibbles}, O, Cg, KH, KW, G, max_abs, vnni, p);
  return p;
}

int64_t tile_pixels(const PackedWeights& packed) {
  const int64_t rows = kPatchBytes / (packed.steps * 4) / kRows * kRows;  // a step is 4 bytes of a patch
  return std::clamp<int64_t>(rows, kRows, 64);
}

#if defined(__x86_64__)

#define DFQ_AVX2 __attribute__((target("avx2")))
#define DFQ_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline

namespace {

DFQ_AVX2_INLINE __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 4 bytes at p in every 32-bit lane.
DFQ_AVX2_INLINE __m256i broadcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Writes 16 int32 (channels 0-7 in lo, 8-15 in hi), the first `count` of them.
DFQ_AVX2_INLINE void store16(int32_t* out, __m256i lo, __m256i hi, int64_t count) {
  if (count == kBlock) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), hi);
    return;
  }
  alignas(32) int32_t t[kBlock];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), lo);
  _mm256_store_si256(reinterpret_cast<__m256i*>(t + 8), hi);
  std::memcpy(out, t, static_cast<size_t>(count) * sizeof(int32_t));
}

// Stores R pixels' accumulators minus `shift` (kBytes with int8 inputs; else null).
template <int R>
DFQ_AVX2_INLINE void store_rows(const __m256i (&acc)[R][2], const int32_t* shift, int32_t* y, int64_t ldy,
                                int64_t count) {
  __m256i s0 = _mm256_setzero_si256(), s1 = s0;
  if (shift) s0 = load(shift), s1 = load(shift + 8);
  for (int r = 0; r < R; ++r)
    store16(y + r * ldy, _mm256_sub_epi32(acc[r][0], s0), _mm256_sub_epi32(acc[r][1], s1), count);
}

// D steps of kBytes: the vpmaddubsw results of each pixel (p[r], 4 bytes a
// step) and vector summed in int16 (D = depth: exact, see the top), then
// widened into acc by vpmaddwd.
template <int R, int D>
DFQ_AVX2_INLINE void bytes_steps(const uint8_t* const (&p)[R], const int8_t* w, __m256i (&acc)[R][2]) {
  __m256i sum[R][2];
  for (int r = 0; r < R; ++r) sum[r][0] = sum[r][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
  for (int j = 0; j < D; ++j) {
    const __m256i w0 = load(w + 64 * j), w1 = load(w + 64 * j + 32);
    for (int r = 0; r < R; ++r) {
      const __m256i u = broadcast4(p[r] + 4 * j);
      sum[r][0] = _mm256_add_epi16(sum[r][0], _mm256_maddubs_epi16(u, w0));
      sum[r][1] = _mm256_add_epi16(sum[r][1], _mm256_maddubs_epi16(u, w1));
      // Keeps each sum a running one in a register: else GCC reassociates the
      // unrolled int16 sums into trees that hold every product at once (spilled).
      asm("" : "+x"(sum[r][0]), "+x"(sum[r][1]));
    }
  }
  const __m256i ones = _mm256_set1_epi16(1);
  for (int r = 0; r < R; ++r) {
    acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(sum[r][0], ones));
    acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(sum[r][1], ones));
  }
}

// kBytes microkernel: R pixels (their KH span pointers at spans[r * KH + kh],
// span steps each) times one block's weights; writes y rows (stride ldy).
template <int R, int D>
DFQ_AVX2 void tile_bytes(const uint8_t* const* spans, int64_t KH, int64_t span, const int8_t* w, const int32_t* shift,
                         int32_t* y, int64_t ldy, int64_t count) {
  __m256i acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (int64_t kh = 0; kh < KH; ++kh) {
    const uint8_t* p[R];
    for (int r = 0; r < R; ++r) p[r] = spans[r * KH + kh];
    for (int64_t s = 0; s < span; s += D, w += 64 * D) {  // D divides span
      bytes_steps<R, D>(p, w, acc);
      for (int r = 0; r < R; ++r) p[r] += 4 * D;
    }
  }
  store_rows<R>(acc, shift, y, ldy, count);
}

// kPairs microkernel: as tile_bytes with int16 spans (2 a step) and weights.
template <int R>
DFQ_AVX2 void tile_pairs(const int16_t* const* spans, int64_t KH, int64_t span, const int16_t* w, const int32_t*,
                         int32_t* y, int64_t ldy, int64_t count) {
  __m256i acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (int64_t kh = 0; kh < KH; ++kh)
    for (int64_t s = 0; s < span; ++s, w += 32) {
      const __m256i w0 = load(w), w1 = load(w + 16);
      for (int r = 0; r < R; ++r) {
        const __m256i x = broadcast4(spans[r * KH + kh] + 2 * s);
        acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(x, w0));
        acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(x, w1));
      }
    }
  store_rows<R>(acc, nullptr, y, ldy, count);
}

// kBytes microkernel on AVX-VNNI: as tile_bytes, each step's 4 products per
// lane summed straight into the int32 accumulators by vpdpbusd (exact: the
// products u * w and their sums fit int32, and vpdpbusd does not saturate).
#define DFQ_AVX2_VNNI __attribute__((target("avx2,avxvnni")))
template <int R>
DFQ_AVX2_VNNI void tile_vnni(const uint8_t* const* spans, int64_t KH, int64_t span, const int8_t* w, const int32_t* shift,
                             int32_t* y, int64_t ldy, int64_t count) {
  __m256i acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (int64_t kh = 0; kh < KH; ++kh) {
    const uint8_t* p[R];
    for (int r = 0; r < R; ++r) p[r] = spans[r * KH + kh];
    for (int64_t s = 0; s < span; ++s, w += 64) {
      const __m256i w0 = load(w), w1 = load(w + 32);
      for (int r = 0; r < R; ++r) {
        const __m256i u = broadcast4(p[r] + 4 * s);
        acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], u, w0);
        acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], u, w1);
      }
    }
  }
  store_rows<R>(acc, shift, y, ldy, count);
}

template <class P, class W>
using Tile = void (*)(const P* const*, int64_t, int64_t, const W*, const int32_t*, int32_t*, int64_t, int64_t);

// The microkernel for `rows` (1..4) pixels and, for kBytes, `depth`.
Tile<uint8_t, int8_t> bytes_tile(int rows, int depth) {
  static constexpr Tile<uint8_t, int8_t> table[4][kRows] = {
      {tile_bytes<1, 1>, tile_bytes<2, 1>, tile_bytes<3, 1>, tile_bytes<4, 1>},
      {tile_bytes<1, 2>, tile_bytes<2, 2>, tile_bytes<3, 2>, tile_bytes<4, 2>},
      {tile_bytes<1, 4>, tile_bytes<2, 4>, tile_bytes<3, 4>, tile_bytes<4, 4>},
      {tile_bytes<1, 8>, tile_bytes<2, 8>, tile_bytes<3, 8>, tile_bytes<4, 8>}};
  const int d = depth == 8 ? 3 : depth == 4 ? 2 : depth == 2 ? 1 : 0;
  return table[d][rows - 1];
}

Tile<uint8_t, int8_t> vnni_tile(int rows) {
  static constexpr Tile<uint8_t, int8_t> table[kRows] = {tile_vnni<1>, tile_vnni<2>, tile_vnni<3>, tile_vnni<4>};
  return table[rows - 1];
}

Tile<int16_t, int16_t> pairs_tile(int rows) {
  static constexpr Tile<int16_t, int16_t> table[kRows] = {tile_pairs<1>, tile_pairs<2>, tile_pairs<3>, tile_pairs<4>};
  return table[rows - 1];
}

// The patch value of activation v (see the top): kBytes uint8 (int8 inputs
// shifted by 128), kPairs int16.
template <class P, class T>
DFQ_AVX2_INLINE P patch_value(T v) {
  if constexpr (std::is_same_v<P, uint8_t> && std::is_same_v<T, int8_t>)
    return static_cast<uint8_t>(static_cast<uint8_t>(v) ^ 0x80);
  else
    return static_cast<P>(v);
}

// patch_value of 16 activations (kBytes: 16 bytes; kPairs: 16 int16).
template <class P, class T>
DFQ_AVX2_INLINE void convert16(P* dst, const T* src) {
  if constexpr (std::is_same_v<T, int16_t>) {  // conv16: already widened
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), load(src));
    return;
  }
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  if constexpr (std::is_same_v<P, int16_t>)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                        std::is_same_v<T, int8_t> ? _mm256_cvtepi8_epi16(v) : _mm256_cvtepu8_epi16(v));
  else if constexpr (std::is_same_v<T, int8_t>)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_xor_si128(v, _mm_set1_epi8(static_cast<char>(0x80))));
  else
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), v);
}

// dst[i] = patch_value(src[i]) for i < n, reading and writing nothing beyond
// (the last 16 may overlap the previous ones: the same values again).
template <class P, class T>
DFQ_AVX2_INLINE void convert(P* dst, const T* src, int64_t n) {
  if (n < 16) {
    for (int64_t i = 0; i < n; ++i) dst[i] = patch_value<P>(src[i]);
    return;
  }
  for (int64_t i = 0; i + 16 <= n; i += 16) convert16(dst + i, src + i);
  if (n % 16 != 0) convert16(dst + n - 16, src + n - 16);
}

template <class P>
DFQ_AVX2_INLINE void fill(P* dst, int64_t n, P value) {
  for (int64_t i = 0; i < n; ++i) dst[i] = value;
}

// Kernel rows whose taps are one contiguous run of the input (KW * Cg values
// from (ih, iw0), nhwc): a single kernel column, or one group and no
// horizontal dilation.
bool contiguous_rows(const ConvShape& s) { return s.KW == 1 || (s.G == 1 && s.dilation_w == 1); }

// Gathers one kernel row's taps (kw, c) of input row `row` (already at the
// group's first channel) from column iw0 into dst, padding as patch_value(0).
template <class T, class P>
DFQ_AVX2_INLINE void gather_row(const T* row, const ConvShape& s, int64_t iw0, P* dst) {
  const int64_t Cg = s.C / s.G;
  const P pad = patch_value<P>(T{0});
  if (contiguous_rows(s)) {
    const int64_t lo = std::clamp<int64_t>(-iw0, 0, s.KW), hi = std::clamp<int64_t>(s.W - iw0, lo, s.KW);
    fill(dst, lo * Cg, pad);
    convert(dst + lo * Cg, row + (iw0 + lo) * s.C, (hi - lo) * Cg);
    fill(dst + hi * Cg, (s.KW - hi) * Cg, pad);
    return;
  }
  for (int64_t kw = 0; kw < s.KW; ++kw, dst += Cg) {
    const int64_t iw = iw0 + kw * s.dilation_w;
    if (iw < 0 || iw >= s.W) fill(dst, Cg, pad);
    else convert(dst, row + iw * s.C, Cg);
  }
}

// Steps (n, oh, ow) to the next output pixel.
DFQ_AVX2_INLINE void next_pixel(const ConvShape& s, int64_t& n, int64_t& oh, int64_t& ow) {
  if (++ow < s.Wo) return;
  ow = 0;
  if (++oh < s.Ho) return;
  oh = 0;
  ++n;
}

// Points one pixel's kernel rows (at[kh]) at their spans, any pixel: rows
// outside the input at pad_span, others into x when `in_place` and the row's
// taps are inside it, else at spans gathered into dst (len elements each).
template <class T, class P>
DFQ_AVX2 void point_border(const T* x, const ConvShape& s, int64_t group, int64_t n, int64_t oh, int64_t ow,
                           bool in_place, int64_t len, P* dst, const P* pad_span, const P** at) {
  const int64_t Cg = s.C / s.G, width = s.KW * Cg, iw0 = ow * s.stride_w - s.pad_w;
  const bool inside_w = iw0 >= 0 && iw0 + (s.KW - 1) * s.dilation_w < s.W;
  for (int64_t kh = 0; kh < s.KH; ++kh, dst += len) {
    const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
    if (ih < 0 || ih >= s.H) {
      at[kh] = pad_span;
      continue;
    }
    const T* row = x + (n * s.H + ih) * s.W * s.C + group * Cg;
    if (in_place && inside_w) {
      at[kh] = reinterpret_cast<const P*>(row + iw0 * s.C);
      continue;
    }
    gather_row(row, s, iw0, dst);
    fill(dst + width, len - width, P{0});
    at[kh] = dst;
  }
}

// For one group, the span pointers spans[r * KH + kh] of pixels
// [pixel_begin, pixel_begin + rows) (see the top): pixels whose kernel rows
// all lie inside the input, read in place, take the short way.
template <class T, class P>
DFQ_AVX2 void point_spans(const T* x, const ConvShape& s, int64_t span, int64_t group, int64_t pixel_begin,
                          int64_t rows, P* buffer, const P* pad_span, const P** spans) {
  const int64_t Cg = s.C / s.G, len = span * 4 / static_cast<int64_t>(sizeof(P));
  const bool in_place = std::is_same_v<T, P> && s.KW * Cg == len && contiguous_rows(s);
  const int64_t reach_h = (s.KH - 1) * s.dilation_h, reach_w = (s.KW - 1) * s.dilation_w;
  const int64_t row_step = s.dilation_h * s.W * s.C;  // elements between kernel rows
  int64_t n = pixel_begin / (s.Ho * s.Wo), oh = pixel_begin / s.Wo % s.Ho, ow = pixel_begin % s.Wo;
  for (int64_t r = 0; r < rows; ++r, next_pixel(s, n, oh, ow)) {
    const P** at = spans + r * s.KH;
    const int64_t ih0 = oh * s.stride_h - s.pad_h, iw0 = ow * s.stride_w - s.pad_w;
    if (in_place && ih0 >= 0 && ih0 + reach_h < s.H && iw0 >= 0 && iw0 + reach_w < s.W) {
      const T* p = x + ((n * s.H + ih0) * s.W + iw0) * s.C + group * Cg;
      for (int64_t kh = 0; kh < s.KH; ++kh, p += row_step) at[kh] = reinterpret_cast<const P*>(p);
      continue;
    }
    point_border(x, s, group, n, oh, ow, in_place, len, buffer + r * s.KH * len, pad_span, at);
  }
}

// conv() for input type T and patch type P (uint8_t: kBytes, int16_t: kPairs).
template <class T, class P>
DFQ_AVX2 void conv_tiles(const PackedWeights& pw, const ConvShape& s, const T* x, int32_t* y, int64_t pixel_begin,
                         int64_t pixel_end, int64_t block_begin, int64_t block_end) {
  constexpr bool bytes = std::is_same_v<P, uint8_t>;
  const int64_t rows = pixel_end - pixel_begin, Og = s.O / s.G;
  const int64_t len = pw.span * 4 / static_cast<int64_t>(sizeof(P));  // a span, in elements of P
  const std::unique_ptr<P[]> buffer(new P[static_cast<size_t>((rows * s.KH + 1) * len)]);  // uninitialized
  P* pad_span = buffer.get() + rows * s.KH * len;
  fill(pad_span, len, patch_value<P>(T{0}));
  const std::unique_ptr<const P*[]> spans(new const P*[static_cast<size_t>(rows * s.KH)]);
  int64_t pointed = -1;  // the group spans point at
  for (int64_t block = block_begin; block < block_end; ++block) {
    const int64_t g = block / pw.blocks, b = block % pw.blocks;
    if (g != pointed) {
      point_spans(x, s, pw.span, g, pixel_begin, rows, buffer.get(), pad_span, spans.get());
      pointed = g;
    }
    const int64_t o0 = g * Og + b * kBlock, count = std::min(kBlock, Og - b * kBlock);
    const int32_t* shift = bytes && std::is_same_v<T, int8_t> ? pw.shift.data() + block * kBlock : nullptr;
    for (int64_t r = 0; r < rows; r += kRows) {
      const int n = static_cast<int>(std::min<int64_t>(kRows, rows - r));
      const P* const* at = spans.get() + r * s.KH;
      int32_t* out = y + (pixel_begin + r) * s.O + o0;
      if constexpr (bytes)
        (pw.vnni ? vnni_tile(n) : bytes_tile(n, pw.depth))(at, s.KH, pw.span, pw.bytes.data() + block * pw.steps * 64,
                                                           shift, out, s.O, count);
      else
        pairs_tile(n)(at, s.KH, pw.span, pw.pairs.data() + block * pw.steps * 32, nullptr, out, s.O, count);
    }
  }
}

template <class T>
DFQ_AVX2_INLINE __m256i widen(__m128i v) {
  if constexpr (std::is_same_v<T, uint8_t>) return _mm256_cvtepu8_epi16(v);
  else return _mm256_cvtepi8_epi16(v);
}

// 16 channels of one tap; of a partial block (count < 16) only `count` bytes
// are read and the rest is zero.
template <class T>
DFQ_AVX2_INLINE __m128i load16(const T* p, int64_t count) {
  if (count == kBlock) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  alignas(16) T t[kBlock] = {};
  std::memcpy(t, p, static_cast<size_t>(count));
  return _mm_load_si128(reinterpret_cast<const __m128i*>(t));
}

// depthwise() for input type T: per output pixel the taps' input rows (a zero
// row for padding and the odd tap), then per 16-channel block the tap pairs.
template <class T>
DFQ_AVX2 void depthwise_pixels(const PackedWeights& pw, const ConvShape& s, const T* x, int32_t* y,
                               int64_t pixel_begin, int64_t pixel_end) {
  const std::vector<T> zeros(static_cast<size_t>(pw.blocks * kBlock), T{0});
  std::vector<const T*> src(static_cast<size_t>(2 * pw.steps));
  int64_t n = pixel_begin / (s.Ho * s.Wo), oh = pixel_begin / s.Wo % s.Ho, ow = pixel_begin % s.Wo;
  for (int64_t p = pixel_begin; p < pixel_end; ++p, next_pixel(s, n, oh, ow)) {
    for (int64_t t = 0; t < 2 * pw.steps; ++t) {
      const int64_t ih = oh * s.stride_h - s.pad_h + t / s.KW * s.dilation_h;
      const int64_t iw = ow * s.stride_w - s.pad_w + t % s.KW * s.dilation_w;
      const bool inside = t < pw.K && ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
      src[static_cast<size_t>(t)] = inside ? x + ((n * s.H + ih) * s.W + iw) * s.C : zeros.data();
    }
    for (int64_t b = 0; b < pw.blocks; ++b) {
      const int64_t c0 = b * kBlock, count = std::min(kBlock, s.C - c0);
      const int16_t* w = pw.pairs.data() + b * pw.steps * 32;
      __m256i lo = _mm256_setzero_si256(), hi = lo;
      for (int64_t t = 0; t < pw.steps; ++t) {
        const __m128i a = load16(src[static_cast<size_t>(2 * t)] + c0, count);
        const __m128i c = load16(src[static_cast<size_t>(2 * t + 1)] + c0, count);
        lo = _mm256_add_epi32(lo, _mm256_madd_epi16(widen<T>(_mm_unpacklo_epi8(a, c)), load(w + 32 * t)));
        hi = _mm256_add_epi32(hi, _mm256_madd_epi16(widen<T>(_mm_unpackhi_epi8(a, c)), load(w + 32 * t + 16)));
      }
      store16(y + p * s.C + c0, lo, hi, count);
    }
  }
}

}  // namespace

void conv(const PackedWeights& packed, const ConvShape& s, const void* x, bool is_signed, int32_t* y,
          int64_t pixel_begin, int64_t pixel_end, int64_t block_begin, int64_t block_end) {
  const bool bytes = packed.scheme == Scheme::kBytes;
  const auto* sx = static_cast<const int8_t*>(x);
  const auto* ux = static_cast<const uint8_t*>(x);
  if (is_signed && bytes)
    conv_tiles<int8_t, uint8_t>(packed, s, sx, y, pixel_begin, pixel_end, block_begin, block_end);
  else if (is_signed)
    conv_tiles<int8_t, int16_t>(packed, s, sx, y, pixel_begin, pixel_end, block_begin, block_end);
  else if (bytes)
    conv_tiles<uint8_t, uint8_t>(packed, s, ux, y, pixel_begin, pixel_end, block_begin, block_end);
  else
    conv_tiles<uint8_t, int16_t>(packed, s, ux, y, pixel_begin, pixel_end, block_begin, block_end);
}

void conv16(const PackedWeights& packed, const ConvShape& s, const int16_t* x, int32_t* y, int64_t pixel_begin,
            int64_t pixel_end, int64_t block_begin, int64_t block_end) {
  conv_tiles<int16_t, int16_t>(packed, s, x, y, pixel_begin, pixel_end, block_begin, block_end);
}

void depthwise(const PackedWeights& packed, const ConvShape& s, const void* x, bool is_signed, int32_t* y,
               int64_t pixel_begin, int64_t pixel_end) {
  if (is_signed) depthwise_pixels(packed, s, static_cast<const int8_t*>(x), y, pixel_begin, pixel_end);
  else depthwise_pixels(packed, s, static_cast<const uint8_t*>(x), y, pixel_begin, pixel_end);
}

#else  // not x86-64: int_kernels.cpp never selects the AVX2 path

void conv(const PackedWeights&, const ConvShape&, const void*, bool, int32_t*, int64_t, int64_t, int64_t, int64_t) {
  std::abort();
}
void conv16(const PackedWeights&, const ConvShape&, const int16_t*, int32_t*, int64_t, int64_t, int64_t, int64_t) {
  std::abort();
}
void depthwise(const PackedWeights&, const ConvShape&, const void*, bool, int32_t*, int64_t, int64_t) { std::abort(); }

#endif

}  // namespace dfq::detail::avx2
