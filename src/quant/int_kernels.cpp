// Integer convolution / linear kernels (int_kernels.h).
//
// kFast runs oneDNN 2.6 (Debian's libdnnl): int8 convolution or inner product
// with an s32 destination, nhwc activations in and out (no activation reorders),
// weights reordered once per layout a primitive asks for. Two facts about
// oneDNN decide when it may be used, because kFast must equal kReference:
//  * Without VNNI its u8 x s8 kernels use vpmaddubsw, which saturates pairs of
//    products in int16 (and halve s8 weights against it): measured with
//    DNNL_MAX_CPU_ISA=AVX512_CORE, nearly every s32 output differs. So oneDNN
//    runs only when its effective ISA has VNNI (vpdpbusd, exact).
//  * Even with VNNI, some kernels (jit_int8, which serves s8 sources) pass the
//    s32 accumulator through float32 on the way out, which rounds magnitudes
//    above 2^24 (measured: C=256 3x3 with extreme s8 values differs). Hence a
//    bound: if 255 * sum|w| <= 2^24 for every output channel, every partial sum
//    oneDNN can form (also with its +128 shift of s8 sources) is an integer of
//    magnitude <= 2^24, exact in float32. A layer over the bound is split along
//    its input channels into chunks within it, run chunk by chunk and added in
//    int32; a layer whose single input channel exceeds it (kernels over 518
//    taps) runs the avx_vnni or avx2 path (or, without AVX2, the portable loop).
// Weights of <= 4 bits may be kept packed (WeightStorage::kPacked4): then the
// stored copy is the nibbles, and each call of the oneDNN and portable paths
// unpacks them (oneDNN: also reorders them into the primitive's blocked
// layout) into temporaries freed when it returns; the avx2 path packs them
// once into its own layout and keeps it (one byte per weight; see
// avx2_weights()). The products are the same, so the accumulators are.
// Without AVX-512 VNNI, kFast runs dfq's AVX2 kernels (int_kernels_avx2.cpp,
// exact by construction: see there; with AVX-VNNI's vpdpbusd when the CPU
// has it) when the CPU has AVX2, else the portable loop: an
// nhwc patch per output pixel times int16 weight rows (pmaddwd dot products,
// four rows at a time). DFQ_INT_KERNELS or ScopedIntKernelPath force a path
// (int_kernels.h). Both are threaded here by at::parallel_for. This file is
// compiled with -fopenmp: LibTorch's at::parallel_for is an inline template
// that runs serially in a translation unit without _OPENMP.
#include "quant/int_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/error.h"
#include "quant/int_kernels_avx2.h"
#include "quant/packing.h"

namespace dfq {
namespace {

constexpr int64_t kMaxSource = 255;                // max |x| for uint8; also x + 128 for int8 inside oneDNN
constexpr int64_t kFloatExact = int64_t{1} << 24;  // every integer of magnitude <= 2^24 is a float32
constexpr int64_t kInt32Max = 2147483647;

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kByte: return "uint8";
    case at::kChar: return "int8";
    case at::kShort: return "int16";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    default: return c10::toString(t);
  }
}

std::string describe(const at::Tensor& t) {
  if (!t.defined()) return "an undefined tensor";
  std::ostringstream s;
  s << dtype_name(t.scalar_type()) << " " << t.sizes();
  return s.str();
}

// Sizes of one call. A linear layer is the 1x1 convolution of an [N, I, 1, 1] input.
struct Dims {
  int64_t N, C, H, W;  // input, channels-last
  int64_t O, KH, KW;   // weight [O, C / G, KH, KW]
  int64_t G;
  int64_t Ho, Wo;
  int64_t Cg() const { return C / G; }
  int64_t Og() const { return O / G; }
};

// The ground truth, written for clarity: one int32 sum per output element.
template <class T>
void reference_conv(const T* x, const int8_t* w, int32_t* y, const Dims& d, const IntConvGeometry& g) {
  const int64_t Cg = d.Cg(), Og = d.Og();
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t oh = 0; oh < d.Ho; ++oh)
      for (int64_t ow = 0; ow < d.Wo; ++ow)
        for (int64_t o = 0; o < d.O; ++o) {
          const int64_t group = o / Og;
          int32_t acc = 0;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t kh = 0; kh < d.KH; ++kh)
              for (int64_t kw = 0; kw < d.KW; ++kw) {
                const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
                const int64_t iw = ow * g.stride_w - g.pad_w + kw * g.dilation_w;
                if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;  // zero padding
                const int32_t xv = x[((n * d.H + ih) * d.W + iw) * d.C + group * Cg + c];
                const int32_t wv = w[((o * Cg + c) * d.KH + kh) * d.KW + kw];
                acc += xv * wv;
              }
          y[((n * d.Ho + oh) * d.Wo + ow) * d.O + o] = acc;
        }
}

