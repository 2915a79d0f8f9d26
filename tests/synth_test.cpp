// BN-statistics loss, direct synthesis, synthetic-set files and PNG dumps.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "test_util.h"
#include "core/execute.h"
#include "core/import_torchscript.h"
#include "eval/batch_loader.h"
#include "eval/image_folder.h"
#include "synth/bn_loss.h"
#include "synth/bn_with_stats.h"
#include "core/runtime.h"
#include "synth/direct.h"
#include "synth/metrics.h"
#include "synth/synth_set.h"

namespace fs = std::filesystem;
using namespace dfq;
using namespace dfq::testing;

namespace {



// input -> bn: one BN layer on the raw input, so the loss has a closed form.
Graph single_bn_graph(const at::Tensor& mean, const at::Tensor& var, double eps) {
  Graph g;
  g.source = "single_bn";
  g.input_channels = mean.size(0);
  Node input{0, "input", Op::Input, {}, {}, {}};
  Node bn{1, "bn", Op::BatchNorm, {0}, {}, {}};
  bn.attrs.reals["eps"] = eps;
  bn.params = {{"weight", at::ones_like(mean)}, {"bias", at::zeros_like(mean)}, {"running_mean", mean},
               {"running_var", var}};
  g.nodes = {input, bn};
  g.output = 1;
  return g;
}

// d = sum_c (mu_c - m_c)^2 + (sigma_c - s_c)^2 in double, from the definition.
double reference_l2(const at::Tensor& x, const at::Tensor& m, const at::Tensor& v, double eps, bool relative) {
  const at::Tensor xd = x.to(at::kDouble);
  double total = 0;
  const int64_t channels = x.size(1);
  for (int64_t c = 0; c < channels; ++c) {
    const at::Tensor xc = xd.select(1, c);
    const double mu = xc.mean().item<double>();
    const double sigma = std::sqrt((xc - mu).pow(2).mean().item<double>() + eps);
    const double s = std::sqrt(v[c].item<double>() + eps);
    double term = std::pow(mu - m[c].item<double>(), 2) + std::pow(sigma - s, 2);
    total += relative ? term / (s * s) / static_cast<double>(channels) : term;
  }
  return total;
}

}  // namespace

TEST(BnLoss, MatchesTheDefinitionForBatchAndPerImageStatistics) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const at::Tensor mean = at::randn({3}, gen), var = at::rand({3}, gen) + 0.5;
  Graph g = single_bn_graph(mean, var, 1e-5);
  const at::Tensor x = at::randn({4, 3, 5, 6}, gen) * 2 + 1;
  for (bool relative : {false, true}) {
    BnLossOptions options{BnStatistics::kBatch, relative ? BnDistance::kRelative : BnDistance::kL2};
    BnStatsLoss loss(g, options);
    forward(g, x, &loss);
    EXPECT_NEAR(loss.total().item<double>(), reference_l2(x, mean, var, 1e-5, relative), 1e-4);
    options.statistics = BnStatistics::kPerImage;
    BnStatsLoss per_image(g, options);
    forward(g, x, &per_image);
    double expected = 0;
    for (int64_t i = 0; i < 4; ++i) expected += reference_l2(x.narrow(0, i, 1), mean, var, 1e-5, relative) / 4;
    EXPECT_NEAR(per_image.total().item<double>(), expected, 1e-4);
  }
}

TEST(BnLoss, IsZeroForDataWithTheStoredStatisticsAndDifferentiable) {
  const at::Tensor mean = at::tensor({0.5f, -1.0f}), var = at::tensor({4.0f, 0.25f});
  Graph g = single_bn_graph(mean, var, 0.0);
  // Exactly mean +- sqrt(var) in equal numbers: batch mean and biased std match.
  at::Tensor x = at::empty({2, 2, 1, 2});
  for (int64_t c = 0; c < 2; ++c) {
    const float m = mean[c].item<float>(), s = std::sqrt(var[c].item<float>());
    x.select(1, c).copy_(at::tensor({m - s, m + s, m + s, m - s}).reshape({2, 1, 2}));
  }
  BnStatsLoss loss(g, {});
  forward(g, x, &loss);
  EXPECT_NEAR(loss.total().item<double>(), 0.0, 1e-10);
  at::Tensor y = (x * 1.5).requires_grad_(true);
  loss.reset();
  forward(g, y, &loss);
  loss.total().backward();
  EXPECT_GT(y.grad().abs().sum().item<double>(), 0.0);
  EXPECT_EQ(loss.layer_names(), std::vector<std::string>{"bn"});
}

