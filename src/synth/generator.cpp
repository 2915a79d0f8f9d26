#include "synth/generator.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"

namespace dfq {

namespace {

// Channels of the first feature map; the second stage has half of them. Small
// on purpose: the generator costs about as much per image as ResNet-20 itself.
constexpr int64_t kBase = 32;

struct Arch {
  int64_t classes, latent, channels, height, width, base;
};

// Label-conditioned generator after GDFQ, but conditioned by concatenation:
// h = [z, embed(y)], then linear -> base x (H/4) x (W/4), BN, [up x2, conv3x3, BN, LeakyReLU 0.2] x 2,
// conv3x3 -> C, pixel01 = sigmoid(t), output = (pixel01 - mean) / std.
// H and W that are not multiples of 4 are generated at the next multiple and
// centre-cropped. The sigmoid keeps every image inside the valid pixel range.
// GDFQ's embed(y) * z was tried first: z's random signs scramble the label,
// and in a few hundred steps the cross-entropy stayed at chance level.
class GeneratorImpl : public torch::nn::Module {
 public:
  GeneratorImpl(const Arch& arch, const Preprocess& pre)
      : arch_(arch),
        h0_((arch.height + 3) / 4),
        w0_((arch.width + 3) / 4),
        embed_(register_module("embed", torch::nn::Embedding(arch.classes, arch.latent))),
        fc_(register_module("fc", torch::nn::Linear(2 * arch.latent, arch.base * h0_ * w0_))),
        bn0_(register_module("bn0", torch::nn::BatchNorm2d(arch.base))),
        conv1_(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(arch.base, arch.base, 3).padding(1)))),
        bn1_(register_module("bn1", torch::nn::BatchNorm2d(arch.base))),
        conv2_(register_module(
            "conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(arch.base, arch.base / 2, 3).padding(1)))),
        bn2_(register_module("bn2", torch::nn::BatchNorm2d(arch.base / 2))),
        conv3_(register_module(
            "conv3", torch::nn::Conv2d(torch::nn::Conv2dOptions(arch.base / 2, arch.channels, 3).padding(1)))) {
    // The architecture travels with the saved file so that load() can reject a
    // generator built for another model or input size.
    architecture_ = register_buffer(
        "architecture", torch::tensor({arch.classes, arch.latent, arch.channels, arch.height, arch.width, arch.base},
                                      torch::kInt64));
    std::vector<float> mean(pre.mean.begin(), pre.mean.end()), stdev(pre.std.begin(), pre.std.end());
    mean_ = torch::tensor(mean).view({1, arch.channels, 1, 1});
    inv_std_ = (1.0 / torch::tensor(stdev)).view({1, arch.channels, 1, 1});
  }

  at::Tensor forward(const at::Tensor& z, const at::Tensor& labels) {
    at::Tensor h = at::cat({z, embed_->forward(labels)}, 1);
    h = fc_->forward(h).view({z.size(0), arch_.base, h0_, w0_});
    h = bn0_->forward(h);
    h = at::upsample_nearest2d(h, {2 * h0_, 2 * w0_});
    h = at::leaky_relu(bn1_->forward(conv1_->forward(h)), 0.2);
    h = at::upsample_nearest2d(h, {4 * h0_, 4 * w0_});
    h = at::leaky_relu(bn2_->forward(conv2_->forward(h)), 0.2);
    h = conv3_->forward(h);
    if (4 * h0_ != arch_.height || 4 * w0_ != arch_.width) {
      const int64_t top = (4 * h0_ - arch_.height) / 2, left = (4 * w0_ - arch_.width) / 2;
      h = h.narrow(2, top, arch_.height).narrow(3, left, arch_.width);
    }
    return (at::sigmoid(h) - mean_) * inv_std_;
  }

  const Arch& arch() const { return arch_; }

 private:
  Arch arch_;
  int64_t h0_, w0_;
  torch::nn::Embedding embed_;
  torch::nn::Linear fc_;
  torch::nn::BatchNorm2d bn0_;
  torch::nn::Conv2d conv1_;
  torch::nn::BatchNorm2d bn1_;
  torch::nn::Conv2d conv2_;
  torch::nn::BatchNorm2d bn2_;
  torch::nn::Conv2d conv3_;
  at::Tensor architecture_, mean_, inv_std_;
};
TORCH_MODULE(Generator);

std::string arch_string(const at::Tensor& t) {
  std::string s;
  const at::Tensor c = t.to(at::kLong).contiguous();
  for (int64_t i = 0; i < c.numel(); ++i) s += (i ? "," : "") + std::to_string(c.data_ptr<int64_t>()[i]);
  return s;
}

void load_generator(Generator& generator, const std::string& path) {
  const std::string subject = "generator file '" + path + "'";
  if (!std::filesystem::is_regular_file(path)) fail(subject, "an existing file", "no such file");
  // torch::load replaces tensors without checking shapes: remember them.
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const auto& item : generator->named_parameters()) shapes.emplace_back(item.key(), item.value().sizes().vec());
  for (const auto& item : generator->named_buffers()) shapes.emplace_back(item.key(), item.value().sizes().vec());
  const at::Tensor expected = generator->named_buffers()["architecture"].clone();
  try {
    torch::load(generator, path);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    const size_t newline = what.find('\n');
    if (newline != std::string::npos) what = what.substr(0, newline);
    fail(subject, "a generator saved by dfq", "an unreadable file (" + what + ")");
  }
  const at::Tensor found = generator->named_buffers()["architecture"];
  if (found.sizes() != expected.sizes() || !at::equal(found.to(at::kLong), expected))
    fail(subject,
         "a generator for (classes,latent,channels,height,width,base) = (" + arch_string(expected) + ")",
         "(" + arch_string(found) + ")");
  auto params = generator->named_parameters();
  auto buffers = generator->named_buffers();
  for (const auto& [name, shape] : shapes) {
    const at::Tensor* t = params.find(name);
    if (t == nullptr) t = buffers.find(name);
    if (t == nullptr || t->sizes().vec() != shape)
      fail(subject, "tensor '" + name + "' of the expected shape", "a different one");
  }
}

void save_generator(Generator& generator, const std::string& path) {
  // Serialized in memory, then written with checks: torch::save to a file
  // aborts the process when a write fails (its writer throws again from a
  // destructor), so a full disk would crash instead of being reported.
  std::ostringstream bytes;
  try {
    torch::save(generator, bytes);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    fail("generator file '" + path + "'", "a serializable generator", what.substr(0, what.find('\n')));
  }
  write_file_atomic(path, bytes.str());
}

// Labels of one training step. The batch is two halves conditioned on the
// same labels (image i and image i + half share a label and differ only in z)
// so the mode-seeking term compares images of one class. Balanced: the first
// half cycles through the classes continuing from the previous step, so every
// class appears equally often over training. None: random labels.
at::Tensor step_labels(int64_t step, int64_t batch, int64_t classes, LabelMode mode, at::Generator& gen) {
  const int64_t half = (batch + 1) / 2;
  at::Tensor first;
  if (mode == LabelMode::kBalanced)
    first = (at::arange(half, at::kLong) + (step * half) % classes).remainder(classes);
  else
    first = at::randint(classes, {half}, gen, at::kLong);
  return at::cat({first, first.narrow(0, 0, batch - half)});
}

// Mode-seeking diversity term (MSGAN, Mao et al. 2019): for pairs (i, i+half)
// with the same label, ratio = mean|G(z_i) - G(z_j)| / mean|z_i - z_j|; the
// returned term is -mean(ratio), to be minimized. The ratio is bounded because
// the sigmoid bounds the images, so it cannot run away; it penalizes the
// generator for mapping different latents of a class to the same image.
at::Tensor diversity_term(const at::Tensor& images, const at::Tensor& z) {
  const int64_t batch = images.size(0), half = (batch + 1) / 2, pairs = batch - half;
  if (pairs <= 0) return at::zeros({}, images.options());
  const at::Tensor x = images.reshape({batch, -1});
  const at::Tensor dx = (x.narrow(0, 0, pairs) - x.narrow(0, half, pairs)).abs().mean(1);
  const at::Tensor dz = (z.narrow(0, 0, pairs) - z.narrow(0, half, pairs)).abs().mean(1);
  return -(dx / (dz + 1e-8)).mean();
}

std::string format_loss(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.4g", value);
  return buffer;
}

}  // namespace