// Four dot products of int16 weight rows (stride n) with one patch, summed in
// int32: GCC vectorizes each into pmaddwd, four independent chains sharing the
// patch loads (cloned for AVX2, picked at load time). Exact: |x * w| <= 255 * 128
// and the constructor bounds every sum.
__attribute__((target_clones("avx2", "default"))) void dot4(const int16_t* __restrict rows,
                                                            const int16_t* __restrict patch, int64_t n,
                                                            int32_t* __restrict out) {
  int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t p = patch[i];
    a0 += int32_t{rows[i]} * p;
    a1 += int32_t{rows[n + i]} * p;
    a2 += int32_t{rows[2 * n + i]} * p;
    a3 += int32_t{rows[3 * n + i]} * p;
  }
  out[0] = a0, out[1] = a1, out[2] = a2, out[3] = a3;
}

int32_t dot(const int16_t* __restrict a, const int16_t* __restrict b, int64_t n) {
  int32_t acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += int32_t{a[i]} * int32_t{b[i]};
  return acc;
}

// The portable fast loop. `rows` holds the weights as int16 [O][KH][KW][Cg],
// the order in which an nhwc patch is gathered.
template <class T>
void portable_conv(const T* x, const int16_t* rows, int32_t* y, const Dims& d, const IntConvGeometry& g) {
  const int64_t Cg = d.Cg(), Og = d.Og(), K = d.KH * d.KW * Cg;
  const int64_t pixels = d.N * d.Ho * d.Wo;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / (d.O * K));  // ~32k MACs per task
  at::parallel_for(0, pixels, grain, [&](int64_t begin, int64_t end) {
    std::vector<int16_t> patch(K);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / (d.Ho * d.Wo), oh = p / d.Wo % d.Ho, ow = p % d.Wo;
      for (int64_t group = 0; group < d.G; ++group) {
        int16_t* dst = patch.data();
        for (int64_t kh = 0; kh < d.KH; ++kh)
          for (int64_t kw = 0; kw < d.KW; ++kw, dst += Cg) {
            const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
            const int64_t iw = ow * g.stride_w - g.pad_w + kw * g.dilation_w;
            if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) {
              std::fill(dst, dst + Cg, int16_t{0});
              continue;
            }
            const T* src = x + ((n * d.H + ih) * d.W + iw) * d.C + group * Cg;
            for (int64_t c = 0; c < Cg; ++c) dst[c] = src[c];
          }
        int64_t o = group * Og;
        for (; o + 4 <= (group + 1) * Og; o += 4) dot4(rows + o * K, patch.data(), K, y + p * d.O + o);
        for (; o < (group + 1) * Og; ++o) y[p * d.O + o] = dot(rows + o * K, patch.data(), K);
      }
    }
  });
}

// Consecutive ranges [begin, end) of within-group input channels such that
// kMaxSource * sum|w| over a range <= 2^24 for every output channel (greedy,
// so as few as possible). Empty when a single channel exceeds the bound.
std::vector<std::pair<int64_t, int64_t>> float_exact_chunks(const at::Tensor& weight) {
  const at::Tensor sums = weight.to(at::kLong).abs().sum({2, 3}).contiguous();  // [O, Cg]
  const int64_t O = sums.size(0), Cg = sums.size(1);
  const int64_t* s = sums.data_ptr<int64_t>();
  const int64_t limit = kFloatExact / kMaxSource;
  if (*std::max_element(s, s + O * Cg) > limit) return {};
  std::vector<std::pair<int64_t, int64_t>> chunks;
  std::vector<int64_t> running(O, 0);
  int64_t begin = 0;
  for (int64_t c = 0; c < Cg; ++c) {
    bool fits = true;
    for (int64_t o = 0; o < O && fits; ++o) fits = running[o] + s[o * Cg + c] <= limit;
    if (!fits) {
      chunks.emplace_back(begin, c);
      begin = c;
      std::fill(running.begin(), running.end(), 0);
    }
    for (int64_t o = 0; o < O; ++o) running[o] += s[o * Cg + c];
  }
  chunks.emplace_back(begin, Cg);
  return chunks;
}

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A byte buffer for memory of `desc` (a scratchpad may be empty: one byte then).
at::Tensor bytes_for(const dnnl::memory::desc& desc) {
  return at::empty({static_cast<int64_t>(std::max<size_t>(desc.get_size(), 1))}, at::kByte);
}

// The thread count oneDNN plans a primitive for (a key of its plans): inside a
// parallel region (the integer engine's batch slices) oneDNN runs its
// primitives on the calling thread alone.
int onednn_threads() { return omp_in_parallel() || at::in_parallel_region() ? 1 : at::get_num_threads(); }

