// Uniform quantization: the one formula for every tensor dfq quantizes.
//
//   real = scale * (q - zero_point)
//
// This scheme is symmetric, so zero_point = 0 for every tensor (it is still
// stored in the artifact, and checked to be 0 on load):
//   signed b bits    q in [-(2^(b-1) - 1), 2^(b-1) - 1]   (narrow: -128 unused at
//                    8 bits, so negation never overflows and the grid is symmetric)
//   unsigned b bits  q in [0, 2^b - 1]                    (outputs of ReLU/ReLU6)
// A clipping threshold c > 0 gives scale = c / qmax. Quantizing rounds half away
// from zero (q = sign(x) * floor(|x| / scale + 1/2)), then clamps to [qmin, qmax];
// the integer engine's requantization rounds the same way, so simulated and
// integer results agree.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace dfq {

struct QuantRange {
  int bits = 8;
  bool is_signed = true;
  int64_t qmin() const { return is_signed ? -qmax() : 0; }
  int64_t qmax() const { return is_signed ? (int64_t{1} << (bits - 1)) - 1 : (int64_t{1} << bits) - 1; }
  std::string describe() const;  // e.g. "int4 [-7, 7]", "uint8 [0, 255]"
};

// Throws dfq::Error naming `option` unless 2 <= bits <= 8.
void check_bits(int bits, const std::string& option);

// Round half away from zero (C's round()), the rounding of this scheme.
at::Tensor round_half_away(const at::Tensor& x);

// q = clamp(round(x / scale), qmin, qmax) as float-valued integers. `scale`
// is a scalar tensor or one value per index of dimension `axis` of x.
at::Tensor quantize(const at::Tensor& x, const at::Tensor& scale, QuantRange range, int64_t axis = 0);

// scale * quantize(x): what the integer engine's value means in real units.
at::Tensor fake_quantize(const at::Tensor& x, const at::Tensor& scale, QuantRange range, int64_t axis = 0);

// Signal-to-quantization-noise ratio in dB: 10 log10(|x|^2 / |x - x_hat|^2);
// +inf when x_hat == x.
double sqnr_db(const at::Tensor& x, const at::Tensor& x_hat);

}  // namespace dfq
