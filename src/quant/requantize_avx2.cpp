// AVX2 requantization (requantize_avx2.h). Compiled for the baseline ISA like
// int_kernels_avx2.cpp: only the functions marked DFQ_AVX2 use AVX2.
//
// Exactness, per 8 elements (the preconditions of the header hold):
//  v = acc + bias by vpaddd: |v| <= bound < 2^31, exact.
//  p = v m [+ b m_b] in int64 lanes by vpmuldq (signed 32 x 32 -> 64, even
//   int32 lanes; odd lanes after a 32-bit shift of both operands) and vpaddq.
//   A multiplier is split as m = hi 2^31 + lo with lo in [0, 2^31) and hi an
//   int32 (|m| < 2^62); v m = v lo + ((v hi) << 31), each product within
//   int64 and the sum, taken modulo 2^64 by the wrapping vpaddq/vpsllq, equal
//   to v m because |p| < 2^62 is checked. Layers whose multipliers all fit
//   31 bits (hi = 0: most Conv2d/Linear outputs) skip the hi products.
//  sign = (0 > p) by vpcmpgtq (AVX2 has no 64-bit arithmetic shift);
//   |p| = (p ^ sign) - sign; t = (|p| + half) >> s by vpsrlvq (|p| + half
//   < 2^63, a logical shift is right); the result (t ^ sign) - sign is the
//   int64 of dyadic.h's round_shift_branchless, and below 2^31 in magnitude,
//   so its low 32 bits are the int32 result.
//  Clamp by vpmaxsd/vpminsd to [lo, hi] (within the output type), then
//   narrowed by saturating packs that change no value in range.
#include "quant/requantize_avx2.h"

#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "quant/dyadic.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dfq::detail::avx2 {
namespace {

constexpr int64_t kLimit = int64_t{1} << 31;

int64_t magnitude(int64_t v) { return v < 0 ? -v : v; }

}  // namespace

bool prepare_requant32(const int64_t* bias, const int64_t* m, const int64_t* mb, const int64_t* shift, int64_t n,
                       int64_t bound, Requant32& out) {
  if (bound >= kLimit) return false;
  const int64_t blocks = (n + 7) / 8;
  out = Requant32{};
  for (int p : {0, 1}) {
    out.half[p].assign(static_cast<size_t>(blocks * 4), 0);
    out.shift[p].assign(static_cast<size_t>(blocks * 4), 0);
  }
  constexpr int64_t kWideLimit = int64_t{1} << 62;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t mi = m[i], mbi = mb ? mb[i] : 0, s = shift[i];
    if (magnitude(bias[i]) > bound || mi <= -kWideLimit || mi >= kWideLimit || mbi <= -kWideLimit ||
        mbi >= kWideLimit || s < 0 || s > 62)
      return false;
    const __int128 largest = static_cast<__int128>(bound) * magnitude(mi) + static_cast<__int128>(255) * magnitude(mbi);
    const __int128 half = s > 0 ? static_cast<__int128>(1) << (s - 1) : 0;
    if (largest + half >= static_cast<__int128>(1) << 62 || ((largest + half) >> s) >= kLimit) return false;
    out.bias.push_back(static_cast<int32_t>(bias[i]));
    // m = hi 2^31 + lo, lo in [0, 2^31): both int32 for |m| < 2^62.
    out.multiplier.push_back(static_cast<int32_t>(mi & (kLimit - 1)));
    out.multiplier_hi.push_back(static_cast<int32_t>(mi >> 31));
    out.wide = out.wide || (mi >> 31) != 0 || (mbi >> 31) != 0;
    if (mb) {
      out.multiplier_b.push_back(static_cast<int32_t>(mbi & (kLimit - 1)));
      out.multiplier_b_hi.push_back(static_cast<int32_t>(mbi >> 31));
    }
    const auto at = static_cast<size_t>(i / 8 * 4 + i % 8 / 2);
    out.half[i % 2][at] = static_cast<int64_t>(half);
    out.shift[i % 2][at] = s;
  }
  return true;
}

#if defined(__x86_64__)

#define DFQ_AVX2 __attribute__((target("avx2")))
#define DFQ_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline

namespace {

DFQ_AVX2_INLINE __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 8 bytes of b widened to int32.
template <class B>
DFQ_AVX2_INLINE __m256i widen8(const B* b) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b));
  if constexpr (std::is_same_v<B, int8_t>) return _mm256_cvtepi8_epi32(v);
  else return _mm256_cvtepu8_epi32(v);
}

// sign(p) ((|p| + half) >> s) of four int64 lanes.
DFQ_AVX2_INLINE __m256i round_shift4(__m256i p, __m256i half, __m256i s) {
  const __m256i sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), p);
  const __m256i mag = _mm256_sub_epi64(_mm256_xor_si256(p, sign), sign);
  const __m256i t = _mm256_srlv_epi64(_mm256_add_epi64(mag, half), s);
  return _mm256_sub_epi64(_mm256_xor_si256(t, sign), sign);
}

// Stores 8 int32 in [lo, hi] (within Out) as Out.
template <class Out>
DFQ_AVX2_INLINE void store8(Out* out, __m256i r) {
  const __m256i words = _mm256_packs_epi32(r, r);  // per 128-bit half: r0..r3 twice, r4..r7 twice
  const __m256i bytes = std::is_same_v<Out, uint8_t> ? _mm256_packus_epi16(words, words) : _mm256_packs_epi16(words, words);
  const __m256i joined = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(joined));
}