// The fused kernel against the same computation from separate ATen ops in
// double: values and the gradients of a random linear functional of all three
// outputs, for both memory layouts, batch and per-image statistics, with and
// without a residual add and a clamp.
TEST(BnWithStats, MatchesSeparateOpsForwardAndBackward) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const int64_t C = 5;
  const at::Tensor k = at::randn({C}, gen), t = at::randn({C}, gen);
  for (bool channels_last : {false, true})
    for (bool per_image : {false, true})
      for (bool residual : {false, true})
        for (int clamp = 0; clamp < 3; ++clamp) {
          SCOPED_TRACE(::testing::Message() << "channels_last " << channels_last << " per_image " << per_image
                                          << " residual " << residual << " clamp " << clamp);
          const double lo = clamp == 0 ? -INFINITY : 0.0, hi = clamp == 2 ? 1.0 : INFINITY;
          at::Tensor x = at::randn({3, C, 7, 9}, gen) * 2 + 0.5;
          at::Tensor r = at::randn({3, C, 7, 9}, gen);
          if (channels_last) {
            x = x.contiguous(at::MemoryFormat::ChannelsLast);
            r = r.contiguous(at::MemoryFormat::ChannelsLast);
          }
          x.requires_grad_(true);
          r.requires_grad_(true);
          const BnWithStats fused = batch_norm_with_stats(x, k, t, per_image, lo, hi, residual ? r : at::Tensor());
          EXPECT_EQ(fused.output.is_contiguous(at::MemoryFormat::ChannelsLast), channels_last);

          const at::Tensor xd = x.detach().to(at::kDouble).requires_grad_(true);
          const at::Tensor rd = r.detach().to(at::kDouble).requires_grad_(true);
          at::Tensor z = xd * k.to(at::kDouble).reshape({1, C, 1, 1}) + t.to(at::kDouble).reshape({1, C, 1, 1});
          if (residual) z = z + rd;
          const at::Tensor out = clamp == 0 ? z : at::clamp(z, lo, hi == INFINITY ? c10::optional<at::Scalar>() : hi);
          const std::vector<int64_t> dims = per_image ? std::vector<int64_t>{2, 3} : std::vector<int64_t>{0, 2, 3};
          const at::Tensor mean = xd.mean(dims), var = (xd - xd.mean(dims, true)).pow(2).mean(dims);
          EXPECT_LT((fused.output.to(at::kDouble) - out).abs().max().item<double>(), 1e-5);
          EXPECT_LT((fused.mean.to(at::kDouble) - mean).abs().max().item<double>(), 1e-5);
          EXPECT_LT((fused.var.to(at::kDouble) - var).abs().max().item<double>(), 1e-4);

          const at::Tensor w_out = at::randn(out.sizes(), gen), w_mean = at::randn(mean.sizes(), gen),
                           w_var = at::randn(var.sizes(), gen);
          ((fused.output * w_out).sum() + (fused.mean * w_mean).sum() + (fused.var * w_var).sum()).backward();
          ((out * w_out.to(at::kDouble)).sum() + (mean * w_mean.to(at::kDouble)).sum() +
           (var * w_var.to(at::kDouble)).sum())
              .backward();
          EXPECT_LT((x.grad().to(at::kDouble) - xd.grad()).abs().max().item<double>(), 1e-4);
          if (residual) EXPECT_LT((r.grad().to(at::kDouble) - rd.grad()).abs().max().item<double>(), 1e-5);
          else EXPECT_FALSE(r.grad().defined());
        }
}

