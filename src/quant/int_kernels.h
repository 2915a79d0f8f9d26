// Integer convolution and linear kernels of the integer-only engine.
//
// They compute the exact int32 accumulators sum(w * x) of int8 weights and
// uint8/int8 activations (real = scale * q, zero point 0, so nothing else enters
// the sum; bias and requantization are the caller's). Two implementations agree
// bit for bit: kReference, plain loops that are the ground truth, and kFast,
// oneDNN on CPUs with VNNI, else a threaded portable loop. Accumulators are
// exact for any int8/uint8 input value.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

namespace dfq {

namespace detail {
class IntKernelImpl;
}

struct IntConvGeometry {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
};

enum class IntKernel { kReference, kFast };

// How a prepared kernel keeps its weights between calls. kPacked4 (weights of
// <= 4 bits, values in [-8, 7]) keeps only the packed nibbles of packing.h and
// unpacks a layer's weights into a temporary for each call (for kFast, also
// oneDNN's reorder into its blocked layout), so the resident weight memory is
// half a byte per weight; kInt8 keeps int8 weights (kFast: and oneDNN's
// reordered copy) and prepares nothing per call.
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
  // weights and, for kFast, oneDNN's reordered ones prepared so far).
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

// True when kFast has its vectorized (oneDNN) path on this CPU: oneDNN's
// effective ISA includes AVX-512 VNNI (DNNL_MAX_CPU_ISA can lower it). Without
// VNNI oneDNN's u8 x s8 products saturate in int16, so kFast then runs a
// threaded portable loop instead (still exact).
bool fast_int_kernels_available();

}  // namespace dfq