// Debian's libdnnl 2.6 uses the OpenMP runtime (DNNL_CPU_RUNTIME OMP, libgomp,
// the library LibTorch's OpenMP backend also uses) and has no thread-count
// call of its own: it sizes its parallel regions by omp_get_max_threads() of
// the calling thread. With that backend at::get_num_threads() returns the same
// value, so this is a no-op; it keeps the two equal should the backend change.
// Inside a parallel region omp_get_max_threads() still answers the team's
// size, so oneDNN would plan a primitive made there (a reorder seen to fill
// only part of its output) for threads it will not get: the calling task's
// count is set to one (an ICV of that task alone, not the team's).
void match_onednn_threads() {
  if (omp_in_parallel()) {
    if (omp_get_max_threads() != 1) omp_set_num_threads(1);
    return;
  }
  const int threads = at::get_num_threads();
  if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
}

}  // namespace

bool fast_int_kernels_available() {
  static const bool available = [] {
    const auto vnni = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_vnni);  // ISA values are bit sets
    return (static_cast<unsigned>(dnnl::get_effective_cpu_isa()) & vnni) == vnni;
  }();
  return available;
}

namespace {
constexpr IntKernelPath kAllPaths[] = {IntKernelPath::kOnednn, IntKernelPath::kAvxVnni, IntKernelPath::kAvx2,
                                       IntKernelPath::kPortable};  // best first

}  // namespace

const char* int_kernel_path_name(IntKernelPath path) {
  switch (path) {
    case IntKernelPath::kOnednn: return "onednn";
    case IntKernelPath::kAvxVnni: return "avx_vnni";
    case IntKernelPath::kAvx2: return "avx2";
    case IntKernelPath::kPortable: return "portable";
  }
  return "?";
}

bool int_kernel_path_supported(IntKernelPath path) {
  switch (path) {
    case IntKernelPath::kOnednn: return fast_int_kernels_available();
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    case IntKernelPath::kAvxVnni: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avxvnni");
    case IntKernelPath::kAvx2: return __builtin_cpu_supports("avx2");
#elif defined(__x86_64__)
    case IntKernelPath::kAvxVnni: return false;  // clang's __builtin_cpu_supports may not know avxvnni
    case IntKernelPath::kAvx2: return __builtin_cpu_supports("avx2");
#else
    case IntKernelPath::kAvxVnni: return false;
    case IntKernelPath::kAvx2: return false;
#endif
    case IntKernelPath::kPortable: return true;
  }
  return false;
}

std::vector<IntKernelPath> supported_int_kernel_paths() {
  std::vector<IntKernelPath> paths;
  for (IntKernelPath path : kAllPaths)
    if (int_kernel_path_supported(path)) paths.push_back(path);
  return paths;
}

namespace {

std::atomic<int> forced_path{-1};  // a ScopedIntKernelPath's path, or -1

// "avx2 or portable": the paths this CPU supports, for messages.
std::string supported_list() {
  std::string list;
  const std::vector<IntKernelPath> paths = supported_int_kernel_paths();
  for (size_t i = 0; i < paths.size(); ++i)
    list += (i == 0 ? "" : i + 1 == paths.size() ? " or " : ", ") + std::string(int_kernel_path_name(paths[i]));
  return list;
}

// DFQ_INT_KERNELS's path, or the best supported one when it is unset or empty.
IntKernelPath path_from_environment() {
  const char* value = std::getenv("DFQ_INT_KERNELS");
  if (value == nullptr || *value == '\0') return supported_int_kernel_paths().front();
  return parse_int_kernel_path(value);
}

// The path kFast runs now (int_kernel_path()).
IntKernelPath current_path() {
  const int forced = forced_path.load();
  if (forced >= 0) return static_cast<IntKernelPath>(forced);
  static const IntKernelPath from_environment = path_from_environment();  // a throw leaves it unset
  return from_environment;
}

// The path for a layer oneDNN does not run: the best supported after onednn.
IntKernelPath fallback_path() {
  for (IntKernelPath path : {IntKernelPath::kAvxVnni, IntKernelPath::kAvx2})
    if (int_kernel_path_supported(path)) return path;
  return IntKernelPath::kPortable;
}

}  // namespace

IntKernelPath parse_int_kernel_path(const std::string& value) {
  for (IntKernelPath path : kAllPaths)
    if (value == int_kernel_path_name(path) && int_kernel_path_supported(path)) return path;
  fail("DFQ_INT_KERNELS", "onednn, avx_vnni, avx2 or portable, one this CPU supports (" + supported_list() + ")",
       "'" + one_line(value) + "'");
}

const char* int_kernel_path() { return int_kernel_path_name(current_path()); }