TEST(BnWithStats, SameBitsOnOneAndTwoThreads) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const at::Tensor x = at::randn({8, 16, 12, 12}, gen), k = at::randn({16}, gen), t = at::randn({16}, gen);
  std::vector<at::Tensor> results;
  for (int threads : {1, 2}) {
    set_threads(threads);
    const at::Tensor xi = x.clone().requires_grad_(true);
    const BnWithStats r = batch_norm_with_stats(xi, k, t, false, 0.0);
    (r.output.sum() + r.var.sum() + r.mean.sum()).backward();
    results.push_back(at::cat({r.output.detach().flatten(), r.mean.detach(), r.var.detach(), xi.grad().flatten()}));
  }
  set_threads(0);
  EXPECT_TRUE(at::equal(results[0], results[1]));
}

// The unfused definition: var_mean of every BN input, as an after_node observer.
class ReferenceBnLoss : public Observer {
 public:
  void after_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor&) override {
    if (node.op != Op::BatchNorm) return;
    const double eps = node.attrs.f("eps");
    auto [var, mean] = at::var_mean(inputs[0], {0, 2, 3}, /*unbiased=*/false);
    const at::Tensor term = (mean - node.param("running_mean")).pow(2).sum() +
                            (at::sqrt(var + eps) - at::sqrt(node.param("running_var") + eps)).pow(2).sum();
    total = total.defined() ? total + term : term;
  }
  at::Tensor total;
};

// On a real model with residual adds, ReLU and ReLU6 (so every fusion path
// runs), the fused loss gives the model's own logits, the definition's loss and
// the definition's input gradient.
TEST(BnLoss, FusedPathMatchesTheUnfusedDefinitionOnAResidualModel) {
  const Graph graph = import_torchscript(kModel);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor x = at::randn({6, 1, 28, 28}, gen);
  at::Tensor plain_logits;
  {
    at::NoGradGuard no_grad;
    plain_logits = forward(graph, x);
  }
  const at::Tensor x1 = x.clone().requires_grad_(true), x2 = x.clone().requires_grad_(true);
  BnStatsLoss fused(graph, {});
  const at::Tensor logits = forward(graph, x1, &fused);
  EXPECT_LT((logits - plain_logits).abs().max().item<double>(), 1e-4);
  ReferenceBnLoss reference;
  forward(graph, x2, &reference);
  const double expected = reference.total.item<double>();
  EXPECT_NEAR(fused.total().item<double>(), expected, 1e-4 * expected);
  (fused.total() + logits.sum()).backward();
  (reference.total + forward(graph, x2).sum()).backward();
  const double scale = x2.grad().abs().max().item<double>();
  EXPECT_LT((x1.grad() - x2.grad()).abs().max().item<double>(), 1e-4 * scale);
}

TEST(BnLoss, RefusesModelsWithoutBatchNormAndBadOptionNames) {
  Graph g;
  g.source = "no_bn";
  g.nodes = {Node{0, "input", Op::Input, {}, {}, {}}, Node{1, "relu", Op::ReLU, {0}, {}, {}}};
  g.output = 1;
  EXPECT_NE(error_of([&] { BnStatsLoss loss(g, {}); }).find("batch-norm"), std::string::npos);
  EXPECT_NE(error_of([] { parse_bn_statistics("global"); }).find("--bn-stats"), std::string::npos);
  EXPECT_NE(error_of([] { parse_bn_distance("kl"); }).find("--bn-distance"), std::string::npos);
  EXPECT_NE(error_of([] { parse_label_mode("random"); }).find("--labels"), std::string::npos);
}

namespace {

DirectOptions small_direct(uint64_t seed) {
  DirectOptions o;
  o.count = 20;
  o.batch = 20;
  o.iterations = 100;
  o.lr = 0.5;
  o.seed = seed;
  o.quiet = true;
  return o;
}

}  // namespace

