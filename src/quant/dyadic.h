// Requantization by dyadic numbers: how the integer engine multiplies integers
// by real ratios of scales without float arithmetic (HAWQ-V3; the idea of
// gemmlowp's fixed-point output stages).
//
// A layer's int32 accumulator acc means acc * unit in real units (unit =
// s_in * s_w); its output q = round(acc * unit / s_out) needs the real ratio
// M = unit / s_out. Offline, in double, M is written as
//
//   M ~= m * 2^-s,   m an integer in [2^(b-1), 2^b), 0 <= s <= 62
//
// (b = multiplier_bits, 31 by default: the relative error of the approximation
// is below 2^-(b-1)). At run time, with p = x * m computed exactly in int64
// (the caller bounds |x| so that |p| < 2^63, see max_operand()):
//
//   y = sign(p) * ((|p| + 2^(s-1)) >> s)          (s >= 1; y = p when s = 0)
//
// which is x * m / 2^s rounded half away from zero: the rounding of
// quantizer.h, so the only difference from the simulated engine is m 2^-s vs M.
// A power-of-two ratio 2^e (every ratio under dfq quantize --pow2-scales) gets
// m = 2^(b-1), s = b - 1 - e: the multiply-and-shift is then bit for bit one
// rounding shift of x by -e, so the general loops run such models exactly and
// the engine has no separate shift-only path.
// Sums of several rescaled terms (residual additions, concatenations) share
// one shift s, so they are rounded once, exactly:
//
//   y = round((x_a * m_a + x_b * m_b) / 2^s)      (DyadicSum)
#pragma once

#include <cstdint>
#include <vector>

namespace dfq {

struct Dyadic {
  int64_t multiplier = 0;  // m (negative allowed: a sign folded in)
  int shift = 0;           // s
  double value() const;    // m * 2^-s, for reports and tests
};

// The dyadic nearest to `real` with |m| < 2^multiplier_bits and m's top bit
// set (s capped to 62: tiny ratios lose low bits of m, not range). Throws
// dfq::Error for a non-finite real, |real| >= 2^(multiplier_bits - 1) (m would
// need a negative shift) or multiplier_bits outside 1..62.
Dyadic to_dyadic(double real, int multiplier_bits = 31);

// Several ratios on one shared shift: the largest |real| gets the full
// multiplier_bits, the others the same s (so they lose relative precision only
// when far smaller). Throws as to_dyadic.
std::vector<Dyadic> to_dyadic_sum(const std::vector<double>& reals, int multiplier_bits = 31);

// Largest |x| for which x * m cannot overflow int64 with |m| < 2^multiplier_bits.
constexpr int64_t max_operand(int multiplier_bits) { return (int64_t{1} << (62 - multiplier_bits)) - 1; }

// Bits b such that |x| <= bound keeps |x * m| < 2^63 (at most 31).
int multiplier_bits_for(int64_t bound);

// round(p / 2^s) half away from zero, for |p| < 2^62 and 0 <= s <= 62.
inline int64_t round_shift(int64_t p, int shift) {
  if (shift == 0) return p;
  const int64_t half = int64_t{1} << (shift - 1);
  return p >= 0 ? (p + half) >> shift : -((-p + half) >> shift);
}

// The same without branches, so loops over it vectorize: with half = 2^(s-1)
// (0 when s = 0), sign = p >> 63 (0 or -1) and |p| = (p ^ sign) - sign,
// round_shift(p, s) = ((((|p| + half) >> s) ^ sign) - sign).
inline int64_t round_shift_branchless(int64_t p, int64_t shift, int64_t half) {
  const int64_t sign = p >> 63;
  const uint64_t magnitude = static_cast<uint64_t>((p ^ sign) - sign);
  const int64_t q = static_cast<int64_t>((magnitude + static_cast<uint64_t>(half)) >> shift);
  return (q ^ sign) - sign;
}

// x * 2^k (0 <= k <= 62, the product within int64) as a shift of the unsigned
// bits: shifting a negative value left is undefined in C++17; this compiles to
// the same instruction.
inline int64_t shift_left(int64_t x, int64_t k) { return static_cast<int64_t>(static_cast<uint64_t>(x) << k); }

// round(x * m / 2^s), the dyadic requantization of one value.
inline int64_t requantize(int64_t x, Dyadic d) { return round_shift(x * d.multiplier, d.shift); }

inline int64_t clamp_to(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

}  // namespace dfq