SynthSet synthesize_with_generator(const Graph& graph, const Preprocess& pre, int64_t height, int64_t width,
                                   const GeneratorOptions& options, SynthReport& report) {
  const bool loading = !options.load_path.empty();
  if (options.count <= 0) fail("--count", "a positive number of images", std::to_string(options.count));
  if (options.batch <= 0) fail("--batch", "a positive batch size", std::to_string(options.batch));
  if (options.iterations < 0 || (options.iterations == 0 && !loading))
    fail("--iterations", loading ? "a number >= 0" : "a positive number of generator training steps",
         std::to_string(options.iterations));
  if (!(options.lr > 0) || !std::isfinite(options.lr))
    fail("--lr", "a positive learning rate", std::to_string(options.lr));
  if (options.latent <= 0) fail("--latent", "a positive latent size", std::to_string(options.latent));
  if (!std::isfinite(options.ce_weight) || options.ce_weight < 0)
    fail("--ce-weight", "a finite weight >= 0", std::to_string(options.ce_weight));
  if (!std::isfinite(options.diversity_weight) || options.diversity_weight < 0)
    fail("--diversity-weight", "a finite weight >= 0", std::to_string(options.diversity_weight));
  if (height <= 0 || width <= 0)
    fail("image size", "positive height and width", std::to_string(height) + "x" + std::to_string(width));
  const int64_t channels = graph.input_channels > 0 ? graph.input_channels : static_cast<int64_t>(pre.channels);
  if (static_cast<int64_t>(pre.mean.size()) != channels || static_cast<int64_t>(pre.std.size()) != channels)
    fail("preprocessing '" + pre.name + "'", "mean and std for " + std::to_string(channels) + " channels",
         std::to_string(pre.mean.size()) + " and " + std::to_string(pre.std.size()) + " values");
  const int64_t classes = graph.output_width();
  if (classes <= 0)
    fail("model '" + graph.source + "'", "a statically known number of classes for the generator", "none");

  const auto start = std::chrono::steady_clock::now();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  torch::manual_seed(options.seed);  // module initialization uses the global generator
  Generator generator(Arch{classes, options.latent, channels, height, width, kBase}, pre);

  BnStatsLoss bn_loss(graph, options.bn);
  const double ce_weight = options.labels == LabelMode::kBalanced ? options.ce_weight : 0.0;

  report = SynthReport{};
  report.method = "generator";
  report.count = options.count;
  report.bn_layers = bn_loss.layer_names();

  double train_seconds = 0.0;
  if (loading) {
    load_generator(generator, options.load_path);
    report.iterations = 0;
  } else {
    report.iterations = options.iterations;
    generator->train();
    torch::optim::Adam optimizer(generator->parameters(), torch::optim::AdamOptions(options.lr).betas({0.5, 0.999}));
    Progress progress("generator", options.iterations, options.quiet);
    report.loss_curve.reserve(static_cast<size_t>(options.iterations));
    double bn_value = 0.0, ce_value = 0.0;
    for (int64_t step = 0; step < options.iterations; ++step) {
      const double lr = options.lr * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(step) /
                                                           static_cast<double>(options.iterations)));
      for (auto& group : optimizer.param_groups())
        static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);

      const at::Tensor z = at::randn({options.batch, options.latent}, gen);
      const at::Tensor labels = step_labels(step, options.batch, classes, options.labels, gen);
      optimizer.zero_grad();
      const at::Tensor images = generator->forward(z, labels);
      bn_loss.reset();
      const at::Tensor logits = forward(graph, images, &bn_loss);
      const at::Tensor bn = bn_loss.total();
      at::Tensor total = bn;
      at::Tensor ce;
      if (ce_weight > 0) {
        ce = at::cross_entropy_loss(logits, labels);
        total = total + ce_weight * ce;
      }
      if (options.diversity_weight > 0) total = total + options.diversity_weight * diversity_term(images, z);
      total.backward();
      optimizer.step();

      bn_value = bn.item<double>();
      ce_value = ce.defined() ? ce.item<double>() : 0.0;
      if (!std::isfinite(bn_value))
        fail("generator training", "a finite BN loss", "a non-finite one at step " + std::to_string(step));
      if (step == 0) report.initial_bn_loss = bn_value;
      report.loss_curve.push_back(bn_value);
      progress.update(step + 1, "bn " + format_loss(bn_value) + " ce " + format_loss(ce_value));
    }
    progress.finish("bn " + format_loss(bn_value) + " ce " + format_loss(ce_value));
    train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  if (!options.save_path.empty()) save_generator(generator, options.save_path);

  // Sampling, in eval mode, batch by batch; the BN loss of the final images is
  // measured on the same batches and averaged over them.
  generator->eval();
  torch::NoGradGuard no_grad;
  // A stream of its own, so a loaded generator samples exactly what the one
  // that was trained and saved sampled.
  at::Generator sample_gen = at::make_generator<at::CPUGeneratorImpl>(options.seed + 0x9E3779B97F4A7C15ULL);
  SynthSet set;
  const at::Tensor labels = options.labels == LabelMode::kBalanced
                                ? at::arange(options.count, at::kLong).remainder(classes)
                                : at::randint(classes, {options.count}, sample_gen, at::kLong);
  std::vector<at::Tensor> parts;
  std::vector<double> per_layer(report.bn_layers.size(), 0.0);
  double bn_sum = 0.0;
  int64_t batches = 0;
  for (int64_t begin = 0; begin < options.count; begin += options.batch) {
    const int64_t n = std::min(options.batch, options.count - begin);
    const at::Tensor z = at::randn({n, options.latent}, sample_gen);
    const at::Tensor images = generator->forward(z, labels.narrow(0, begin, n)).contiguous();
    bn_loss.reset();
    forward(graph, images, &bn_loss);
    bn_sum += bn_loss.total().item<double>();
    const std::vector<double> layers = bn_loss.per_layer();
    for (size_t i = 0; i < layers.size(); ++i) per_layer[i] += layers[i];
    ++batches;
    parts.push_back(images);
  }
  set.images = at::cat(parts).contiguous();
  set.labels = options.labels == LabelMode::kBalanced ? labels : at::full({options.count}, -1, at::kLong);
  report.final_bn_loss = bn_sum / static_cast<double>(batches);
  for (double& v : per_layer) v /= static_cast<double>(batches);
  report.final_bn_loss_per_layer = per_layer;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.image_iterations_per_second =
      train_seconds > 0 ? static_cast<double>(options.batch * report.iterations) / train_seconds : 0.0;
  return set;
}

}  // namespace dfq
