// Range-setting methods (quant/range.h) on synthetic data with known answers:
// brute-force scans with fake_quantize, closed-form optima of Gaussian and
// Laplace sources, order statistics, and a from-the-definition KL.
#include "quant/range.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_util.h"

namespace dfq {
namespace {

using dfq::testing::error_of;

constexpr double kInf = std::numeric_limits<double>::infinity();

enum class Dist { kUniform, kGaussian, kLaplace };

const char* name(Dist d) { return d == Dist::kUniform ? "uniform" : d == Dist::kGaussian ? "gaussian" : "laplace"; }

// n samples of U[-1, 1], N(0, 1) or Laplace(0, 1) (a random sign times Exp(1)).
at::Tensor samples(Dist d, int64_t n, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  switch (d) {
    case Dist::kUniform: return at::rand({n}, gen) * 2 - 1;
    case Dist::kGaussian: return at::randn({n}, gen);
    case Dist::kLaplace: {
      const at::Tensor sign = at::randint(0, 2, {n}, gen, at::kFloat) * 2 - 1;
      return at::empty({n}, at::kFloat).exponential_(1.0, gen) * sign;
    }
  }
  return {};
}

// Exact MSE of each clip on x, straight from fake_quantize (several clips per
// pass: x is broadcast to [k, n] with one scale per row).
std::vector<double> brute_mse(const at::Tensor& x, const std::vector<double>& clips, QuantRange range) {
  std::vector<double> out;
  constexpr size_t kChunk = 16;
  for (size_t start = 0; start < clips.size(); start += kChunk) {
    const size_t k = std::min(kChunk, clips.size() - start);
    std::vector<float> scales;
    for (size_t i = 0; i < k; ++i) scales.push_back(static_cast<float>(clips[start + i] / range.qmax()));
    const at::Tensor rows = x.reshape({1, -1}).expand({static_cast<int64_t>(k), x.numel()});
    const at::Tensor fq = fake_quantize(rows, at::tensor(scales), range, 0);
    const at::Tensor mse = (rows - fq).to(at::kDouble).pow(2).mean(1);
    for (size_t i = 0; i < k; ++i) out.push_back(mse[static_cast<int64_t>(i)].item<double>());
  }
  return out;
}

// Least MSE over a scan of clips: 120 uniform over (0, max], then 60 between
// the neighbours of the best.
double brute_force_min_mse(const at::Tensor& x, QuantRange range) {
  const double hi = (range.is_signed ? x.abs() : x.clamp_min(0)).max().item<double>();
  std::vector<double> coarse;
  for (int i = 1; i <= 120; ++i) coarse.push_back(hi * i / 120);
  const std::vector<double> e = brute_mse(x, coarse, range);
  const size_t best = static_cast<size_t>(std::min_element(e.begin(), e.end()) - e.begin());
  const double lo = best > 0 ? coarse[best - 1] : 0.0, up = best + 1 < coarse.size() ? coarse[best + 1] : hi;
  std::vector<double> fine;
  for (int i = 1; i <= 60; ++i) fine.push_back(lo + (up - lo) * i / 61);
  const std::vector<double> f = brute_mse(x, fine, range);
  return std::min(e[best], *std::min_element(f.begin(), f.end()));
}

Histogram histogram_of(const at::Tensor& x, int batches = 4) {
  Histogram h;
  for (const at::Tensor& batch : x.chunk(batches)) h.add(batch);
  return h;
}

RangeOptions with(RangeMethod method, double percentile = 99.99) { return RangeOptions{method, percentile}; }

// ---- closed-form MSE of the signed grid on Gaussian and Laplace sources ---------

double Phi(double x) { return x == kInf ? 1.0 : 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double phi(double x) { return x == kInf ? 0.0 : std::exp(-x * x / 2) / std::sqrt(2 * M_PI); }

// integral over [a, b] of (x - m)^2 times the density of |x| (2 phi, or e^-x for Laplace(0, 1)).
double cell_error(bool gaussian, double a, double b, double m) {
  if (gaussian) {
    const double b_phi = b == kInf ? 0.0 : b * phi(b);
    return 2 * ((1 + m * m) * (Phi(b) - Phi(a)) - (b_phi - a * phi(a)) + 2 * m * (phi(b) - phi(a)));
  }
  auto antiderivative = [m](double x) {
    return x == kInf ? 0.0 : -std::exp(-x) * ((x - m) * (x - m) + 2 * (x - m) + 2);
  };
  return antiderivative(b) - antiderivative(a);
}

// E (x - Q_c(x))^2 with levels k c / qmax, |k| <= qmax, rounding to the nearest.
double analytic_mse(bool gaussian, double c, int64_t qmax) {
  const double s = c / qmax;
  double total = 0;
  for (int64_t k = 0; k <= qmax; ++k) {
    const double a = k == 0 ? 0.0 : (k - 0.5) * s, b = k == qmax ? kInf : (k + 0.5) * s;
    total += cell_error(gaussian, a, b, k * s);
  }
  return total;
}

double analytic_optimum(bool gaussian, int64_t qmax) {
  double best = 0, best_e = kInf;
  for (int i = 1; i <= 15000; ++i) {
    const double c = i * 1e-3, e = analytic_mse(gaussian, c, qmax);
    if (e < best_e) best_e = e, best = c;
  }
  const double center = best;
  for (int i = -200; i <= 200; ++i) {
    const double c = center + i * 1e-5, e = analytic_mse(gaussian, c, qmax);
    if (e < best_e) best_e = e, best = c;
  }
  return best;
}

// ---- KL from its definition (range.h), for the brute-force check -------------------

double kl_at(const std::vector<int64_t>& h, int64_t used, int64_t i, int64_t levels) {
  std::vector<double> p(h.begin(), h.begin() + i), q(static_cast<size_t>(i), 0.0);
  for (int64_t j = i; j < used; ++j) p[static_cast<size_t>(i - 1)] += static_cast<double>(h[static_cast<size_t>(j)]);
  const int64_t merged = i / levels;
  for (int64_t g = 0; g < levels; ++g) {
    const int64_t start = g * merged, stop = g == levels - 1 ? i : start + merged;
    double group = 0;
    int64_t nonzero = 0;
    for (int64_t j = start; j < stop; ++j) {
      group += static_cast<double>(h[static_cast<size_t>(j)]);
      nonzero += p[static_cast<size_t>(j)] > 0;
    }
    for (int64_t j = start; j < stop; ++j)
      if (p[static_cast<size_t>(j)] > 0) q[static_cast<size_t>(j)] = group / nonzero;
  }
  double p_sum = 0, q_sum = 0;
  for (int64_t j = 0; j < i; ++j) p_sum += p[static_cast<size_t>(j)], q_sum += q[static_cast<size_t>(j)];
  double kl = 0;
  for (int64_t j = 0; j < i; ++j) {
    const double pj = p[static_cast<size_t>(j)] / p_sum, qj = q[static_cast<size_t>(j)] / q_sum;
    if (pj == 0) continue;
    if (qj == 0) return kInf;
    kl += pj * std::log(pj / qj);
  }
  return kl;
}

// ---- parsing ----------------------------------------------------------------------

TEST(RangeParse, NamesRoundTrip) {
  for (RangeMethod m : {RangeMethod::kMinMax, RangeMethod::kPercentile, RangeMethod::kKl, RangeMethod::kMmse})
    EXPECT_EQ(parse_range_method(to_string(m), "--weight-range"), m);
  EXPECT_EQ(RangeOptions{}.method, RangeMethod::kMmse);
}

TEST(RangeParse, UnknownNameNamesTheOption) {
  const std::string message = error_of([] { parse_range_method("foo", "--weight-range"); });
  EXPECT_NE(message.find("--weight-range"), std::string::npos) << message;
  EXPECT_NE(message.find("foo"), std::string::npos) << message;
}

// ---- minmax / percentile ----------------------------------------------------------

TEST(RangeMinMax, ReturnsTheMaxOfTheRelevantPart) {
  const at::Tensor x = at::tensor({0.5f, -3.0f, 2.0f, 0.0f});
  const RangeOptions minmax = with(RangeMethod::kMinMax);
  EXPECT_FLOAT_EQ(choose_clip(x, {8, true}, minmax), 3.0);
  EXPECT_FLOAT_EQ(choose_clip(x, {8, false}, minmax), 2.0);
  const Histogram h = histogram_of(x, 1);
  EXPECT_FLOAT_EQ(h.clip({8, true}, minmax), 3.0);
  EXPECT_FLOAT_EQ(h.clip({8, false}, minmax), 2.0);
  // Nothing above zero in an unsigned range: a tiny positive clip, not 0.
  const at::Tensor negative = at::tensor({-1.0f, -2.0f, 0.0f});
  EXPECT_GT(choose_clip(negative, {8, false}, minmax), 0.0);
  EXPECT_LT(choose_clip(negative, {8, false}, minmax), 1e-6);
  EXPECT_GT(histogram_of(negative, 1).clip({8, false}, minmax), 0.0);
}

TEST(RangePercentile, InterpolatesBetweenOrderStatistics) {
  const at::Tensor x = at::tensor({5.0f, -1.0f, 3.0f, 2.0f, -4.0f});  // |x| sorted: 1 2 3 4 5
  EXPECT_NEAR(choose_clip(x, {8, true}, with(RangeMethod::kPercentile, 50)), 3.0, 1e-6);
  EXPECT_NEAR(choose_clip(x, {8, true}, with(RangeMethod::kPercentile, 90)), 4.6, 1e-6);  // rank 3.6
  EXPECT_NEAR(choose_clip(x, {8, true}, with(RangeMethod::kPercentile, 100)), 5.0, 1e-6);
  // Unsigned: a percentile of x itself; x sorted: -4 -1 2 3 5, rank 2.4 -> 2.4.
  EXPECT_NEAR(choose_clip(x, {8, false}, with(RangeMethod::kPercentile, 60)), 2.4, 1e-6);
}

TEST(RangePercentile, UniformMatchesAnalyticPercentile) {
  const at::Tensor u = samples(Dist::kUniform, 200000, 7);  // U[-1, 1]
  const Histogram h = histogram_of(u);
  // Sampling standard deviation of these percentiles is ~2e-4.
  const RangeOptions p99 = with(RangeMethod::kPercentile, 99);
  EXPECT_NEAR(choose_clip(u, {8, true}, p99), 0.99, 3e-3);   // |x| ~ U[0, 1]
  EXPECT_NEAR(choose_clip(u, {8, false}, p99), 0.98, 3e-3);  // P(x <= t) = (t + 1) / 2
  EXPECT_NEAR(h.clip({8, true}, p99), 0.99, 3e-3);
  EXPECT_NEAR(h.clip({8, false}, p99), 0.98, 3e-3);
  const at::Tensor u01 = (u + 1) / 2;  // U[0, 1]
  EXPECT_NEAR(choose_clip(u01, {8, false}, p99), 0.99, 3e-3);
  EXPECT_NEAR(histogram_of(u01).clip({8, false}, with(RangeMethod::kPercentile, 50)), 0.5, 3e-3);
}

TEST(RangePercentile, RefusesPercentileOutsideZeroToHundred) {
  const at::Tensor x = at::tensor({1.0f, 2.0f});
  const Histogram h = histogram_of(x, 1);
  for (double p : {0.0, -5.0, 100.5, std::nan("")}) {
    const RangeOptions bad = with(RangeMethod::kPercentile, p);
    EXPECT_NE(error_of([&] { choose_clip(x, {8, true}, bad); }).find("percentile"), std::string::npos) << p;
    EXPECT_NE(error_of([&] { choose_weight_clips(x.reshape({2, 1}), {8, true}, bad); }), "") << p;
    EXPECT_NE(error_of([&] { h.clip({8, true}, bad); }), "") << p;
  }
}

// ---- mmse ---------------------------------------------------------------------------

// The chosen clip, scored exactly, is within 1 % of the best clip of a direct scan.
TEST(RangeMmse, ExactAndHistogramWithinOnePercentOfBruteForce) {
  struct Case {
    Dist dist;
    QuantRange range;
  };
  std::vector<Case> cases;
  for (Dist d : {Dist::kUniform, Dist::kGaussian, Dist::kLaplace})
    for (int bits : {2, 3, 4, 8}) cases.push_back({d, {bits, true}});
  cases.push_back({Dist::kGaussian, {4, false}});  // ReLU-like: half the mass at <= 0
  cases.push_back({Dist::kGaussian, {8, false}});
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(name(c.dist)) + " " + c.range.describe());
    const at::Tensor x = samples(c.dist, 100000, 11);
    const double best = brute_force_min_mse(x, c.range);
    const double exact = choose_clip(x, c.range, with(RangeMethod::kMmse));
    const double binned = histogram_of(x).clip(c.range, with(RangeMethod::kMmse));
    const std::vector<double> e = brute_mse(x, {exact, binned}, c.range);
    EXPECT_LE(e[0], 1.01 * best) << "clip " << exact;
    EXPECT_LE(e[1], 1.01 * best) << "clip " << binned;
    EXPECT_NEAR(quantization_mse(x, exact, c.range), e[0], 1e-6 * e[0]);
  }
}

// The test's closed-form MSE reproduces Max (1960), Table II: optimum uniform
// quantizer steps for N(0, 1) with N = 3, 7, 15 levels are 1.224, 0.6508, 0.3534,
// i.e. clips of 1.224, 1.952 and 2.474 (2, 3 and 4 signed bits).
TEST(RangeMmse, AnalyticHelperReproducesMax1960) {
  EXPECT_NEAR(analytic_optimum(true, 1), 1.224, 2e-3);
  EXPECT_NEAR(analytic_optimum(true, 3), 3 * 0.6508, 2e-3);
  EXPECT_NEAR(analytic_optimum(true, 7), 7 * 0.3534, 2e-3);
}

// Optimal clips of N(0, sigma) and Laplace(0, b) at 2, 3, 4 signed bits. (Banner
// et al. 2019's 1.71/2.15/2.55 sigma and 2.83/3.89/5.03 b do not apply here:
// they are for 2^M levels without a zero level, and come from the Delta^2/12
// noise approximation; this grid has 2^b - 1 levels including 0.)
TEST(RangeMmse, MatchesAnalyticOptimaOfGaussianAndLaplace) {
  const double scale = 0.05;  // weight-like magnitudes
  for (Dist d : {Dist::kGaussian, Dist::kLaplace}) {
    const at::Tensor x = samples(d, 200000, 3) * scale;
    const Histogram h = histogram_of(x);
    for (int bits : {2, 3, 4}) {
      const QuantRange range{bits, true};
      SCOPED_TRACE(std::string(name(d)) + " " + range.describe());
      const double expected = analytic_optimum(d == Dist::kGaussian, range.qmax()) * scale;
      EXPECT_NEAR(choose_clip(x, range, with(RangeMethod::kMmse)), expected, 0.02 * expected);
      EXPECT_NEAR(h.clip(range, with(RangeMethod::kMmse)), expected, 0.02 * expected);
    }
  }
}

// The histogram's MSE estimate is within 1 % of the exact MSE of the same clip.
TEST(RangeHistogram, MseEstimateWithinOnePercent) {
  for (Dist d : {Dist::kUniform, Dist::kGaussian, Dist::kLaplace}) {
    const at::Tensor x = samples(d, 100000, 5);
    const Histogram h = histogram_of(x);
    for (QuantRange range : {QuantRange{2, true}, QuantRange{4, true}, QuantRange{8, true}, QuantRange{8, false}}) {
      const double hi = range.is_signed ? h.max_abs() : h.max_positive();
      for (double clip : {0.1 * hi, 0.37 * hi, 0.8 * hi, hi}) {
        SCOPED_TRACE(std::string(name(d)) + " " + range.describe() + " clip " + std::to_string(clip));
        const double exact = quantization_mse(x, clip, range);
        EXPECT_NEAR(h.quantization_mse(clip, range), exact, 0.01 * exact);
      }
    }
  }
}

// ---- kl -------------------------------------------------------------------------------

TEST(RangeKl, ChosenThresholdHasTheLeastKl) {
  const at::Tensor g = samples(Dist::kGaussian, 100000, 13);
  for (QuantRange range : {QuantRange{8, true}, QuantRange{4, true}, QuantRange{8, false}}) {
    SCOPED_TRACE(range.describe());
    const Histogram h = histogram_of(g);
    const double clip = h.clip(range, with(RangeMethod::kKl));
    std::vector<int64_t> counts = h.magnitude_counts(range.is_signed);
    counts[0] += h.zero_count();
    int64_t used = static_cast<int64_t>(counts.size());
    while (counts[static_cast<size_t>(used - 1)] == 0) --used;
    const int64_t levels = range.qmax();
    const int64_t chosen = static_cast<int64_t>(std::ceil(clip / h.bin_width() - 1e-6));
    ASSERT_GE(chosen, levels);
    ASSERT_LE(chosen, used);
    const double kl_chosen = kl_at(counts, used, chosen, levels);
    ASSERT_TRUE(std::isfinite(kl_chosen));
    for (int64_t i = levels; i <= used; ++i) ASSERT_LE(kl_chosen, kl_at(counts, used, i, levels) + 1e-12) << "i " << i;
    // One tensor of exact values takes the same route (2048 bins for >= 2048 values).
    EXPECT_DOUBLE_EQ(choose_clip(g, range, with(RangeMethod::kKl)), clip);
  }
}

TEST(RangeKl, GaussianClipLiesStrictlyInsideTheRange) {
  const at::Tensor g = samples(Dist::kGaussian, 100000, 17);
  const double max_abs = g.abs().max().item<double>();
  for (int bits : {4, 8}) {
    const double clip = choose_clip(g, {bits, true}, with(RangeMethod::kKl));
    EXPECT_GT(clip, 0.5) << bits;  // not a degenerate near-zero threshold (sigma = 1)
    EXPECT_LT(clip, max_abs) << bits;
  }
}

// int2 has one level above zero: every one-bin candidate has KL 0, so kl is refused.
TEST(RangeKl, RefusesSignedTwoBits) {
  const at::Tensor g = samples(Dist::kGaussian, 1000, 19);
  EXPECT_NE(error_of([&] { choose_clip(g, {2, true}, with(RangeMethod::kKl)); }).find("kl"), std::string::npos);
  EXPECT_NE(error_of([&] { histogram_of(g).clip({2, true}, with(RangeMethod::kKl)); }), "");
  EXPECT_GT(choose_clip(g, {2, false}, with(RangeMethod::kKl)), 0.0);  // uint2 has 3 levels
}

// ---- weights --------------------------------------------------------------------------

// Channels that are the same values times 2^k get clips exactly 2^k times the
// first one (power-of-two scaling is exact in float), for every method.
TEST(RangeWeights, ChannelsWithDifferentScalesGetTheirOwnClips) {
  const at::Tensor base = samples(Dist::kLaplace, 8 * 9, 21).reshape({1, 8, 3, 3});
  const std::vector<double> factors = {1.0 / 64, 1.0 / 8, 1.0, 16.0};
  std::vector<at::Tensor> rows;
  for (double f : factors) rows.push_back(base * f);
  const at::Tensor weight = at::cat(rows, 0);
  for (RangeMethod m : {RangeMethod::kMinMax, RangeMethod::kPercentile, RangeMethod::kKl, RangeMethod::kMmse}) {
    SCOPED_TRACE(to_string(m));
    const at::Tensor clips = choose_weight_clips(weight, {4, true}, with(m, 90));
    ASSERT_EQ(clips.dim(), 1);
    ASSERT_EQ(clips.numel(), 4);
    EXPECT_EQ(clips.scalar_type(), at::kFloat);
    const double first = clips[0].item<double>() / factors[0];
    EXPECT_NEAR(first, choose_clip(base, {4, true}, with(m, 90)), 1e-6 * first);
    for (size_t o = 1; o < factors.size(); ++o)
      EXPECT_NEAR(clips[static_cast<int64_t>(o)].item<double>() / factors[o], first, 1e-6 * first) << o;
  }
}

TEST(RangeWeights, AllZeroChannelGetsAPositiveClip) {
  at::Tensor weight = samples(Dist::kGaussian, 3 * 10, 23).reshape({3, 10});
  weight[1].zero_();
  for (RangeMethod m : {RangeMethod::kMinMax, RangeMethod::kPercentile, RangeMethod::kKl, RangeMethod::kMmse}) {
    const at::Tensor clips = choose_weight_clips(weight, {8, true}, with(m));
    for (int64_t o = 0; o < 3; ++o) {
      EXPECT_GT(clips[o].item<double>(), 0.0) << to_string(m) << " channel " << o;
      EXPECT_TRUE(std::isfinite(clips[o].item<double>())) << to_string(m);
    }
  }
}

TEST(RangeWeights, UnsignedRangesIgnoreNegativeValues) {
  const at::Tensor g = samples(Dist::kGaussian, 2 * 1000, 29).reshape({2, 1000});
  const at::Tensor weight = at::stack({g[0], -g[1].abs()});  // channel 1 has nothing above 0
  const QuantRange u4{4, false};
  for (RangeMethod m : {RangeMethod::kMinMax, RangeMethod::kPercentile, RangeMethod::kKl, RangeMethod::kMmse}) {
    SCOPED_TRACE(to_string(m));
    const at::Tensor clips = choose_weight_clips(weight, u4, with(m));
    EXPECT_LE(clips[0].item<double>(), g[0].max().item<double>() * (1 + 1e-6));
    EXPECT_GT(clips[1].item<double>(), 0.0);
    EXPECT_LT(clips[1].item<double>(), 1e-6);
  }
  // Only the positive part moves minmax and mmse: clamping negatives to 0 changes nothing.
  for (RangeMethod m : {RangeMethod::kMinMax, RangeMethod::kMmse})
    EXPECT_FLOAT_EQ(choose_weight_clips(weight, u4, with(m))[0].item<float>(),
                    choose_clip(g[0].clamp_min(0), u4, with(m)));
  EXPECT_FLOAT_EQ(choose_weight_clips(weight, u4, with(RangeMethod::kMinMax))[0].item<float>(),
                  g[0].max().item<float>());
}

// A ResNet-56-sized layer: per-channel clips equal one choose_clip per channel.
TEST(RangeWeights, LargeLayerMatchesChannelByChannel) {
  const at::Tensor weight = samples(Dist::kGaussian, 64 * 576, 31).reshape({64, 64, 3, 3}) * 0.1;
  const at::Tensor clips = choose_weight_clips(weight, {4, true}, with(RangeMethod::kMmse));
  for (int64_t o = 0; o < 64; o += 9)
    EXPECT_FLOAT_EQ(clips[o].item<float>(), static_cast<float>(choose_clip(weight[o], {4, true}, with(RangeMethod::kMmse))));
}

TEST(RangeWeights, RefusesBadInput) {
  const RangeOptions mmse = with(RangeMethod::kMmse);
  EXPECT_NE(error_of([&] { choose_weight_clips(at::zeros({0, 3}), {8, true}, mmse); }), "");
  EXPECT_NE(error_of([&] { choose_weight_clips(at::ones({}), {8, true}, mmse); }), "");
  EXPECT_NE(error_of([&] { choose_weight_clips(at::ones({2, 2}, at::kInt), {8, true}, mmse); }), "");
  EXPECT_NE(error_of([&] { choose_weight_clips(at::full({2, 2}, NAN), {8, true}, mmse); }), "");
  EXPECT_NE(error_of([&] { choose_weight_clips(at::ones({2, 2}), {9, true}, mmse); }), "");
  EXPECT_NE(error_of([&] { choose_clip(at::empty({0}), {8, true}, mmse); }).find("empty"), std::string::npos);
  EXPECT_NE(error_of([&] { quantization_mse(at::ones({2}), 0.0, {8, true}); }), "");
  EXPECT_NE(error_of([&] { quantization_mse(at::empty({0}), 1.0, {8, true}); }), "");
}

// The output objective: for H = I it is the weight MSE, so the clips score
// within 1 % of weight mmse's; for a correlated H the chosen clips are within
// 1 % of a dense brute-force scan of d^T H d per channel and beat weight mmse.
TEST(RangeOutputObjective, MatchesBruteForceAndReducesToMmseForIdentity) {
  at::Generator gen = at::detail::createCPUGenerator(21);
  const int64_t out = 6, d = 18;
  const at::Tensor w = at::randn({out, 2, 3, 3}, gen) * at::linspace(0.5, 2.0, out).reshape({out, 1, 1, 1});
  const QuantRange range{3, true};
  const at::Tensor identity = at::eye(d, at::kDouble).unsqueeze(0);
  const at::Tensor by_output = choose_weight_clips_for_output(w, range, identity, true);
  const at::Tensor by_weight = choose_weight_clips(w, range, with(RangeMethod::kMmse));
  EXPECT_LE(output_error(w, by_output, range, identity), 1.01 * output_error(w, by_weight, range, identity));
  // Correlated inputs: x = A z, H = A A^T, two groups of three channels.
  const at::Tensor a = at::randn({2, d, d}, gen, at::kDouble) + 2 * at::eye(d, at::kDouble);
  const at::Tensor h = at::bmm(a, a.transpose(1, 2));
  const at::Tensor chosen = choose_weight_clips_for_output(w, range, h, true);
  for (int64_t o = 0; o < out; ++o) {
    const at::Tensor row = w[o].unsqueeze(0);
    const at::Tensor ho = h[o / 3].unsqueeze(0);
    const double hi = row.abs().max().item<double>();
    double best = kInf;
    for (int i = 1; i <= 20000; ++i)
      best = std::min(best, output_error(row, at::full({1}, hi * i / 20000), range, ho));
    EXPECT_LE(output_error(row, chosen.narrow(0, o, 1), range, ho), 1.01 * best) << "channel " << o;
  }
  EXPECT_LT(output_error(w, chosen, range, h), output_error(w, by_weight, range, h));
  // One clip for the whole tensor.
  const at::Tensor shared = choose_weight_clips_for_output(w, range, h, false);
  EXPECT_TRUE(at::all(shared == shared[0]).item<bool>());
  EXPECT_GE(output_error(w, shared, range, h), output_error(w, chosen, range, h));
  EXPECT_NE(error_of([&] { choose_weight_clips_for_output(w, range, at::eye(5).unsqueeze(0), true); }).find("[G, 18, 18]"),
            std::string::npos);
}

TEST(RangeQuantizationMse, MatchesHandComputedValue) {
  // 2-bit signed, clip 1: levels -1, 0, 1. 0.1 -> 0, -0.26 -> 0, 0.74 -> 1, 2 -> 1 (clamped).
  const at::Tensor x = at::tensor({0.1f, -0.26f, 0.74f, 2.0f});
  const double expected = (0.01 + 0.0676 + 0.0676 + 1.0) / 4;
  EXPECT_NEAR(quantization_mse(x, 1.0, {2, true}), expected, 1e-6);
  // Unsigned 2-bit, clip 3: levels 0..3; -0.26 -> 0, 0.74 -> 1, 2 -> 2.
  EXPECT_NEAR(quantization_mse(x, 3.0, {2, false}), (0.01 + 0.0676 + 0.0676 + 0.0) / 4, 1e-6);
}

// ---- histogram mechanics ------------------------------------------------------------------

TEST(RangeHistogram, LaterWiderBatchesRebinExactlyWhateverTheOrder) {
  const at::Tensor small = (samples(Dist::kUniform, 50000, 41) + 1) / 2;  // [0, 1]
  const at::Tensor large = samples(Dist::kGaussian, 50000, 43) * 3;       // max ~ 13
  Histogram forward, backward;
  forward.add(small);
  forward.add(large);
  backward.add(large);
  backward.add(small);
  const at::Tensor all = at::cat({small, large});
  EXPECT_EQ(forward.count(), 100000);
  EXPECT_EQ(forward.magnitude_counts(true), backward.magnitude_counts(true));
  EXPECT_EQ(forward.magnitude_counts(false), backward.magnitude_counts(false));
  EXPECT_EQ(forward.upper(), backward.upper());
  const double max_abs = all.abs().max().item<double>();
  EXPECT_GT(forward.upper(), max_abs);
  EXPECT_LE(forward.upper(), 2 * max_abs);
  EXPECT_DOUBLE_EQ(forward.clip({8, true}, with(RangeMethod::kMinMax)), max_abs);
  for (double p : {50.0, 90.0, 99.0}) {
    const double exact = choose_clip(all, {8, true}, with(RangeMethod::kPercentile, p));
    EXPECT_NEAR(forward.clip({8, true}, with(RangeMethod::kPercentile, p)), exact, 2 * forward.bin_width()) << p;
  }
}

TEST(RangeHistogram, MergeEqualsOneHistogramOfBothInputs) {
  const at::Tensor a = samples(Dist::kLaplace, 30000, 47) * 0.01;
  const at::Tensor b = samples(Dist::kGaussian, 30000, 53) * 5;
  Histogram ha, hb, both;
  ha.add(a);
  hb.add(b);
  both.add(a);
  both.add(b);
  Histogram merged = hb;  // the wider one first, then the narrower: rebinning the other side
  merged.merge(ha);
  ha.merge(hb);
  for (const Histogram* h : {&merged, &ha}) {
    EXPECT_EQ(h->count(), both.count());
    EXPECT_EQ(h->zero_count(), both.zero_count());
    EXPECT_EQ(h->magnitude_counts(true), both.magnitude_counts(true));
    EXPECT_EQ(h->magnitude_counts(false), both.magnitude_counts(false));
    for (RangeMethod m : {RangeMethod::kMinMax, RangeMethod::kPercentile, RangeMethod::kKl, RangeMethod::kMmse})
      EXPECT_DOUBLE_EQ(h->clip({8, false}, with(m)), both.clip({8, false}, with(m))) << to_string(m);
  }
}

TEST(RangeHistogram, AllZeroInputGivesPositiveClips) {
  Histogram h;
  h.add(at::zeros({100}));
  for (RangeMethod m : {RangeMethod::kMinMax, RangeMethod::kPercentile, RangeMethod::kKl, RangeMethod::kMmse}) {
    EXPECT_GT(h.clip({8, true}, with(m)), 0.0) << to_string(m);
    EXPECT_GT(h.clip({8, false}, with(m)), 0.0) << to_string(m);
  }
  EXPECT_EQ(h.quantization_mse(1.0, {8, true}), 0.0);
}

TEST(RangeHistogram, RefusesBadInput) {
  EXPECT_NE(error_of([] { Histogram h(1000); }), "");  // not a power of two
  EXPECT_NE(error_of([] { Histogram h(128); }), "");
  Histogram h;
  EXPECT_NE(error_of([&] { h.clip({8, true}, RangeOptions{}); }), "");  // nothing added
  EXPECT_NE(error_of([&] { h.add(at::empty({0})); }), "");
  EXPECT_NE(error_of([&] { h.add(at::tensor({1.0f, INFINITY})); }), "");
  EXPECT_NE(error_of([&] { h.add(at::tensor({NAN})); }), "");
  EXPECT_EQ(h.count(), 0);  // a refused batch leaves no trace
  Histogram other(4096);
  EXPECT_NE(error_of([&] { h.merge(other); }), "");
}

// ---- power-of-two scales ------------------------------------------------------

// scale = clip / qmax is exactly 2^k.
bool power_of_two_scale(double clip, QuantRange range) {
  int exponent = 0;
  return std::frexp(clip / static_cast<double>(range.qmax()), &exponent) == 0.5;
}

RangeOptions pow2(RangeMethod method, double percentile = 99.99) { return RangeOptions{method, percentile, true}; }

// mmse over powers of two: the chosen clip is a power-of-two scale and no
// other power of two (from 2^-30 to 2^10 scales) has a lower exact MSE, on
// exact values, on a histogram, and per channel of a weight.
TEST(RangePowerOfTwo, MmseIsTheBestPowerOfTwoOnValuesHistogramsAndChannels) {
  for (Dist d : {Dist::kUniform, Dist::kGaussian, Dist::kLaplace})
    for (QuantRange range : {QuantRange{4, true}, QuantRange{8, true}, QuantRange{3, false}}) {
      SCOPED_TRACE(std::string(name(d)) + " " + range.describe());
      const at::Tensor x = samples(d, 20000, 31) * 0.37;
      std::vector<double> candidates;
      for (int k = -30; k <= 10; ++k) candidates.push_back(std::ldexp(static_cast<double>(range.qmax()), k));
      const std::vector<double> mse = brute_mse(x, candidates, range);
      const double best = *std::min_element(mse.begin(), mse.end());
      const double exact = choose_clip(x, range, pow2(RangeMethod::kMmse));
      EXPECT_TRUE(power_of_two_scale(exact, range)) << exact;
      EXPECT_LE(quantization_mse(x, exact, range), best * (1 + 1e-9));
      Histogram h;
      h.add(x);
      const double binned = h.clip(range, pow2(RangeMethod::kMmse));
      EXPECT_TRUE(power_of_two_scale(binned, range)) << binned;
      EXPECT_LE(quantization_mse(x, binned, range), best * 1.01);  // the histogram estimates the MSE
      // Never better than the unconstrained search (which is within 1 % of the optimum).
      EXPECT_GE(quantization_mse(x, exact, range), 0.99 * quantization_mse(x, choose_clip(x, range, with(RangeMethod::kMmse)), range));
    }
  // Per channel, channels of very different magnitudes.
  at::Generator gen = at::detail::createCPUGenerator(32);
  const at::Tensor w = at::randn({5, 40}, gen) * at::tensor({1e-3, 0.02, 0.5, 3.0, 70.0}).unsqueeze(1);
  const QuantRange range{4, true};
  const at::Tensor clips = choose_weight_clips(w, range, pow2(RangeMethod::kMmse));
  for (int64_t o = 0; o < 5; ++o) {
    const double c = clips[o].item<double>();
    EXPECT_TRUE(power_of_two_scale(c, range)) << "channel " << o << ": " << c;
    for (double other : {c / 4, c / 2, c * 2, c * 4})
      EXPECT_LE(quantization_mse(w[o], c, range), quantization_mse(w[o], other, range)) << "channel " << o;
  }
}

// minmax: the smallest power of two that clips nothing; percentile and kl: their
// clip rounded on a log scale; all-zero data: a power of two too.
TEST(RangePowerOfTwo, OtherMethodsRoundToAPowerOfTwo) {
  const QuantRange range{8, true};
  const at::Tensor x = samples(Dist::kGaussian, 20000, 33);
  const double hi = x.abs().max().item<double>();
  const double minmax = choose_clip(x, range, pow2(RangeMethod::kMinMax));
  EXPECT_TRUE(power_of_two_scale(minmax, range));
  EXPECT_GE(minmax, hi);
  EXPECT_LT(minmax / 2, hi);
  for (RangeMethod m : {RangeMethod::kPercentile, RangeMethod::kKl}) {
    SCOPED_TRACE(to_string(m));
    const double free = choose_clip(x, range, with(m, 99.9)), rounded = choose_clip(x, range, pow2(m, 99.9));
    EXPECT_TRUE(power_of_two_scale(rounded, range)) << rounded;
    EXPECT_LE(std::fabs(std::log2(rounded / free)), 0.5 + 1e-12);
    EXPECT_EQ(rounded, nearest_power_of_two_clip(free, range));
  }
  Histogram zeros;
  zeros.add(at::zeros({100}));
  EXPECT_TRUE(power_of_two_scale(zeros.clip(range, pow2(RangeMethod::kMmse)), range));
  EXPECT_TRUE(power_of_two_scale(choose_weight_clips(at::zeros({2, 3}), range, pow2(RangeMethod::kMmse))[0].item<double>(), range));
  EXPECT_EQ(nearest_power_of_two_clip(127 * 0.7, range), 127 * 0.5);  // log2(0.7) = -0.51
  EXPECT_EQ(nearest_power_of_two_clip(127 * 0.75, range), 127 * 1.0);  // log2(0.75) = -0.42
}

// The output objective over powers of two: per channel, halving or doubling any
// one channel's clip never lowers the objective; per tensor likewise.
TEST(RangePowerOfTwo, OutputObjectiveChoosesTheBestPowerOfTwoPerChannel) {
  at::Generator gen = at::detail::createCPUGenerator(34);
  const int64_t out = 6, d = 18;
  const at::Tensor w = at::randn({out, 2, 3, 3}, gen) * at::linspace(0.01, 5.0, out).reshape({out, 1, 1, 1});
  const QuantRange range{4, true};
  const at::Tensor a = at::randn({2, d, d}, gen, at::kDouble) + 2 * at::eye(d, at::kDouble);
  const at::Tensor h = at::bmm(a, a.transpose(1, 2));
  for (bool per_channel : {true, false}) {
    SCOPED_TRACE(per_channel ? "per channel" : "per tensor");
    const at::Tensor clips = choose_weight_clips_for_output(w, range, h, per_channel, true);
    const double chosen = output_error(w, clips, range, h);
    for (int64_t o = 0; o < out; ++o) EXPECT_TRUE(power_of_two_scale(clips[o].item<double>(), range)) << o;
    for (double factor : {0.25, 0.5, 2.0, 4.0}) {
      if (per_channel) {
        for (int64_t o = 0; o < out; ++o) {
          at::Tensor other = clips.clone();
          other[o] = other[o] * factor;
          EXPECT_LE(chosen, output_error(w, other, range, h) * (1 + 1e-9)) << "channel " << o << " x" << factor;
        }
      } else {
        EXPECT_LE(chosen, output_error(w, clips * factor, range, h) * (1 + 1e-9)) << "x" << factor;
      }
    }
    // A power of two costs something over free scales, but not much.
    const double free = output_error(w, choose_weight_clips_for_output(w, range, h, per_channel), range, h);
    EXPECT_GE(chosen, 0.99 * free);
  }
}

}  // namespace
}  // namespace dfq
