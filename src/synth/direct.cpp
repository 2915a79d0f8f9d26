#include "synth/direct.h"

#include <ATen/ATen.h>
#include <torch/optim/adam.h>

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "core/execute.h"
#include "core/progress.h"

namespace dfq {
namespace {

void validate(const DirectOptions& o) {
  if (o.count < 1) fail("--count", "a positive number of images", std::to_string(o.count));
  if (o.batch < 1) fail("--batch", "a positive batch size", std::to_string(o.batch));
  if (o.iterations < 1) fail("--iters", "at least one iteration", std::to_string(o.iterations));
  if (!(o.lr > 0)) fail("--lr", "a positive learning rate", std::to_string(o.lr));
  if (o.jitter < 0) fail("--jitter", "0 or more pixels", std::to_string(o.jitter));
  if (o.ce_weight < 0 || o.tv_weight < 0 || o.l2_weight < 0)
    fail("loss weights", "non-negative --ce-weight, --tv-weight and --l2-weight", "a negative value");
  const int64_t batches = (o.count + o.batch - 1) / o.batch;
  if (o.shard.count < 1 || o.shard.index < 0 || o.shard.index >= o.shard.count)
    fail("--shard", "I/N with 0 <= I < N",
         std::to_string(o.shard.index) + "/" + std::to_string(o.shard.count));
  // A shard without a batch would write an empty set that no merge needs.
  if (o.shard.count > batches)
    fail("--shard " + std::to_string(o.shard.index) + "/" + std::to_string(o.shard.count),
         "at most as many shards as batches (" + std::to_string(batches) + " of --batch " + std::to_string(o.batch) +
             " for --count " + std::to_string(o.count) + ")",
         std::to_string(o.shard.count) + " shards");
}

// Mean absolute difference between horizontal and vertical neighbours.
at::Tensor total_variation(const at::Tensor& x) {
  const int64_t h = x.size(2), w = x.size(3);
  return (x.narrow(3, 1, w - 1) - x.narrow(3, 0, w - 1)).abs().mean() +
         (x.narrow(2, 1, h - 1) - x.narrow(2, 0, h - 1)).abs().mean();
}

// What every batch of one run shares.
struct BatchContext {
  const Graph& graph;
  BnStatsLoss& bn;
  const DirectOptions& o;
  at::Tensor lo, hi;  // valid pixel range [0, 1] in the normalized space, per channel
  int64_t channels, height, width, batches;
  Progress& progress;
};

// Optimizes batch k (images first .. first + len - 1) from its own generator
// and returns its final images; records its BN loss per step in `curve` when
// given. `done` counts the steps of the batches before it, for the progress line.
at::Tensor optimize_batch(const BatchContext& c, int64_t k, const at::Tensor& labels, std::vector<double>* curve,
                          int64_t done) {
  const DirectOptions& o = c.o;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(direct_batch_seed(o.seed, k));
  const int64_t len = labels.size(0);
  at::Tensor x = at::randn({len, c.channels, c.height, c.width}, gen).max(c.lo).min(c.hi).requires_grad_(true);
  torch::optim::Adam adam(std::vector<at::Tensor>{x}, torch::optim::AdamOptions(o.lr));
  for (int64_t it = 0; it < o.iterations; ++it) {
    // Cosine decay from lr to 0 over the iterations.
    const double lr = 0.5 * o.lr * (1.0 + std::cos(M_PI * static_cast<double>(it) / static_cast<double>(o.iterations)));
    static_cast<torch::optim::AdamOptions&>(adam.param_groups()[0].options()).lr(lr);
    at::Tensor input = x;
    if (o.jitter > 0) {
      const int64_t dy = at::randint(-o.jitter, o.jitter + 1, {1}, gen).item<int64_t>();
      const int64_t dx = at::randint(-o.jitter, o.jitter + 1, {1}, gen).item<int64_t>();
      input = at::roll(input, {dy, dx}, {2, 3});
    }
    if (o.flip && at::randint(0, 2, {1}, gen).item<int64_t>() == 1) input = input.flip({3});
    c.bn.reset();
    const at::Tensor logits = forward(c.graph, input, &c.bn);
    const at::Tensor bn_loss = c.bn.total();
    at::Tensor loss = bn_loss;
    if (o.labels == LabelMode::kBalanced && o.ce_weight > 0)
      loss = loss + o.ce_weight * at::cross_entropy_loss(logits, labels);
    if (o.tv_weight > 0) loss = loss + o.tv_weight * total_variation(x);
    if (o.l2_weight > 0) loss = loss + o.l2_weight * x.pow(2).mean();
    adam.zero_grad();
    loss.backward();
    adam.step();
    {
      at::NoGradGuard no_grad;
      x.copy_(x.max(c.lo).min(c.hi));
    }
    const double bn_value = bn_loss.item<double>();
    if (curve) curve->push_back(bn_value);
    char extra[96];
    std::snprintf(extra, sizeof extra, "batch %lld/%lld  bn %.4g  total %.4g", static_cast<long long>(k + 1),
                  static_cast<long long>(c.batches), bn_value, loss.item<double>());
    c.progress.update(done + it + 1, extra);
  }
  return x.detach();
}

// The BN loss of a batch's final, unaugmented images: what the report states.
BatchLoss final_loss(const BatchContext& c, int64_t k, const at::Tensor& images) {
  at::NoGradGuard no_grad;
  c.bn.reset();
  forward(c.graph, images, &c.bn);
  return BatchLoss{k, c.bn.total().item<double>(), c.bn.per_layer()};
}

}  // namespace

uint64_t direct_batch_seed(uint64_t seed, int64_t batch) {
  // splitmix64's finalizer, twice: nearby (seed, k) pairs get unrelated seeds.
  const auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  const uint64_t h = mix(mix(seed) ^ static_cast<uint64_t>(batch));
  // LibTorch's CPU generator (mt19937) keeps only the low 32 bits of its seed:
  // fold the high half in so that every bit of the hash counts.
  return (h ^ (h >> 32)) & 0xffffffffULL;
}

int64_t direct_batches(const DirectOptions& o) { return (o.count + o.batch - 1) / o.batch; }

SynthSet synthesize_direct(const Graph& graph, const Preprocess& pre, int64_t height, int64_t width,
                           const DirectOptions& o, SynthReport& report) {
  validate(o);
  const int64_t classes = graph.output_width();
  if (o.labels == LabelMode::kBalanced && classes <= 0)
    fail("--labels balanced", "a model whose output width is known", "none; use --labels none");
  BnStatsLoss bn(graph, o.bn);
  const int64_t channels = graph.input_channels > 0 ? graph.input_channels : pre.channels;
  const at::Tensor lo = ((at::zeros({channels}) - at::tensor(pre.mean)) / at::tensor(pre.std)).reshape({1, -1, 1, 1});
  const at::Tensor hi = ((at::ones({channels}) - at::tensor(pre.mean)) / at::tensor(pre.std)).reshape({1, -1, 1, 1});
  const int64_t batches = direct_batches(o);
  std::vector<int64_t> mine;  // the batches this call computes
  for (int64_t k = 0; k < batches; ++k)
    if (o.shard.holds(k)) mine.push_back(k);
  Progress progress("synth direct", static_cast<int64_t>(mine.size()) * o.iterations, o.quiet);
  const BatchContext c{graph, bn, o, lo, hi, channels, height, width, batches, progress};
  report = SynthReport{};
  report.method = "direct";
  report.iterations = o.iterations;
  report.bn_layers = bn.layer_names();
  const auto start = std::chrono::steady_clock::now();
  std::vector<at::Tensor> images, labels;
  for (size_t i = 0; i < mine.size(); ++i) {
    const int64_t k = mine[i], first = k * o.batch, len = std::min(o.batch, o.count - first);
    const at::Tensor targets = at::arange(first, first + len, at::kLong).remainder(std::max<int64_t>(classes, 1));
    images.push_back(optimize_batch(c, k, targets, i == 0 ? &report.loss_curve : nullptr,
                                    static_cast<int64_t>(i) * o.iterations));
    report.batch_losses.push_back(final_loss(c, k, images.back()));
    labels.push_back(o.labels == LabelMode::kBalanced ? targets : at::full({len}, -1, at::kLong));
    report.image_iterations += len * o.iterations;
    report.count += len;
  }
  progress.finish();
  if (!report.loss_curve.empty()) report.initial_bn_loss = report.loss_curve.front();
  average_batch_losses(report);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.image_iterations_per_second = static_cast<double>(report.image_iterations) / report.seconds;
  if (images.empty()) return SynthSet{at::empty({0, channels, height, width}), at::empty({0}, at::kLong)};
  return SynthSet{at::cat(images, 0), at::cat(labels, 0)};
}

}  // namespace dfq
