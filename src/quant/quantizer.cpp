#include "quant/quantizer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "core/error.h"

namespace dfq {

std::string QuantRange::describe() const {
  return std::string(is_signed ? "int" : "uint") + std::to_string(bits) + " [" + std::to_string(qmin()) + ", " +
         std::to_string(qmax()) + "]";
}

void check_bits(int bits, const std::string& option) {
  if (bits < 2 || bits > 8) fail(option, "a bit width from 2 to 8", std::to_string(bits));
}

at::Tensor round_half_away(const at::Tensor& x) { return at::sign(x) * at::floor(at::abs(x) + 0.5); }

namespace {

at::Tensor broadcast_scale(const at::Tensor& scale, const at::Tensor& x, int64_t axis) {
  if (scale.numel() == 1) return scale.reshape({});
  if (axis < 0 || axis >= x.dim() || scale.numel() != x.size(axis))
    fail("quantization scale", "one value or one per index of dimension " + std::to_string(axis),
         std::to_string(scale.numel()) + " values for a tensor of rank " + std::to_string(x.dim()));
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[static_cast<size_t>(axis)] = x.size(axis);
  return scale.reshape(shape);
}

}  // namespace

at::Tensor quantize(const at::Tensor& x, const at::Tensor& scale, QuantRange range, int64_t axis) {
  const at::Tensor s = broadcast_scale(scale.to(x.scalar_type()), x, axis);
  return at::clamp(round_half_away(x / s), static_cast<double>(range.qmin()), static_cast<double>(range.qmax()));
}

at::Tensor fake_quantize(const at::Tensor& x, const at::Tensor& scale, QuantRange range, int64_t axis) {
  return quantize(x, scale, range, axis) * broadcast_scale(scale.to(x.scalar_type()), x, axis);
}

double sqnr_db(const at::Tensor& x, const at::Tensor& x_hat) {
  const double signal = x.to(at::kDouble).pow(2).sum().item<double>();
  const double noise = (x.to(at::kDouble) - x_hat.to(at::kDouble)).pow(2).sum().item<double>();
  if (noise == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

}  // namespace dfq
