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
}

// Mean absolute difference between horizontal and vertical neighbours.
at::Tensor total_variation(const at::Tensor& x) {
  const int64_t h = x.size(2), w = x.size(3);
  return (x.narrow(3, 1, w - 1) - x.narrow(3, 0, w - 1)).abs().mean() +
         (x.narrow(2, 1, h - 1) - x.narrow(2, 0, h - 1)).abs().mean();
}

}  // namespace

SynthSet synthesize_direct(const Graph& graph, const Preprocess& pre, int64_t height, int64_t width,
                           const DirectOptions& o, SynthReport& report) {
  validate(o);
  const int64_t classes = graph.output_width();
  if (o.labels == LabelMode::kBalanced && classes <= 0)
    fail("--labels balanced", "a model whose output width is known", "none; use --labels none");
  BnStatsLoss bn(graph, o.bn);
  const int64_t channels = graph.input_channels > 0 ? graph.input_channels : pre.channels;
  // Valid pixel range [0, 1] in the normalized space, per channel.
  const at::Tensor lo = ((at::zeros({channels}) - at::tensor(pre.mean)) / at::tensor(pre.std)).reshape({1, -1, 1, 1});
  const at::Tensor hi = ((at::ones({channels}) - at::tensor(pre.mean)) / at::tensor(pre.std)).reshape({1, -1, 1, 1});

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  SynthSet set{at::empty({o.count, channels, height, width}), at::full({o.count}, -1, at::kLong)};
  const int64_t batches = (o.count + o.batch - 1) / o.batch;
  Progress progress("synth direct", batches * o.iterations, o.quiet);
  report = SynthReport{};
  report.method = "direct";
  report.count = o.count;
  report.iterations = o.iterations;
  report.bn_layers = bn.layer_names();
  report.final_bn_loss_per_layer.assign(report.bn_layers.size(), 0.0);
  const auto start = std::chrono::steady_clock::now();
  int64_t image_iterations = 0;

  for (int64_t b = 0; b < batches; ++b) {
    const int64_t first = b * o.batch, len = std::min(o.batch, o.count - first);
    at::Tensor labels = at::arange(first, first + len, at::kLong).remainder(std::max<int64_t>(classes, 1));
    at::Tensor x = at::randn({len, channels, height, width}, gen).max(lo).min(hi).requires_grad_(true);
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
      bn.reset();
      const at::Tensor logits = forward(graph, input, &bn);
      const at::Tensor bn_loss = bn.total();
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
        x.copy_(x.max(lo).min(hi));
      }
      const double bn_value = bn_loss.item<double>();
      if (b == 0) report.loss_curve.push_back(bn_value);
      if (b == 0 && it == 0) report.initial_bn_loss = bn_value;
      image_iterations += len;
      char extra[96];
      std::snprintf(extra, sizeof extra, "batch %lld/%lld  bn %.4g  total %.4g", static_cast<long long>(b + 1),
                    static_cast<long long>(batches), bn_value, loss.item<double>());
      progress.update(b * o.iterations + it + 1, extra);
    }
    // The final images, unaugmented: their BN loss is what the report states.
    at::Tensor images = x.detach();
    {
      at::NoGradGuard no_grad;
      bn.reset();
      forward(graph, images, &bn);
      report.final_bn_loss += bn.total().item<double>() / static_cast<double>(batches);
      const std::vector<double> layers = bn.per_layer();
      for (size_t l = 0; l < layers.size(); ++l)
        report.final_bn_loss_per_layer[l] += layers[l] / static_cast<double>(batches);
    }
    set.images.narrow(0, first, len).copy_(images);
    if (o.labels == LabelMode::kBalanced) set.labels.narrow(0, first, len).copy_(labels);
  }
  progress.finish();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.image_iterations_per_second = static_cast<double>(image_iterations) / report.seconds;
  return set;
}

}  // namespace dfq