LoopIsa int_loop_isa() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  static const LoopIsa best = __builtin_cpu_supports("x86-64-v4") ? LoopIsa::kAvx512
                              : __builtin_cpu_supports("avx2")    ? LoopIsa::kAvx2
                                                                  : LoopIsa::kBaseline;
  static const bool environment_forces = [] {
    const char* value = std::getenv("DFQ_INT_KERNELS");  // read once, as current_path() does
    return value != nullptr && *value != '\0';
  }();
  if (forced_path.load() < 0 && !environment_forces) return best;
  switch (current_path()) {
    case IntKernelPath::kAvxVnni:  // AVX-VNNI CPUs without AVX-512 exist (e.g. Alder Lake)
    case IntKernelPath::kAvx2: return best == LoopIsa::kAvx512 ? LoopIsa::kAvx2 : best;
    case IntKernelPath::kPortable: return LoopIsa::kBaseline;
    default: return best;
  }
#else
  return LoopIsa::kBaseline;  // integer_engine.cpp builds its loops for the baseline only here
#endif
}

ScopedIntKernelPath::ScopedIntKernelPath(IntKernelPath path) : saved_(forced_path.load()) {
  if (!int_kernel_path_supported(path))
    fail("ScopedIntKernelPath", "a path this CPU supports (" + supported_list() + ")",
         std::string("'") + int_kernel_path_name(path) + "'");
  forced_path.store(static_cast<int>(path));
}

ScopedIntKernelPath::~ScopedIntKernelPath() { forced_path.store(saved_); }

namespace detail {

// The prepared kernel behind IntConv2d and IntLinear (a linear layer is a 1x1
// convolution of an [N, I, 1, 1] input; only its oneDNN primitive differs).
class IntKernelImpl {
 public:
  // weight: int8 [O, Cg, KH, KW] with values in [-127, 127] ([-8, 7] when
  // packed), geometry checked.
  IntKernelImpl(const at::Tensor& weight, IntConvGeometry geometry, IntKernel kernel, bool linear, WeightStorage storage)
      : shape_(weight.sizes().vec()),
        geometry_(geometry),
        linear_(linear),
        fast_(kernel == IntKernel::kFast),
        packed_(storage == WeightStorage::kPacked4) {
    const at::Tensor w = weight.contiguous();
    stored_ = packed_ ? pack_int4(w) : w;
    max_abs_ = w.numel() > 0 ? w.abs().max().item<int64_t>() : 0;
    if (fast_) current_path();  // a bad DFQ_INT_KERNELS fails here, not inside a call
    if (fast_ && fast_int_kernels_available())
      for (const auto& [begin, end] : float_exact_chunks(w)) chunks_.push_back(Chunk{begin, end, {}});
  }

  int64_t out_channels() const { return shape_[0]; }
  int64_t in_channels() const { return shape_[1] * geometry_.groups; }
  const std::vector<int64_t>& shape() const { return shape_; }
  const IntConvGeometry& geometry() const { return geometry_; }

  int64_t weight_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    int64_t bytes = stored_.nbytes() + (rows_.defined() ? rows_.nbytes() : 0);
    for (const auto& kept : avx2_) bytes += kept ? kept->nbytes() : 0;
    for (const Chunk& chunk : chunks_)
      for (const auto& [desc, memory] : chunk.reordered) bytes += static_cast<int64_t>(desc.get_size());
    return bytes;
  }

  // x: uint8/int8 [N, C, H, W] channels-last (checked by the caller, N >= 1);
  // y: int32 [N, O, Ho, Wo] channels-last, written.
  void run(const at::Tensor& x, const Dims& d, const at::Tensor& y) const {
    const bool is_signed = x.scalar_type() == at::kChar;
    int32_t* out = y.data_ptr<int32_t>();
    if (!fast_) {
      const at::Tensor w = weights();
      if (is_signed) reference_conv(x.data_ptr<int8_t>(), w.data_ptr<int8_t>(), out, d, geometry_);
      else reference_conv(x.data_ptr<uint8_t>(), w.data_ptr<int8_t>(), out, d, geometry_);
      return;
    }
    IntKernelPath path = current_path();
    if (path == IntKernelPath::kOnednn) {
      if (!chunks_.empty()) {
        if (const auto plan = plan_for(is_signed, d)) return run_onednn(*plan, x, d, y);
      }
      path = fallback_path();
    }
    if (path == IntKernelPath::kAvx2 || path == IntKernelPath::kAvxVnni)
      return run_avx2(x, d, y, path == IntKernelPath::kAvxVnni);
    const at::Tensor rows = portable_rows();
    if (is_signed) portable_conv(x.data_ptr<int8_t>(), rows.data_ptr<int16_t>(), out, d, geometry_);
    else portable_conv(x.data_ptr<uint8_t>(), rows.data_ptr<int16_t>(), out, d, geometry_);
  }