TEST(DirectSynth, LowersBnLossAndHitsTheTargetLabels) {
  Graph graph = import_torchscript(kModel);
  const Preprocess pre = preset("fashion-mnist");
  SynthReport report;
  const SynthSet set = synthesize_direct(graph, pre, 28, 28, small_direct(0), report);
  ASSERT_EQ(set.images.sizes(), (std::vector<int64_t>{20, 1, 28, 28}));
  EXPECT_EQ(report.loss_curve.size(), 100u);
  EXPECT_EQ(report.bn_layers.size(), 8u);
  EXPECT_GT(report.initial_bn_loss, 10.0 * report.final_bn_loss);
  const SynthQuality q = measure_quality(graph, set, 8);
  EXPECT_GE(q.label_agreement, 90.0);
  int64_t total = 0;
  for (int64_t c : q.class_histogram) total += c;
  EXPECT_EQ(total, 20);
  EXPECT_GT(q.diversity, 0.1);
  EXPECT_GT(q.diversity_within_class, 0.1);
  // Balanced labels: image i targets class i mod 10.
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(set.labels[i].item<int64_t>(), i % 10);
  // Every pixel stays inside the valid [0, 1] range of the preset.
  const double lo = (0.0 - pre.mean[0]) / pre.std[0], hi = (1.0 - pre.mean[0]) / pre.std[0];
  EXPECT_GE(set.images.min().item<double>(), lo - 1e-6);
  EXPECT_LE(set.images.max().item<double>(), hi + 1e-6);
}

TEST(DirectSynth, SameSeedSameImagesBitForBit) {
  Graph graph = import_torchscript(kModel);
  const Preprocess pre = preset("fashion-mnist");
  DirectOptions o = small_direct(5);
  o.iterations = 10;
  o.count = 12;
  o.batch = 5;  // several batches, the last one short
  SynthReport r1, r2, r3;
  const SynthSet a = synthesize_direct(graph, pre, 28, 28, o, r1);
  const SynthSet b = synthesize_direct(graph, pre, 28, 28, o, r2);
  EXPECT_TRUE(at::equal(a.images, b.images));
  o.seed = 6;
  const SynthSet c = synthesize_direct(graph, pre, 28, 28, o, r3);
  EXPECT_FALSE(at::equal(a.images, c.images));
}

// dfq synth --shard: batch k depends only on (options, k), so shards computed
// separately are slices of the whole set, bit for bit, with the same BN losses.
TEST(DirectSynth, ShardsAreSlicesOfTheWholeSetBitForBit) {
  Graph graph = import_torchscript(kModel);
  const Preprocess pre = preset("fashion-mnist");
  DirectOptions o = small_direct(7);
  o.iterations = 4;
  o.count = 12;
  o.batch = 5;  // batches 0..4, 5..9, 10..11 (short)
  SynthReport whole_report;
  const SynthSet whole = synthesize_direct(graph, pre, 28, 28, o, whole_report);
  ASSERT_EQ(whole_report.batch_losses.size(), 3u);
  o.shard = Shard{1, 2};  // batch 1 only
  SynthReport r1;
  const SynthSet one = synthesize_direct(graph, pre, 28, 28, o, r1);
  ASSERT_EQ(one.images.size(0), 5);
  EXPECT_TRUE(at::equal(one.images, whole.images.narrow(0, 5, 5)));
  EXPECT_TRUE(at::equal(one.labels, whole.labels.narrow(0, 5, 5)));
  ASSERT_EQ(r1.batch_losses.size(), 1u);
  EXPECT_EQ(r1.batch_losses[0].batch, 1);
  EXPECT_EQ(r1.batch_losses[0].final_bn_loss, whole_report.batch_losses[1].final_bn_loss);
  o.shard = Shard{0, 2};  // batches 0 and 2, the short one
  SynthReport r0;
  const SynthSet zero = synthesize_direct(graph, pre, 28, 28, o, r0);
  ASSERT_EQ(zero.images.size(0), 7);
  EXPECT_TRUE(at::equal(zero.images.narrow(0, 0, 5), whole.images.narrow(0, 0, 5)));
  EXPECT_TRUE(at::equal(zero.images.narrow(0, 5, 2), whole.images.narrow(0, 10, 2)));
  EXPECT_EQ(r0.loss_curve, whole_report.loss_curve);  // shard 0 holds batch 0
  // Every batch has its own generator: no two batches start from the same noise.
  EXPECT_NE(direct_batch_seed(7, 0), direct_batch_seed(7, 1));
  EXPECT_NE(direct_batch_seed(7, 0), direct_batch_seed(8, 0));
  o.shard = Shard{0, 4};  // more shards than batches
  EXPECT_NE(error_of([&] { synthesize_direct(graph, pre, 28, 28, o, r0); }).find("--shard 0/4"), std::string::npos);
}

