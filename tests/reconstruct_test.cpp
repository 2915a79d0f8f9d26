// Layer reconstruction (reconstruct.h): the patch covariances against a
// direct computation, AdaRound/AdaQuant against an exhaustive search over the
// up/down roundings of small layers, and the pipeline step on the embedded model.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/execute.h"
#include "core/import_torchscript.h"
#include "quant/integer_engine.h"
#include "quant/quantize.h"
#include "quant/reconstruct.h"
#include "quant/simulate.h"
#include "test_util.h"

using namespace dfq;
using dfq::testing::error_of;

namespace {

at::Generator generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// Covariances of paired samples x_q, x_f [P, D] (one group).
InputCovariances covariances(const at::Tensor& xq, const at::Tensor& xf) {
  CovarianceAccumulator acc;
  acc.add(xq.unsqueeze(0), xf.unsqueeze(0));
  return acc.result();
}

// E|W_s x_q - W x_f|^2 (centered) / E|W x_f|^2 straight from the samples.
double sample_error(const at::Tensor& w, const at::Tensor& ws, const at::Tensor& xq, const at::Tensor& xf) {
  const at::Tensor yq = xq.to(at::kDouble).matmul(ws.to(at::kDouble).t()), yf = xf.to(at::kDouble).matmul(w.to(at::kDouble).t());
  const at::Tensor e = (yq - yq.mean(0)) - (yf - yf.mean(0));
  return e.pow(2).sum().item<double>() / (yf - yf.mean(0)).pow(2).sum().item<double>();
}

}  // namespace

