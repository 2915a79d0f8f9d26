// AVX2 requantization of int32 accumulators, for the integer engine's
// Conv2d/Linear outputs and its adds that read an accumulator
// (integer_engine.cpp), where the portable int64 loops cost as much as the
// convolutions on AVX2 CPUs. Bit-exact with dyadic.h's rounding:
//
//   out[i] = clamp(sign(p) ((|p| + half[i]) >> s[i]), lo, hi),
//   p = (acc[i] + bias[i]) m[i]  [+ b[i] m_b[i]]
//
// computed with 32 x 32 -> 64-bit multiplies (vpmuldq) under preconditions
// that prepare_requant32() checks once per layer: |acc + bias| <= bound <
// 2^31 (so the sum is an exact int32), |m|, |m_b| < 2^62, and for every
// |acc + bias| <= bound and |b| <= 255: |p| + half < 2^62 and the rounded
// magnitude below 2^31 (an exact int32 before the clamp). A layer that
// misses them keeps the int64 loops.
// Internal to integer_engine.cpp, which calls the loops only on a CPU with AVX2.
#pragma once

#include <cstdint>
#include <vector>

namespace dfq::detail::avx2 {

// Per-element constants of a span (the engine's per-channel constants,
// repeated over the pixels of a tile). The 64-bit ones are split by parity
// the way vpmuldq pairs lanes: half[p][4 k + j] belongs to element 8 k + 2 j + p.
// A multiplier m is kept as m = hi 2^31 + lo: `multiplier` lo in [0, 2^31),
// `multiplier_hi` hi; wide when some hi is not 0.
struct Requant32 {
  std::vector<int32_t> bias, multiplier, multiplier_hi, multiplier_b, multiplier_b_hi;  // *_b: adds only
  std::vector<int64_t> half[2], shift[2];
  bool wide = false;
};

// Requant32 of n elements (int64 constants as the engine keeps them; mb null
// unless an add), or false when the preconditions above fail for bound (of
// |acc + bias|) and, for an add, |b| <= 255.
bool prepare_requant32(const int64_t* bias, const int64_t* m, const int64_t* mb, const int64_t* shift, int64_t n,
                       int64_t bound, Requant32& out);

// out[i] for i < n (n at most the constants' length): a Conv2d/Linear output.
void requantize32(const Requant32& c, const int32_t* acc, int64_t n, int32_t lo, int32_t hi, uint8_t* out);
void requantize32(const Requant32& c, const int32_t* acc, int64_t n, int32_t lo, int32_t hi, int8_t* out);

// The same with the other input b of an add (c.multiplier_b).
void add_requantize32(const Requant32& c, const int32_t* acc, const uint8_t* b, int64_t n, int32_t lo, int32_t hi,
                      uint8_t* out);
void add_requantize32(const Requant32& c, const int32_t* acc, const uint8_t* b, int64_t n, int32_t lo, int32_t hi,
                      int8_t* out);
void add_requantize32(const Requant32& c, const int32_t* acc, const int8_t* b, int64_t n, int32_t lo, int32_t hi,
                      uint8_t* out);
void add_requantize32(const Requant32& c, const int32_t* acc, const int8_t* b, int64_t n, int32_t lo, int32_t hi,
                      int8_t* out);

}  // namespace dfq::detail::avx2
