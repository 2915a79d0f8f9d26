// Integer convolution and linear kernels of the integer-only engine.
//
// They compute the exact int32 accumulators sum(w * x) of int8 weights and
// uint8/int8 activations (real = scale * q, zero point 0, so nothing else enters
// the sum; bias and requantization are the caller's). Two implementations agree
// bit for bit: kReference, plain loops that are the ground truth, and kFast,
// which runs one of four paths (IntKernelPath below), all exact for any
// int8/uint8 input value:
//   onednn    oneDNN's int8 kernels; only when its effective ISA has AVX-512
//             VNNI (without it oneDNN's u8 x s8 products saturate in int16);
//   avx_vnni  dfq's AVX2 kernels with AVX-VNNI's 256-bit vpdpbusd
//             (int_kernels_avx2.cpp); needs AVX2 and AVX-VNNI;
//   avx2      dfq's AVX2 kernels (int_kernels_avx2.cpp); needs AVX2;
//   portable  a threaded loop of int16 dot products; any CPU.
// By default kFast uses the first of these the CPU supports. The environment
// variable DFQ_INT_KERNELS=onednn|avx_vnni|avx2|portable, read once (at the first
// kFast kernel or int_kernel_path() call), forces one; an unknown value or a
// path the CPU cannot run makes those calls throw dfq::Error.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dfq {

namespace detail {
class IntKernelImpl;
}

struct IntConvGeometry {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
};

enum class IntKernel { kReference, kFast };

// How a prepared kernel keeps its weights between calls. kPacked4 (weights of
// <= 4 bits, values in [-8, 7]) stores the packed nibbles of packing.h and
// unpacks a layer's weights into a temporary for each call (for kFast, also
// oneDNN's reorder into its blocked layout, or the portable path's packing),
// so the resident weight memory is half a byte per weight -- except on the
// avx2 path, which keeps its own layout (one byte per weight) once used, as
// repacking at every call costs too much time; kInt8 keeps int8 weights
// (kFast: and the copies its paths prepare on first use) and prepares nothing
// per call. weight_bytes() counts every copy.
enum class WeightStorage { kInt8, kPacked4 };

// A prepared integer 2-D convolution: sum over (c, kh, kw) of w * x, zero
// padding, no bias. Immutable after construction; accumulate() may be called
// from several threads at once.
class IntConv2d {
 public:
  // weight: int8 [O, I/groups, kH, kW], values in [-127, 127] ([-8, 7] for
  // kPacked4). Throws dfq::Error on a bad shape, dtype, value or geometry, or
  // when an accumulator could overflow int32.
  IntConv2d(const at::Tensor& weight, IntConvGeometry geometry, IntKernel kernel,
            WeightStorage storage = WeightStorage::kInt8);
  // x: uint8 or int8 [N, C, H, W], channels-last (x.is_contiguous(at::MemoryFormat::ChannelsLast)).
  // Returns the int32 accumulators [N, O, Ho, Wo], channels-last.
  at::Tensor accumulate(const at::Tensor& x) const;
  // Bytes of weights the kernel keeps between calls (every copy: the stored
  // weights and, for kFast, the reordered or packed ones its paths prepared so far).
  int64_t weight_bytes() const;

 private:
  std::shared_ptr<const detail::IntKernelImpl> impl_;
};

// A prepared integer fully connected layer: y[n, o] = sum_i w[o, i] * x[n, i].
class IntLinear {
 public:
  // weight: int8 [O, I], values in [-127, 127] ([-8, 7] for kPacked4); throws
  // dfq::Error like IntConv2d.
  IntLinear(const at::Tensor& weight, IntKernel kernel, WeightStorage storage = WeightStorage::kInt8);
  // x: uint8 or int8 [N, I], contiguous. Returns int32 [N, O].
  at::Tensor accumulate(const at::Tensor& x) const;
  int64_t weight_bytes() const;  // as IntConv2d::weight_bytes

 private:
  std::shared_ptr<const detail::IntKernelImpl> impl_;
};

// True when kFast can use oneDNN on this CPU: oneDNN's effective ISA includes
// AVX-512 VNNI (DNNL_MAX_CPU_ISA can lower it). Without VNNI oneDNN's u8 x s8
// products saturate in int16, so kFast then runs the avx2 or portable path.
bool fast_int_kernels_available();

// The paths of kFast (see the top of this file).
enum class IntKernelPath { kOnednn, kAvxVnni, kAvx2, kPortable };

// "onednn", "avx_vnni", "avx2" or "portable".
const char* int_kernel_path_name(IntKernelPath path);
// Whether this CPU (and build) can run `path`; kPortable always.
bool int_kernel_path_supported(IntKernelPath path);
// The paths this CPU supports, best first.
std::vector<IntKernelPath> supported_int_kernel_paths();
// The path DFQ_INT_KERNELS=value forces. Throws dfq::Error naming the
// variable, the value and the paths this CPU supports when the value is not a
// path name or names one the CPU cannot run.
IntKernelPath parse_int_kernel_path(const std::string& value);
// The name of the path kFast uses now: a ScopedIntKernelPath's, else
// DFQ_INT_KERNELS's, else the best supported. Throws dfq::Error (naming the
// variable, its value and the paths this CPU supports) when DFQ_INT_KERNELS
// is set to an unknown or unsupported path. A layer oneDNN declines (or one
// tap over its float32-exact bound, int_kernels.cpp) runs the best of
// avx_vnni, avx2 and portable the CPU supports.
const char* int_kernel_path();

// The instruction set of the integer engine's other vector loops
// (requantization, residual adds; integer_engine.cpp): the best this CPU has
// (kAvx512: x86-64-v4), lowered to kAvx2 while the avx2 or avx_vnni path is forced and to
// kBaseline while the portable path is (DFQ_INT_KERNELS, ScopedIntKernelPath),
// so that a forced path runs what a CPU with nothing better runs.
enum class LoopIsa { kAvx512, kAvx2, kBaseline };
LoopIsa int_loop_isa();

// For tests and measurements: forces kFast's path for every kernel (also ones
// already made) while the object lives; restores the previous choice when
// destroyed. Throws dfq::Error when the CPU cannot run `path`. Not meant to
// change while kernels run in other threads.
class ScopedIntKernelPath {
 public:
  explicit ScopedIntKernelPath(IntKernelPath path);
  ~ScopedIntKernelPath();
  ScopedIntKernelPath(const ScopedIntKernelPath&) = delete;
  ScopedIntKernelPath& operator=(const ScopedIntKernelPath&) = delete;

 private:
  int saved_;
};

}  // namespace dfq