TEST(Reconstruct, CovariancesMatchADirectComputation) {
  auto gen = generator(1);
  const at::Tensor xq = at::randn({500, 5}, gen) + 2.0, xf = xq * 0.5 + at::randn({500, 5}, gen);
  CovarianceAccumulator acc;  // two chunks
  acc.add(xq.narrow(0, 0, 200).unsqueeze(0), xf.narrow(0, 0, 200).unsqueeze(0));
  acc.add(xq.narrow(0, 200, 300).unsqueeze(0), xf.narrow(0, 200, 300).unsqueeze(0));
  const InputCovariances c = acc.result();
  const at::Tensor q = xq.to(at::kDouble) - xq.to(at::kDouble).mean(0), f = xf.to(at::kDouble) - xf.to(at::kDouble).mean(0);
  EXPECT_TRUE(at::allclose(c.qq[0], q.t().matmul(q) / 500.0, 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(c.qf[0], q.t().matmul(f) / 500.0, 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(c.ff[0], f.t().matmul(f) / 500.0, 1e-4, 1e-4));
  EXPECT_NE(error_of([] { CovarianceAccumulator().result(); }).find("at least one patch"), std::string::npos);
}

// Two output channels of 8 strongly correlated inputs at 3 bits: every one of
// the 2^8 up/down choices per channel is tried; the channels are independent.
TEST(Reconstruct, AdaRoundNearTheExhaustiveOptimumAndBetterThanNearest) {
  const QuantRange range{3, true};
  for (uint64_t seed : {2, 3, 4}) {
    SCOPED_TRACE(seed);
    auto gen = generator(seed);
    const int64_t d = 8;
    const at::Tensor mix = at::randn({d, d}, gen);
    const at::Tensor xf = at::randn({4000, d}, gen).matmul(mix);
    const at::Tensor xq = xf + 0.2 * at::randn({4000, d}, gen);  // the quantized model's input: noisier
    const at::Tensor w = at::randn({2, d}, gen);
    const at::Tensor scale = w.abs().amax(1) / range.qmax();
    const at::Tensor nearest = round_half_away(w / scale.unsqueeze(1)).clamp(range.qmin(), range.qmax());
    const InputCovariances cov = covariances(xq, xf);
    ReconstructOptions o;
    o.method = Reconstruction::kAdaRound;
    const RoundingResult r = reconstruct_rounding(w, at::Tensor(), scale, range, nearest.to(at::kChar), cov, o);
    // Exhaustive: per channel, floor + bits of the mask.
    const at::Tensor floor = (w / scale.unsqueeze(1)).floor();
    at::Tensor best = nearest.clone();
    for (int64_t c = 0; c < 2; ++c) {
      double best_error = INFINITY;
      for (int64_t mask = 0; mask < (1 << d); ++mask) {
        at::Tensor q = floor[c].clone();
        for (int64_t i = 0; i < d; ++i) q[i] += (mask >> i) & 1;
        q = q.clamp(range.qmin(), range.qmax());
        const double e = sample_error(w[c].unsqueeze(0), (q * scale[c]).unsqueeze(0), xq, xf);
        if (e < best_error) best_error = e, best[c] = q;
      }
    }
    const at::Tensor ws = r.q.to(at::kFloat) * scale.unsqueeze(1);
    const double got = sample_error(w, ws, xq, xf);
    const double optimum = sample_error(w, best * scale.unsqueeze(1), xq, xf);
    const double nearest_error = sample_error(w, nearest * scale.unsqueeze(1), xq, xf);
    EXPECT_NEAR(r.error_after, got, 1e-3 * got + 1e-6);  // the reported error is the real one
    EXPECT_NEAR(r.error_before, nearest_error, 1e-3 * nearest_error + 1e-6);
    EXPECT_LE(got, nearest_error + 1e-9);
    // A heuristic on an NP-hard problem: at least half of the way from nearest
    // rounding to the exhaustive optimum (measured: 70 % to 100 % here).
    EXPECT_LE(got - optimum, 0.5 * (nearest_error - optimum) + 1e-9) << "optimum " << optimum << ", nearest " << nearest_error;
    // AdaQuant: never worse than nearest either.
    o.method = Reconstruction::kAdaQuant;
    const RoundingResult aq = reconstruct_rounding(w, at::Tensor(), scale, range, nearest.to(at::kChar), cov, o);
    EXPECT_LE(aq.error_after, r.error_before + 1e-12);
  }
}

// With x_q = x_f white, the output error is the weight error: nearest rounding
// is optimal and stays. With x_q = 0.8 x_f the float target needs larger
// integers: the reconstruction finds them.
TEST(Reconstruct, KeepsNearestWhenOptimalAndCompensatesAShrunkInput) {
  auto gen = generator(5);
  const QuantRange range{4, true};
  const at::Tensor w = at::randn({4, 16}, gen) * 0.3;
  const at::Tensor scale = w.abs().amax(1) / range.qmax() * 1.3;  // headroom to grow
  const at::Tensor nearest = round_half_away(w / scale.unsqueeze(1)).clamp(range.qmin(), range.qmax()).to(at::kChar);
  const at::Tensor x = at::randn({20000, 16}, gen);
  ReconstructOptions o;
  o.method = Reconstruction::kAdaRound;
  const RoundingResult same = reconstruct_rounding(w, at::Tensor(), scale, range, nearest, covariances(x, x), o);
  EXPECT_LE(same.changed, 0.02);
  const RoundingResult shrunk = reconstruct_rounding(w, at::Tensor(), scale, range, nearest, covariances(0.8 * x, x), o);
  EXPECT_LT(shrunk.error_after, 0.6 * shrunk.error_before);
  EXPECT_GT(shrunk.q.to(at::kFloat).abs().sum().item<double>(), nearest.to(at::kFloat).abs().sum().item<double>());
}

// AdaRound on a lookup table's levels (weight_lut.h): with the integers of the
// range as levels it is the uniform AdaRound bit for bit; on a non-uniform
// table every result is one of the two levels around w / s (or the end level
// beyond them), and the output error drops below nearest-level rounding's.
TEST(Reconstruct, AdaRoundOnTableLevelsChoosesBetweenNeighbours) {
  auto gen = generator(8);
  const QuantRange range{4, true};
  const int64_t d = 12;
  const at::Tensor mix = at::randn({d, d}, gen);
  const at::Tensor xf = at::randn({4000, d}, gen).matmul(mix);
  const at::Tensor xq = 0.9 * xf + 0.2 * at::randn({4000, d}, gen);
  const InputCovariances cov = covariances(xq, xf);
  ReconstructOptions o;
  o.method = Reconstruction::kAdaRound;
  o.iterations = 300;
  const at::Tensor w = at::randn({4, d}, gen);
  const at::Tensor scale = w.abs().amax(1) / 6.9;  // |w / s| < 7: inside the grid
  const at::Tensor nearest = round_half_away(w / scale.unsqueeze(1)).clamp(range.qmin(), range.qmax()).to(at::kChar);
  const RoundingResult uniform = reconstruct_rounding(w, at::Tensor(), scale, range, nearest, cov, o);
  const RoundingResult as_levels =
      reconstruct_rounding(w, at::Tensor(), scale, range, nearest, cov, o, at::arange(-7, 8).to(at::kFloat));
  EXPECT_TRUE(at::equal(uniform.q, as_levels.q));
  EXPECT_EQ(uniform.error_after, as_levels.error_after);
  // A non-uniform table (dense near zero) on a scale with headroom past its ends.
  const at::Tensor levels = at::tensor({-127.f, -80.f, -45.f, -22.f, -9.f, -3.f, 0.f, 2.f, 6.f, 14.f, 30.f, 60.f, 100.f, 120.f});
  const at::Tensor s = w.abs().amax(1) / 110.0;
  const at::Tensor x = w / s.unsqueeze(1);
  const at::Tensor distance = (x.unsqueeze(2) - levels.reshape({1, 1, -1})).abs();
  const at::Tensor start = levels.index_select(0, distance.argmin(2).reshape({-1})).reshape(w.sizes()).to(at::kChar);
  const RoundingResult r = reconstruct_rounding(w, at::Tensor(), s, range, start, cov, o, levels);
  EXPECT_LT(r.error_after, r.error_before);
  EXPECT_GT(r.changed, 0.0);
  const at::Tensor q = r.q.to(at::kFloat);
  for (int64_t i = 0; i < w.size(0); ++i)
    for (int64_t j = 0; j < d; ++j) {
      const double v = x[i][j].item<double>(), chosen = q[i][j].item<double>();
      const at::Tensor below = levels.le(v), above = levels.ge(v);
      const double lower = below.any().item<bool>() ? levels.masked_select(below).max().item<double>() : levels[0].item<double>();
      const double upper = above.any().item<bool>() ? levels.masked_select(above).min().item<double>() : levels[-1].item<double>();
      // Beyond the table's ends the pair is its outermost two levels.
      const double lo = v < levels[1].item<double>() ? levels[0].item<double>() : v >= levels[-2].item<double>() ? levels[-2].item<double>() : lower;
      const double hi = v < levels[1].item<double>() ? levels[1].item<double>() : v >= levels[-2].item<double>() ? levels[-1].item<double>() : upper;
      EXPECT_TRUE(chosen == lo || chosen == hi) << "x = " << v << " chose " << chosen << ", levels " << lo << " and " << hi;
    }
  o.method = Reconstruction::kAdaQuant;
  EXPECT_NE(error_of([&] { reconstruct_rounding(w, at::Tensor(), s, range, start, cov, o, levels); }).find("adaround"),
            std::string::npos);
}

TEST(Reconstruct, RefusesMismatchedShapesAndNone) {
  const at::Tensor w = at::ones({4, 6});
  const InputCovariances cov{at::eye(5, at::kDouble).unsqueeze(0), at::eye(5, at::kDouble).unsqueeze(0),
                             at::eye(5, at::kDouble).unsqueeze(0)};
  ReconstructOptions o;
  o.method = Reconstruction::kAdaRound;
  EXPECT_NE(error_of([&] { reconstruct_rounding(w, {}, at::ones({4}), QuantRange{4, true}, w.to(at::kChar), cov, o); })
                .find("covariances"),
            std::string::npos);
  o.method = Reconstruction::kNone;
  EXPECT_NE(error_of([&] { reconstruct_rounding(w, {}, at::ones({4}), QuantRange{4, true}, w.to(at::kChar), cov, o); })
                .find("adaround or adaquant"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_reconstruction("adaround2", "--reconstruct"); }).find("none, adaround, adaquant"),
            std::string::npos);
}

// The pipeline step on the embedded model (plain and with residual tensors):
// no layer's output error grows, the logits move closer to the float model's
// than with nearest rounding, and the integer engine stays bit-exact.
TEST(Reconstruct, PipelineLowersTheOutputErrorOfTheEmbeddedModel) {
  const Graph g = import_torchscript(dfq::testing::kModel);
  auto gen = generator(6);
  const at::Tensor calib = at::randn({64, 1, 28, 28}, gen);
  const at::Tensor reference = forward(g, calib);
  for (int residual : {0, 2}) {
    SCOPED_TRACE("residual layers " + std::to_string(residual));
    QuantizeOptions o;
    o.weight_bits = 3, o.activation_bits = 8, o.residual_layers = residual;
    QuantizeReport plain_report, report;
    const QuantizedModel plain = quantize_model(g, calib, o, plain_report);
    o.reconstruct.method = Reconstruction::kAdaRound;
    o.reconstruct.iterations = 300;
    const QuantizedModel rebuilt = quantize_model(g, calib, o, report);
    EXPECT_EQ(rebuilt.config.reconstruction, "adaround");
    EXPECT_EQ(report.weight_bits_total, plain_report.weight_bits_total);  // same integers' count and widths
    double changed = 0;
    for (const LayerReport& l : report.layers) {
      EXPECT_LE(l.reconstruction_error_after, l.reconstruction_error_before + 1e-9) << l.name;
      changed += l.rounding_changed;
    }
    EXPECT_GT(changed, 0.0);
    const double before = (SimulatedModel(plain).forward(calib) - reference).pow(2).mean().item<double>();
    const double after = (SimulatedModel(rebuilt).forward(calib) - reference).pow(2).mean().item<double>();
    EXPECT_LT(after, before);
    const IntegerEngine reference_engine(rebuilt, IntKernel::kReference), fast(rebuilt, IntKernel::kFast);
    EXPECT_TRUE(at::equal(reference_engine.forward(calib.narrow(0, 0, 4)), fast.forward(calib.narrow(0, 0, 4))));
  }
}