TEST(DirectSynth, RefusesBadOptions) {
  Graph graph = import_torchscript(kModel);
  const Preprocess pre = preset("fashion-mnist");
  SynthReport r;
  auto with = [&](auto change) {
    DirectOptions o = small_direct(0);
    change(o);
    return error_of([&] { synthesize_direct(graph, pre, 28, 28, o, r); });
  };
  EXPECT_NE(with([](DirectOptions& o) { o.count = 0; }).find("--count"), std::string::npos);
  EXPECT_NE(with([](DirectOptions& o) { o.batch = -1; }).find("--batch"), std::string::npos);
  EXPECT_NE(with([](DirectOptions& o) { o.iterations = 0; }).find("--iters"), std::string::npos);
  EXPECT_NE(with([](DirectOptions& o) { o.lr = 0; }).find("--lr"), std::string::npos);
  EXPECT_NE(with([](DirectOptions& o) { o.jitter = -1; }).find("--jitter"), std::string::npos);
}

TEST(SynthSetFiles, RoundTripAndPngFolderReloadsWithTheRightLabels) {
  const fs::path dir = fs::temp_directory_path() / ("dfq_synth_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const Preprocess pre = preset("cifar");
  // Images that are exact pixel values, so the PNG round trip is lossless.
  const at::Tensor pixels = at::randint(0, 256, {12, 3, 4, 5}, gen).to(at::kFloat) / 255.0;
  const at::Tensor mean = at::tensor(pre.mean).reshape({1, 3, 1, 1}), std = at::tensor(pre.std).reshape({1, 3, 1, 1});
  SynthSet set{(pixels - mean) / std, at::arange(12, at::kLong).remainder(10)};
  save_synth_set(set, (dir / "images.pt").string());
  const SynthSet back = load_synth_set((dir / "images.pt").string());
  EXPECT_TRUE(at::equal(back.images, set.images));
  EXPECT_TRUE(at::equal(back.labels, set.labels));

  dump_png_folder(set, pre, 10, (dir / "png").string());
  const ImageFolder folder = scan_image_folder((dir / "png").string(), false);
  ASSERT_EQ(folder.classes.size(), 10u);
  EXPECT_EQ(folder.classes[3], "3");
  LoaderOptions options;
  options.batch_size = 12;
  BatchLoader loader(folder, pre, options);
  Batch batch;
  ASSERT_TRUE(loader.next(batch));
  ASSERT_EQ(batch.count, 12);
  // The folder lists class by class; match each reloaded image to its original by label order.
  for (int64_t i = 0; i < 12; ++i) {
    const int64_t label = batch.labels[i].item<int64_t>();
    bool found = false;
    for (int64_t j = 0; j < 12 && !found; ++j)
      found = set.labels[j].item<int64_t>() == label && (batch.images[i] - set.images[j]).abs().max().item<double>() < 1e-5;
    EXPECT_TRUE(found) << "reloaded image " << i << " (label " << label << ") matches no original of that label";
  }
  std::ofstream(dir / "junk.pt") << "not a pickle";
  EXPECT_NE(error_of([&] { load_synth_set((dir / "junk.pt").string()); }).find("junk.pt"), std::string::npos);
  fs::remove_all(dir);
}

TEST(SynthQualityMetrics, WithinClassDiversityExposesCollapse) {
  Graph graph = import_torchscript(kModel);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  // Ten distinct images, each repeated three times under its own label.
  const at::Tensor distinct = at::randn({10, 1, 28, 28}, gen);
  SynthSet collapsed{distinct.repeat_interleave(3, 0), at::arange(10, at::kLong).repeat_interleave(3)};
  const SynthQuality q = measure_quality(graph, collapsed, 16);
  EXPECT_GT(q.diversity, 0.5);
  EXPECT_EQ(q.diversity_within_class, 0.0);
  SynthSet varied{at::randn({30, 1, 28, 28}, gen), collapsed.labels};
  EXPECT_NEAR(measure_quality(graph, varied, 16).diversity_within_class, std::sqrt(2.0), 0.05);
}