 private:
  struct Chunk {
    int64_t begin, end;  // within-group input channels
    // Unpacked weights only: the chunk's weights in each layout a primitive
    // asked for (guarded by mutex_).
    std::vector<std::pair<dnnl::memory::desc, dnnl::memory>> reordered;
  };
  struct Step {  // one chunk's primitive
    dnnl::primitive primitive;
    dnnl::memory::desc src, dst, scratchpad;
    dnnl::memory weights;           // unpacked weights: reordered once
    dnnl::memory::desc user;        // packed weights: the chunk's plain int8 layout,
    dnnl::primitive reorder;        //   reordered into weights_layout at every call
    dnnl::memory::desc weights_layout, reorder_scratchpad;
  };
  using Plan = std::vector<Step>;
  using PlanKey = std::tuple<bool, int64_t, int64_t, int64_t, int>;  // signed, N, H, W, threads

  // The weights as int8 [O, Cg, KH, KW]: the stored tensor, or a fresh unpacked copy.
  at::Tensor weights() const { return packed_ ? unpack_int4(stored_, shape_) : stored_; }
  // One chunk's input channels of weights(), contiguous.
  at::Tensor chunk_weights(const at::Tensor& w, const Chunk& chunk) const {
    return chunk.begin == 0 && chunk.end == shape_[1] ? w : w.narrow(1, chunk.begin, chunk.end - chunk.begin).contiguous();
  }

  // The portable loop's int16 [O, KH, KW, Cg] rows: made once and kept for
  // unpacked weights, made per call for packed ones.
  at::Tensor portable_rows() const {
    auto make = [&] { return weights().permute({0, 2, 3, 1}).contiguous().to(at::kShort); };
    if (packed_) return make();
    std::lock_guard<std::mutex> lock(mutex_);
    if (!rows_.defined()) rows_ = make();
    return rows_;
  }