// x m in int64 lanes (even int32 lanes of x; odd ones when Odd), m = hi 2^31
// + lo: x lo + ((x hi) << 31), wrapping in 64 bits where the true product
// fits (the preconditions), so the result is exact.
template <bool Odd, bool Wide>
DFQ_AVX2_INLINE __m256i multiply(__m256i x, __m256i lo, __m256i hi) {
  if constexpr (Odd) x = _mm256_srli_epi64(x, 32), lo = _mm256_srli_epi64(lo, 32), hi = _mm256_srli_epi64(hi, 32);
  const __m256i p = _mm256_mul_epi32(x, lo);
  if constexpr (!Wide) return p;
  else return _mm256_add_epi64(p, _mm256_slli_epi64(_mm256_mul_epi32(x, hi), 31));
}

// The loop of every entry point; B = void: no second input.
template <bool Wide, class B, class Out>
DFQ_AVX2 void run(const Requant32& c, const int32_t* acc, const B* b, int64_t n, int32_t lo, int32_t hi, Out* out) {
  const __m256i vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_add_epi32(load(acc + i), load(c.bias.data() + i));
    const __m256i m = load(c.multiplier.data() + i);
    const __m256i m_hi = Wide ? load(c.multiplier_hi.data() + i) : m;
    __m256i even = multiply<false, Wide>(v, m, m_hi), odd = multiply<true, Wide>(v, m, m_hi);
    if constexpr (!std::is_void_v<B>) {
      const __m256i x = widen8(b + i), mb = load(c.multiplier_b.data() + i);
      const __m256i mb_hi = Wide ? load(c.multiplier_b_hi.data() + i) : mb;
      even = _mm256_add_epi64(even, multiply<false, Wide>(x, mb, mb_hi));
      odd = _mm256_add_epi64(odd, multiply<true, Wide>(x, mb, mb_hi));
    }
    const size_t at = static_cast<size_t>(i / 2);
    even = round_shift4(even, load(c.half[0].data() + at), load(c.shift[0].data() + at));
    odd = round_shift4(odd, load(c.half[1].data() + at), load(c.shift[1].data() + at));
    const __m256i r = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    store8(out + i, _mm256_min_epi32(_mm256_max_epi32(r, vlo), vhi));
  }
  for (; i < n; ++i) {  // the last < 8 elements, as dyadic.h computes them
    const auto k = static_cast<size_t>(i), at = static_cast<size_t>(i / 8 * 4 + i % 8 / 2);
    auto full = [](int32_t low, int32_t high) { return int64_t{high} * (int64_t{1} << 31) + low; };
    int64_t p = (int64_t{acc[i]} + c.bias[k]) * full(c.multiplier[k], c.multiplier_hi[k]);
    if constexpr (!std::is_void_v<B>) p += int64_t{b[i]} * full(c.multiplier_b[k], c.multiplier_b_hi[k]);
    const int64_t q = round_shift_branchless(p, c.shift[i % 2][at], c.half[i % 2][at]);
    out[i] = static_cast<Out>(std::clamp<int64_t>(q, lo, hi));
  }
}

template <class B, class Out>
void dispatch(const Requant32& c, const int32_t* acc, const B* b, int64_t n, int32_t lo, int32_t hi, Out* out) {
  if (c.wide) run<true>(c, acc, b, n, lo, hi, out);
  else run<false>(c, acc, b, n, lo, hi, out);
}

}  // namespace

void requantize32(const Requant32& c, const int32_t* acc, int64_t n, int32_t lo, int32_t hi, uint8_t* out) {
  dispatch<void>(c, acc, static_cast<const void*>(nullptr), n, lo, hi, out);
}
void requantize32(const Requant32& c, const int32_t* acc, int64_t n, int32_t lo, int32_t hi, int8_t* out) {
  dispatch<void>(c, acc, static_cast<const void*>(nullptr), n, lo, hi, out);
}
void add_requantize32(const Requant32& c, const int32_t* acc, const uint8_t* b, int64_t n, int32_t lo, int32_t hi,
                      uint8_t* out) {
  dispatch(c, acc, b, n, lo, hi, out);
}
void add_requantize32(const Requant32& c, const int32_t* acc, const uint8_t* b, int64_t n, int32_t lo, int32_t hi,
                      int8_t* out) {
  dispatch(c, acc, b, n, lo, hi, out);
}
void add_requantize32(const Requant32& c, const int32_t* acc, const int8_t* b, int64_t n, int32_t lo, int32_t hi,
                      uint8_t* out) {
  dispatch(c, acc, b, n, lo, hi, out);
}
void add_requantize32(const Requant32& c, const int32_t* acc, const int8_t* b, int64_t n, int32_t lo, int32_t hi,
                      int8_t* out) {
  dispatch(c, acc, b, n, lo, hi, out);
}

#else  // not x86-64: integer_engine.cpp never calls these

void requantize32(const Requant32&, const int32_t*, int64_t, int32_t, int32_t, uint8_t*) { std::abort(); }
void requantize32(const Requant32&, const int32_t*, int64_t, int32_t, int32_t, int8_t*) { std::abort(); }
void add_requantize32(const Requant32&, const int32_t*, const uint8_t*, int64_t, int32_t, int32_t, uint8_t*) { std::abort(); }
void add_requantize32(const Requant32&, const int32_t*, const uint8_t*, int64_t, int32_t, int32_t, int8_t*) { std::abort(); }
void add_requantize32(const Requant32&, const int32_t*, const int8_t*, int64_t, int32_t, int32_t, uint8_t*) { std::abort(); }
void add_requantize32(const Requant32&, const int32_t*, const int8_t*, int64_t, int32_t, int32_t, int8_t*) { std::abort(); }

#endif

}  // namespace dfq::detail::avx2
