#include "quant/dyadic.h"

#include <cmath>
#include <string>

#include "core/error.h"

namespace dfq {
namespace {

void check(double real, int multiplier_bits) {
  if (multiplier_bits < 1 || multiplier_bits > 62)
    fail("dyadic multiplier bits", "1..62", std::to_string(multiplier_bits));
  if (!std::isfinite(real)) fail("requantization ratio", "a finite number", std::to_string(real));
  if (std::fabs(real) >= std::ldexp(1.0, multiplier_bits - 1))  // the shift would be negative
    fail("requantization ratio", "below 2^" + std::to_string(multiplier_bits - 1) + " in magnitude",
         std::to_string(real));
}

// The shift that gives |real| a multiplier with its top bit at multiplier_bits - 1.
int shift_for(double real, int multiplier_bits) {
  int exponent = 0;
  std::frexp(std::fabs(real), &exponent);  // |real| = f * 2^exponent, f in [0.5, 1)
  return std::min(62, multiplier_bits - exponent);
}

}  // namespace

double Dyadic::value() const { return std::ldexp(static_cast<double>(multiplier), -shift); }

Dyadic to_dyadic(double real, int multiplier_bits) {
  check(real, multiplier_bits);
  if (real == 0) return Dyadic{0, 0};
  int shift = shift_for(real, multiplier_bits);
  double m = std::round(std::ldexp(real, shift));
  if (std::fabs(m) >= std::ldexp(1.0, multiplier_bits)) {  // f rounded up to 1: one bit less of shift
    --shift;
    m = std::round(std::ldexp(real, shift));
  }
  return Dyadic{static_cast<int64_t>(m), shift};
}

std::vector<Dyadic> to_dyadic_sum(const std::vector<double>& reals, int multiplier_bits) {
  double largest = 0;
  for (double r : reals) {
    check(r, multiplier_bits);
    largest = std::max(largest, std::fabs(r));
  }
  std::vector<Dyadic> out(reals.size());
  if (largest == 0) return out;
  const int shift = to_dyadic(largest, multiplier_bits).shift;
  for (size_t i = 0; i < reals.size(); ++i)
    out[i] = Dyadic{static_cast<int64_t>(std::round(std::ldexp(reals[i], shift))), shift};
  return out;
}

int multiplier_bits_for(int64_t bound) {
  int bits = 31;
  while (bits > 1 && bound > max_operand(bits)) --bits;
  return bits;
}

}  // namespace dfq