  // The avx2 path's packed weights, made once and kept, for packed weights
  // too: the engine calls a kernel per slice of a few images
  // (IntegerEngine::kImagesPerSlice), and repacking the nibbles at every call
  // cost more than a tenth of ResNet-20 W4A4's time (results/int_kernel_paths.md).
  // The avx_vnni path keeps its own (its kBytes scheme takes 8-bit weights too).
  std::shared_ptr<const avx2::PackedWeights> avx2_weights(bool vnni) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::shared_ptr<const avx2::PackedWeights>& kept = avx2_[vnni ? 1 : 0];
    if (!kept) {
      kept = packed_ ? std::make_shared<const avx2::PackedWeights>(
                           avx2::pack_int4(stored_.data_ptr<uint8_t>(), shape_[0], shape_[1], shape_[2], shape_[3],
                                           geometry_.groups, max_abs_, vnni))
                     : std::make_shared<const avx2::PackedWeights>(
                           avx2::pack(stored_.data_ptr<int8_t>(), shape_[0], shape_[1], shape_[2], shape_[3],
                                      geometry_.groups, max_abs_, vnni));
    }
    return kept;
  }

  // The avx2 path, threaded over tiles of output pixels (depthwise: pixel
  // ranges); with fewer tiles than twice the threads, also over output-channel
  // blocks, so that a batch of one image keeps every thread busy.
  void run_avx2(const at::Tensor& x, const Dims& d, const at::Tensor& y, bool vnni) const {
    const std::shared_ptr<const avx2::PackedWeights> packed = avx2_weights(vnni);
    const IntConvGeometry& g = geometry_;
    const avx2::ConvShape s{d.N,       d.C,       d.H,        d.W,        d.O,     d.KH,    d.KW,         d.G,
                            d.Ho,      d.Wo,      g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dilation_h, g.dilation_w};
    const bool is_signed = x.scalar_type() == at::kChar;
    const void* in = x.data_ptr();
    int32_t* out = y.data_ptr<int32_t>();
    const int64_t pixels = d.N * d.Ho * d.Wo;
    if (packed->scheme == avx2::Scheme::kDepthwise) {
      const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / (d.C * d.KH * d.KW));  // ~32k MACs per task
      at::parallel_for(0, pixels, grain, [&](int64_t begin, int64_t end) {
        avx2::depthwise(*packed, s, in, is_signed, out, begin, end);
      });
      return;
    }
    // kPairs reads int16 patches: widen the input once rather than per output pixel.
    const at::Tensor wide = packed->scheme == avx2::Scheme::kPairs ? x.to(at::kShort) : at::Tensor();
    const int64_t tile = avx2::tile_pixels(*packed), tiles = (pixels + tile - 1) / tile;
    const int64_t blocks = d.G * packed->blocks;
    const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
    const int64_t parts = threads > 1 ? std::clamp<int64_t>((2 * threads + tiles - 1) / tiles, 1, blocks) : 1;
    at::parallel_for(0, tiles * parts, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t t = task / parts, part = task % parts;
        const int64_t pixel_end = std::min(pixels, (t + 1) * tile);
        const int64_t block_begin = part * blocks / parts, block_end = (part + 1) * blocks / parts;
        if (wide.defined())
          avx2::conv16(*packed, s, wide.data_ptr<int16_t>(), out, t * tile, pixel_end, block_begin, block_end);
        else
          avx2::conv(*packed, s, in, is_signed, out, t * tile, pixel_end, block_begin, block_end);
      }
    });
  }

  // The primitives for this input dtype, shape and thread count (oneDNN picks
  // blockings by thread count); nullptr when oneDNN declines the problem.
  std::shared_ptr<const Plan> plan_for(bool is_signed, const Dims& d) const {
    const PlanKey key{is_signed, d.N, d.H, d.W, onednn_threads()};
    std::lock_guard<std::mutex> lock(mutex_);
    if (const auto it = plans_.find(key); it != plans_.end()) return it->second;
    std::shared_ptr<Plan> plan;
    try {
      match_onednn_threads();
      plan = std::make_shared<Plan>();
      for (Chunk& chunk : chunks_) plan->push_back(make_step(chunk, is_signed, d));
    } catch (const dnnl::error&) {
      plan = nullptr;  // the portable loop is exact too
    }
    plans_.emplace(key, plan);
    return plan;
  }

  Step make_step(Chunk& chunk, bool is_signed, const Dims& d) const {
    using dnnl::memory;
    using tag = memory::format_tag;
    const auto src_type = is_signed ? memory::data_type::s8 : memory::data_type::u8;
    const int64_t width = chunk.end - chunk.begin;
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // thread-safe: a scratchpad per call
    Step step;
    memory::desc user;
    if (linear_) {
      step.src = memory::desc({d.N, width}, src_type, tag::nc);
      step.dst = memory::desc({d.N, d.O}, memory::data_type::s32, tag::nc);
      const memory::desc weights({d.O, width}, memory::data_type::s8, tag::any);
      const dnnl::inner_product_forward::desc desc(dnnl::prop_kind::forward_inference, step.src, weights, step.dst);
      const dnnl::inner_product_forward::primitive_desc pd(desc, attr, cpu_engine());
      user = memory::desc({d.O, width}, memory::data_type::s8, tag::oi);
      step.primitive = dnnl::inner_product_forward(pd);
      step.scratchpad = pd.scratchpad_desc();
      step.weights_layout = pd.weights_desc();
    } else {
      const IntConvGeometry& g = geometry_;
      step.src = memory::desc({d.N, d.G * width, d.H, d.W}, src_type, tag::nhwc);
      step.dst = memory::desc({d.N, d.O, d.Ho, d.Wo}, memory::data_type::s32, tag::nhwc);
      const bool grouped = d.G > 1;
      const memory::dims weight_dims =
          grouped ? memory::dims{d.G, d.Og(), width, d.KH, d.KW} : memory::dims{d.O, width, d.KH, d.KW};
      const dnnl::convolution_forward::desc desc(
          dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, step.src,
          memory::desc(weight_dims, memory::data_type::s8, tag::any), step.dst, {g.stride_h, g.stride_w},
          {g.dilation_h - 1, g.dilation_w - 1}, {g.pad_h, g.pad_w}, {g.pad_h, g.pad_w});  // oneDNN counts dilation from 0
      const dnnl::convolution_forward::primitive_desc pd(desc, attr, cpu_engine());
      user = memory::desc(weight_dims, memory::data_type::s8, grouped ? tag::goihw : tag::oihw);
      step.primitive = dnnl::convolution_forward(pd);
      step.scratchpad = pd.scratchpad_desc();
      step.weights_layout = pd.weights_desc();
    }
    if (packed_) {
      step.user = user;
      // A user scratchpad: concurrent calls (and layers of one shape, which share
      // oneDNN's cached primitive) must not share the library's.
      const dnnl::reorder::primitive_desc reorder_pd(cpu_engine(), user, cpu_engine(), step.weights_layout, attr);
      step.reorder = dnnl::reorder(reorder_pd);
      step.reorder_scratchpad = reorder_pd.scratchpad_desc();
    } else {
      step.weights = weights_in(chunk, user, step.weights_layout);
    }
    return step;
  }

  // The chunk's weights in `layout`, reordered on first request (mutex_ held).
  dnnl::memory weights_in(Chunk& chunk, const dnnl::memory::desc& user, const dnnl::memory::desc& layout) const {
    for (const auto& [desc, memory] : chunk.reordered)
      if (desc == layout) return memory;
    const at::Tensor w = chunk_weights(stored_, chunk);
    dnnl::memory from(user, cpu_engine(), w.data_ptr());
    dnnl::memory to(layout, cpu_engine());
    dnnl::stream stream(cpu_engine());
    dnnl::reorder(from, to).execute(stream, from, to);
    stream.wait();
    chunk.reordered.emplace_back(layout, to);
    return to;
  }

  void run_onednn(const Plan& plan, const at::Tensor& x, const Dims& d, const at::Tensor& y) const {
    match_onednn_threads();
    dnnl::stream stream(cpu_engine());  // CPU streams are cheap; one per call keeps calls independent
    const at::Tensor unpacked = packed_ ? weights() : at::Tensor();
    at::Tensor partial;                 // a later chunk's accumulators, added to y
    for (size_t j = 0; j < plan.size(); ++j) {
      const Step& step = plan[j];
      // A chunk's input channels of every group, as a dense nhwc tensor.
      const at::Tensor src = plan.size() == 1 ? x
                                              : x.permute({0, 2, 3, 1})
                                                    .reshape({d.N, d.H, d.W, d.G, d.Cg()})
                                                    .narrow(4, chunks_[j].begin, chunks_[j].end - chunks_[j].begin)
                                                    .contiguous();
      if (j > 0 && !partial.defined()) partial = at::empty_like(y);
      const at::Tensor& dst = j == 0 ? y : partial;
      // Packed weights: this call's blocked copy, released when the call returns.
      dnnl::memory weights = step.weights;
      at::Tensor blocked;
      if (packed_) {
        const at::Tensor plain = chunk_weights(unpacked, chunks_[j]);
        blocked = bytes_for(step.weights_layout);
        dnnl::memory from(step.user, cpu_engine(), plain.data_ptr());
        weights = dnnl::memory(step.weights_layout, cpu_engine(), blocked.data_ptr());
        const at::Tensor reorder_scratch = bytes_for(step.reorder_scratchpad);
        step.reorder.execute(stream, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, weights},
                                      {DNNL_ARG_SCRATCHPAD, dnnl::memory(step.reorder_scratchpad, cpu_engine(), reorder_scratch.data_ptr())}});
      }
      const at::Tensor scratch = bytes_for(step.scratchpad);
      step.primitive.execute(stream, {{DNNL_ARG_SRC, dnnl::memory(step.src, cpu_engine(), src.data_ptr())},
                                      {DNNL_ARG_WEIGHTS, weights},
                                      {DNNL_ARG_DST, dnnl::memory(step.dst, cpu_engine(), dst.data_ptr())},
                                      {DNNL_ARG_SCRATCHPAD, dnnl::memory(step.scratchpad, cpu_engine(), scratch.data_ptr())}});
      stream.wait();
      if (j > 0) y.add_(partial);
    }
  }

  std::vector<int64_t> shape_;  // [O, Cg, KH, KW]
  IntConvGeometry geometry_;
  bool linear_, fast_, packed_;
  at::Tensor stored_;                    // int8 [O, Cg, KH, KW] contiguous, or its pack_int4 bytes
  int64_t max_abs_ = 0;                  // largest |weight|: chooses the avx2 packing scheme
  mutable at::Tensor rows_;              // kFast portable loop, unpacked weights: int16 [O, KH, KW, Cg] once used
  mutable std::shared_ptr<const avx2::PackedWeights> avx2_[2];  // kFast avx2, avx_vnni paths: once used
  mutable std::vector<Chunk> chunks_;    // kFast on oneDNN; empty otherwise (mutex_ guards `reordered`)
  mutable std::mutex mutex_;
  mutable std::map<PlanKey, std::shared_ptr<const Plan>> plans_;
};

}  // namespace detail

namespace {

// Weight checks shared by both layers: int8 values in [-127, 127] ([-8, 7] to
// be stored packed), and int32 accumulators that cannot overflow for any 8-bit input.
void check_weight_values(const at::Tensor& weight, const std::string& subject, WeightStorage storage) {
  const int64_t min = weight.min().item<int64_t>();
  if (min < -127) fail(subject, "values in [-127, 127]", "minimum " + std::to_string(min));
  if (storage == WeightStorage::kPacked4) {
    const int64_t max = weight.max().item<int64_t>();
    if (min < -8 || max > 7)
      fail(subject + " (packed 4-bit storage)", "values in [-8, 7]",
           "[" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  const at::Tensor sums = weight.to(at::kLong).abs().flatten(1).sum(1);
  const int64_t worst = sums.max().item<int64_t>();
  if (worst > kInt32Max / kMaxSource)
    fail(subject, "sum |w| <= " + std::to_string(kInt32Max / kMaxSource) + " per output channel (int32 accumulators)",
         std::to_string(worst));
}

}  // namespace

IntConv2d::IntConv2d(const at::Tensor& weight, IntConvGeometry geometry, IntKernel kernel, WeightStorage storage) {
  const std::string subject = "IntConv2d weight";
  if (!weight.defined() || weight.dim() != 4 || weight.scalar_type() != at::kChar || weight.numel() == 0)
    fail(subject, "non-empty int8 [O, I/groups, kH, kW]", describe(weight));
  const IntConvGeometry& g = geometry;
  if (g.stride_h < 1 || g.stride_w < 1 || g.dilation_h < 1 || g.dilation_w < 1 || g.pad_h < 0 || g.pad_w < 0 ||
      g.groups < 1 || weight.size(0) % g.groups != 0) {
    std::ostringstream found;
    found << "stride " << g.stride_h << "x" << g.stride_w << ", padding " << g.pad_h << "x" << g.pad_w << ", dilation "
          << g.dilation_h << "x" << g.dilation_w << ", groups " << g.groups << " for " << weight.size(0)
          << " output channels";
    fail("IntConv2d geometry", "stride >= 1, padding >= 0, dilation >= 1 and groups >= 1 dividing the output channels",
         found.str());
  }
  check_weight_values(weight, subject, storage);
  impl_ = std::make_shared<const detail::IntKernelImpl>(weight, geometry, kernel, false, storage);
}

int64_t IntConv2d::weight_bytes() const { return impl_->weight_bytes(); }

at::Tensor IntConv2d::accumulate(const at::Tensor& x) const {
  const std::string subject = "IntConv2d input";
  if (!x.defined() || x.dim() != 4 || (x.scalar_type() != at::kByte && x.scalar_type() != at::kChar))
    fail(subject, "uint8 or int8 [N, C, H, W]", describe(x));
  if (!x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    std::ostringstream found;
    found << "strides " << x.strides() << " for sizes " << x.sizes();
    fail(subject, "channels-last memory format (x.contiguous(at::MemoryFormat::ChannelsLast))", found.str());
  }
  const std::vector<int64_t>& w = impl_->shape();
  const IntConvGeometry& g = impl_->geometry();
  if (x.size(1) != impl_->in_channels()) {
    std::ostringstream expected;
    expected << impl_->in_channels() << " channels (weight " << at::IntArrayRef(w) << ", groups " << g.groups << ")";
    fail(subject, expected.str(), std::to_string(x.size(1)) + " channels");
  }
  Dims d{x.size(0), x.size(1), x.size(2), x.size(3), w[0], w[2], w[3], g.groups, 0, 0};
  const int64_t span_h = d.H + 2 * g.pad_h - g.dilation_h * (d.KH - 1) - 1;
  const int64_t span_w = d.W + 2 * g.pad_w - g.dilation_w * (d.KW - 1) - 1;
  if (span_h < 0 || span_w < 0) {
    std::ostringstream expected;
    expected << "a padded input of at least the dilated kernel, " << g.dilation_h * (d.KH - 1) + 1 << "x"
             << g.dilation_w * (d.KW - 1) + 1;
    fail(subject, expected.str(),
         std::to_string(d.H + 2 * g.pad_h) + "x" + std::to_string(d.W + 2 * g.pad_w) + " with padding");
  }
  d.Ho = span_h / g.stride_h + 1;
  d.Wo = span_w / g.stride_w + 1;
  const at::Tensor y =
      at::empty({d.N, d.O, d.Ho, d.Wo}, x.options().dtype(at::kInt).memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() > 0) impl_->run(x, d, y);
  return y;
}

IntLinear::IntLinear(const at::Tensor& weight, IntKernel kernel, WeightStorage storage) {
  const std::string subject = "IntLinear weight";
  if (!weight.defined() || weight.dim() != 2 || weight.scalar_type() != at::kChar || weight.numel() == 0)
    fail(subject, "non-empty int8 [O, I]", describe(weight));
  check_weight_values(weight, subject, storage);
  impl_ = std::make_shared<const detail::IntKernelImpl>(weight.reshape({weight.size(0), weight.size(1), 1, 1}),
                                                        IntConvGeometry{}, kernel, true, storage);
}

int64_t IntLinear::weight_bytes() const { return impl_->weight_bytes(); }

at::Tensor IntLinear::accumulate(const at::Tensor& x) const {
  const std::string subject = "IntLinear input";
  if (!x.defined() || x.dim() != 2 || (x.scalar_type() != at::kByte && x.scalar_type() != at::kChar))
    fail(subject, "uint8 or int8 [N, I]", describe(x));
  if (!x.is_contiguous()) {
    std::ostringstream found;
    found << "strides " << x.strides() << " for sizes " << x.sizes();
    fail(subject, "a contiguous tensor", found.str());
  }
  if (x.size(1) != impl_->in_channels())
    fail(subject, std::to_string(impl_->in_channels()) + " features (weight " +
                      std::to_string(impl_->out_channels()) + "x" + std::to_string(impl_->in_channels()) + ")",
         std::to_string(x.size(1)) + " features");
  const int64_t N = x.size(0), I = x.size(1), O = impl_->out_channels();
  const at::Tensor y = at::empty({N, O}, x.options().dtype(at::kInt));
  if (y.numel() > 0) impl_->run(x.view({N, I, 1, 1}), Dims{N, I, 1, 1, O, 1, 1, 1, 1, 1}, y.view({N, O, 1, 1}));
  return y;
}

}  // namespace dfq
