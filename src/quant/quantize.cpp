#include "quant/quantize.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/execute.h"
#include "core/passes.h"
#include "core/progress.h"
#include "quant/bit_allocation.h"
#include "quant/reconstruct.h"
#include "quant/simulate.h"
#include "quant/weight_lut.h"

namespace dfq {

bool has_bit_budget(const QuantizeOptions& o) {
  return o.size_budget_bits_per_weight > 0 || o.bops_budget > 0 || o.bops_budget_weight_bits > 0 ||
         o.bops_budget_activation_bits > 0;
}

void check_quantize_options(const QuantizeOptions& o) {
  check_bits(o.weight_bits, "--wbits");
  check_bits(o.activation_bits, "--abits");
  if (o.first_last_bits != 0) check_bits(o.first_last_bits, "--first-last-bits");
  if (o.residual_layers < 0)
    fail("--residual-layers", "0 or more layers", std::to_string(o.residual_layers));
  if (!(o.residual_budget >= 0.0 && o.residual_budget <= 1.0))
    fail("--residual-budget", "a fraction of the model's weight bits in [0, 1]", std::to_string(o.residual_budget));
  if (o.residual_layers > 0 && o.residual_budget > 0)
    fail("residual tensors", "either --residual-layers or --residual-budget", "both");
  // TensorRT's entropy calibration is an 8-bit method: with 15 levels or fewer
  // its KL is smallest at a handful of histogram bins (measured: ResNet-20 W4A4
  // with kl activations collapses to 10 %), so it is refused below 8 bits.
  const int fewest_weight_bits = o.first_last_bits > 0 ? std::min(o.weight_bits, o.first_last_bits) : o.weight_bits;
  if (o.activation_range.method == RangeMethod::kKl && o.activation_bits < 8)
    fail("--act-range kl", "8-bit activations (TensorRT's entropy method; use mmse or percentile below 8 bits)",
         "--abits " + std::to_string(o.activation_bits));
  if (o.weight_range.method == RangeMethod::kKl && fewest_weight_bits < 8)
    fail("--weight-range kl", "8-bit weights (TensorRT's entropy method; use mmse or percentile below 8 bits)",
         std::to_string(fewest_weight_bits) + "-bit weights");
  if (o.weight_objective == WeightObjective::kOutput && o.weight_range.method != RangeMethod::kMmse)
    fail("--weight-objective output", "--weight-range mmse (the objective is what mmse minimizes)",
         std::string("--weight-range ") + to_string(o.weight_range.method));
  if (o.size_budget_bits_per_weight < 0 || o.bops_budget < 0)
    fail("mixed-precision budgets", "--size-budget and --bops-budget >= 0 (0: none)",
         std::to_string(o.size_budget_bits_per_weight) + " and " + std::to_string(o.bops_budget));
  const bool bops_by_bits = o.bops_budget_weight_bits != 0 || o.bops_budget_activation_bits != 0;
  if (bops_by_bits) {
    check_bits(o.bops_budget_weight_bits, "--bops-budget-bits weight bits");
    check_bits(o.bops_budget_activation_bits, "--bops-budget-bits activation bits");
    if (o.bops_budget > 0)
      fail("BOPs budget", "either --bops-budget or --bops-budget-bits", "both");
    // Without mixed activations every layer's BOPs count --abits: another A would not be uniform W x A.
    if (o.candidate_activation_bits.empty() && o.bops_budget_activation_bits != o.activation_bits)
      fail("--bops-budget-bits", "activation bits equal to --abits " + std::to_string(o.activation_bits) +
                                     " (activations are uniform without --candidate-abits)",
           std::to_string(o.bops_budget_activation_bits));
  }
  for (int bits : o.candidate_bits) check_bits(bits, "--candidate-bits");
  for (int bits : o.candidate_activation_bits) check_bits(bits, "--candidate-abits");
  // With only a size budget every activation would simply take the widest candidate.
  if (!o.candidate_activation_bits.empty() && o.bops_budget == 0 && !bops_by_bits)
    fail("--candidate-abits", "a BOPs budget (--bops-budget or --bops-budget-bits; activations cost no model size)", "none");
  if (o.activation_range.method == RangeMethod::kKl && !o.candidate_activation_bits.empty() &&
      *std::min_element(o.candidate_activation_bits.begin(), o.candidate_activation_bits.end()) < 8)
    fail("--act-range kl", "8-bit activations (TensorRT's entropy method; use mmse or percentile below 8 bits)",
         "--candidate-abits below 8");
  if (has_bit_budget(o) && o.candidate_bits.empty())
    fail("--candidate-bits", "at least one weight bit width", "none");
  if (has_bit_budget(o) && o.first_last_bits > 0)
    fail("--first-last-bits", "no fixed first/last bits with a mixed-precision budget (the ILP chooses every layer)",
         std::to_string(o.first_last_bits));
  if (has_bit_budget(o) && o.sensitivity == MixedSensitivity::kReconstructed && o.reconstruct.method == Reconstruction::kNone)
    fail("--sensitivity reconstructed", "--reconstruct adaround or adaquant (the method the sensitivity anticipates)",
         "--reconstruct none");
  if (o.weight_lut) {
    // A table of 2^b entries replaces a uniform grid of b <= 4 bits; what
    // assumes that grid (or would give a layer a second tensor) is refused.
    if (has_bit_budget(o))
      fail("--weight-lut", "uniform --wbits (no --size-budget/--bops-budget)", "a mixed-precision budget");
    if (o.residual_layers > 0 || o.residual_budget > 0)
      fail("--weight-lut", "no residual tensors", o.residual_layers > 0 ? "--residual-layers " + std::to_string(o.residual_layers)
                                                                        : "--residual-budget " + std::to_string(o.residual_budget));
    if (o.weight_bits > 4)
      fail("--weight-lut", "--wbits 4 or fewer (4-bit codes into a 16-entry table)", "--wbits " + std::to_string(o.weight_bits));
    if (o.reconstruct.method == Reconstruction::kAdaQuant)
      fail("--weight-lut", "--reconstruct adaround or none (AdaQuant learns values on the uniform grid)", "--reconstruct adaquant");
    if (o.lut_iterations < 0) fail("lookup table iterations", "0 or more", std::to_string(o.lut_iterations));
  }
}

namespace {

void validate(const QuantizeOptions& o, const at::Tensor& calibration) {
  check_quantize_options(o);
  if (!calibration.defined() || calibration.dim() != 4 || calibration.size(0) < 1)
    fail("calibration data", "a non-empty N x C x H x W batch",
         calibration.defined() ? c10::str(calibration.sizes()) : std::string("none"));
}

// Per output channel reduction of a [O, ...] tensor.
at::Tensor per_channel_sum(const at::Tensor& t) { return t.reshape({t.size(0), -1}).sum(1); }

// `input_moments` [G, D, D] selects the output objective (range.h); undefined: the weight's own error.
WeightQuant quantize_weight(const at::Tensor& w, const at::Tensor& bias, QuantRange range, const QuantizeOptions& o,
                            const at::Tensor& input_moments) {
  WeightQuant q;
  q.range = range;
  const int64_t channels = w.size(0);
  at::Tensor clips = input_moments.defined() ? choose_weight_clips_for_output(w, range, input_moments, o.per_channel,
                                                                               o.weight_range.power_of_two)
                     : o.per_channel         ? choose_weight_clips(w, range, o.weight_range)
                                             : at::full({channels}, choose_clip(w, range, o.weight_range));
  q.scale = (clips / static_cast<double>(range.qmax())).to(at::kFloat).contiguous();
  q.q = quantize(w, q.scale, range, 0).to(at::kChar);
  q.bias = bias.defined() ? bias.clone() : at::zeros({channels});
  const at::Tensor max_abs = std::get<0>(w.abs().reshape({channels, -1}).max(1)).clamp_min(1e-30);
  q.clip_ratio = (clips / max_abs).mean().item<double>();
  return q;
}

// Adds the second tensor: residual = quantize(W - W_q, scale / 2^k) with the
// shift k in 1..bits+1 that minimizes each channel's error.
void add_residual(WeightQuant& q, const at::Tensor& w) {
  const at::Tensor r = w - q.dequantized();
  const int64_t channels = w.size(0);
  std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
  shape[0] = channels;
  at::Tensor best_error = at::full({channels}, INFINITY, at::kDouble);
  at::Tensor best_shift = at::zeros({channels}, at::kLong);
  for (int k = 1; k <= q.range.bits + 1; ++k) {
    const at::Tensor scale = q.scale / std::pow(2.0, k);
    const at::Tensor error = per_channel_sum((r - fake_quantize(r, scale, q.range, 0)).pow(2)).to(at::kDouble);
    const at::Tensor better = error < best_error;
    best_error = at::where(better, error, best_error);
    best_shift = at::where(better, at::full_like(best_shift, k), best_shift);
  }
  q.residual_shift = best_shift;
  const at::Tensor scale = q.scale / at::pow(2.0, best_shift.to(at::kFloat));
  q.residual = quantize(r, scale, q.range, 0).to(at::kChar);
}

double normalized_error(const at::Tensor& w, const at::Tensor& w_hat) {
  return (w - w_hat).pow(2).sum().item<double>() / std::max(1e-30, w.pow(2).sum().item<double>());
}

// Layers that get a residual tensor: largest normalized error first, K of them
// or as many as fit the extra-bits budget.
std::vector<int> choose_residual_layers(const std::vector<LayerReport>& layers, const QuantizeOptions& o) {
  std::vector<size_t> order(layers.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return layers[a].normalized_error > layers[b].normalized_error; });
  double total_bits = 0;
  for (const LayerReport& l : layers) total_bits += static_cast<double>(l.parameters) * l.bits;
  std::vector<int> chosen;
  double extra = 0;
  for (size_t i : order) {
    if (o.residual_layers > 0 && static_cast<int>(chosen.size()) >= o.residual_layers) break;
    if (o.residual_budget > 0) {
      const double bits = static_cast<double>(layers[i].parameters) * layers[i].bits;
      if (extra + bits > o.residual_budget * total_bits) continue;  // a smaller layer may still fit
      extra += bits;
    } else if (o.residual_layers == 0) {
      break;
    }
    chosen.push_back(layers[i].node);
  }
  return chosen;
}

// The float graph with the model's dequantized weights and its float biases.
Graph weight_quantized_graph(const QuantizedModel& model) {
  Graph g = model.graph;
  for (const auto& [id, q] : model.weights) {
    g.nodes[static_cast<size_t>(id)].params["weight"] = q.dequantized();
    g.nodes[static_cast<size_t>(id)].params["bias"] = q.bias;
  }
  return g;
}

// Means over every dimension but the channel dimension 1.
at::Tensor channel_mean(const at::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return x.mean(dims);
}

// The patches a Conv2d (per group) or Linear node multiplies with its weight
// rows, for a batch x: [G, P, D].
at::Tensor input_patches(const Node& node, const at::Tensor& x) {
  const at::Tensor& w = node.param("weight");
  const int64_t groups = node.op == Op::Conv2d ? node.attrs.i("groups") : 1;
  const int64_t d = w.numel() / w.size(0);
  if (node.op != Op::Conv2d) return x.reshape({1, x.size(0), -1});
  const at::Tensor cols = at::im2col(x, {w.size(2), w.size(3)}, node.attrs.list("dilation"), node.attrs.list("padding"),
                                     node.attrs.list("stride"));  // [N, C k k, L], channel-major per group
  return cols.reshape({x.size(0), groups, d, cols.size(2)}).permute({1, 0, 3, 2}).reshape({groups, -1, d});
}

// Images per chunk: a large calibration set never materializes all its patches.
constexpr int64_t kPatchChunk = 64;

// Second moments E[x x^T] of a node's input patches: [G, D, D] (range.h).
at::Tensor input_second_moments(const Node& node, const at::Tensor& input) {
  at::Tensor h;
  int64_t count = 0;
  for (int64_t start = 0; start < input.size(0); start += kPatchChunk) {
    const at::Tensor patches = input_patches(node, input.narrow(0, start, std::min(kPatchChunk, input.size(0) - start)));
    const at::Tensor m = at::bmm(patches.transpose(1, 2), patches).to(at::kDouble);
    h = h.defined() ? h + m : m;
    count += patches.size(1);
  }
  return h / static_cast<double>(count);
}

// Patch covariances of a node's input as the quantized model computes it
// and as the float model does (reconstruct.h), over the whole batch, in chunks
// (one patch extraction when both are the same tensor).
InputCovariances input_covariances(const Node& node, const at::Tensor& quantized_input, const at::Tensor& float_input) {
  CovarianceAccumulator accumulator;
  const bool same = quantized_input.is_same(float_input);
  for (int64_t start = 0; start < quantized_input.size(0); start += kPatchChunk) {
    const int64_t n = std::min(kPatchChunk, quantized_input.size(0) - start);
    const at::Tensor patches_q = input_patches(node, quantized_input.narrow(0, start, n));
    accumulator.add(patches_q, same ? patches_q : input_patches(node, float_input.narrow(0, start, n)));
  }
  return accumulator.result();
}

// Step 1: statistics of the float model on the calibration batch, per
// Conv2d/Linear node: the second moments of its input patches (when the weight
// objective needs them) and the mean of each output channel.
class FloatStatistics : public Observer {
 public:
  FloatStatistics(bool second_moments, bool keep_inputs) : second_moments_(second_moments), keep_inputs_(keep_inputs) {}
  void after_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor& output) override {
    if (node.op != Op::Conv2d && node.op != Op::Linear) return;
    if (second_moments_) input_moments[node.id] = input_second_moments(node, inputs[0]);
    if (keep_inputs_) this->inputs[node.id] = inputs[0];
    output_mean[node.id] = channel_mean(output);
    const at::Tensor& w = node.param("weight");
    macs[node.id] = output.numel() / output.size(0) * (w.numel() / w.size(0));
  }
  std::map<int, at::Tensor> input_moments, output_mean, inputs;
  std::map<int, int64_t> macs;  // multiply-accumulates per image

 private:
  bool second_moments_, keep_inputs_;
};

// Step 4: corrects biases in place, in graph order, on one pass.
class BiasCorrector : public Observer {
 public:
  BiasCorrector(const Graph& float_graph, QuantizedModel& model, Graph& quantized_graph)
      : float_graph_(float_graph), model_(model), quantized_graph_(quantized_graph) {}
  bool compute_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor& output) override {
    auto it = model_.weights.find(node.id);
    if (it == model_.weights.end()) return false;
    const at::Tensor reference = run_node(float_graph_.node(node.id), inputs);
    output = run_node(node, inputs);
    const at::Tensor shift = channel_mean(output - reference);
    it->second.bias = it->second.bias - shift;
    quantized_graph_.nodes[static_cast<size_t>(node.id)].params["bias"] = it->second.bias;
    std::vector<int64_t> shape(static_cast<size_t>(output.dim()), 1);
    shape[1] = shift.size(0);
    output = output - shift.reshape(shape);
    shifts[node.id] = shift.abs().mean().item<double>();
    return true;
  }
  void after_node(const Node&, const std::vector<at::Tensor>&, at::Tensor&) override {}
  std::map<int, double> shifts;

 private:
  const Graph& float_graph_;
  QuantizedModel& model_;
  Graph& quantized_graph_;
};

// Step 6: corrects biases in place, in graph order, on one pass of the
// simulated model (quantized weights and activations upstream): the mean of
// each output channel is brought back to the float model's, which also removes
// the shifts that activation clipping and rounding cause.
class SimulatedBiasCorrector : public FakeQuantizer {
 public:
  SimulatedBiasCorrector(QuantizedModel& model, Graph& simulated, const std::map<int, at::Tensor>& float_means)
      : FakeQuantizer(model), model_(model), simulated_(simulated), float_means_(float_means),
        points_(activation_points(model.graph)) {}
  bool compute_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor& output) override {
    auto it = model_.weights.find(node.id);
    if (it == model_.weights.end()) return false;
    const at::Tensor shift = channel_mean(run_node(node, inputs)) - float_means_.at(node.id);
    // From the bias on its grid (what produced the shift), so the result is
    // within half a grid step of the float mean.
    it->second.bias = node.param("bias") - shift;
    simulated_.nodes[static_cast<size_t>(node.id)].params["bias"] =
        bias_on_integer_grid(it->second, weight_input_scale(model_, points_, node.id));
    output = run_node(node, inputs);
    shifts[node.id] = shift.abs().mean().item<double>();
    return true;
  }
  std::map<int, double> shifts;

 private:
  QuantizedModel& model_;
  Graph& simulated_;
  const std::map<int, at::Tensor>& float_means_;
  ActivationPoints points_;
};

// Step 5b: reconstruction (reconstruct.h), in graph order on one pass of the
// simulated model, so each layer sees the quantized model's input with every
// earlier layer already reconstructed. A layer with a residual tensor has that
// (finer) tensor reconstructed, its first tensor kept.
class Reconstructor : public FakeQuantizer {
 public:
  Reconstructor(QuantizedModel& model, Graph& simulated, const std::map<int, at::Tensor>& float_inputs,
                const ReconstructOptions& options, bool quiet)
      : FakeQuantizer(model), model_(model), simulated_(simulated), float_inputs_(float_inputs), options_(options),
        progress_(std::string("reconstruct ") + to_string(options.method), static_cast<int64_t>(model.weights.size()), quiet) {}
  ~Reconstructor() override { progress_.finish(); }
  bool compute_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor& output) override {
    auto it = model_.weights.find(node.id);
    if (it == model_.weights.end()) return false;
    WeightQuant& w = it->second;
    const at::Tensor& float_input = float_inputs_.at(node.id);
    const InputCovariances covariances = input_covariances(node, inputs[0], float_input);
    const at::Tensor weight = model_.graph.node(node.id).param("weight");
    std::vector<int64_t> shape(static_cast<size_t>(weight.dim()), 1);
    shape[0] = weight.size(0);
    RoundingResult r;
    if (w.lut.defined()) {
      // AdaRound between the table's two levels around each weight.
      const at::Tensor levels = std::get<0>(at::_unique(w.lut.to(at::kFloat), /*sorted=*/true));
      r = reconstruct_rounding(weight, at::Tensor(), w.scale, w.range, w.q, covariances, options_, levels);
      w.q = r.q;
      w.codes = lut_codes(w.q, w.lut);
    } else if (w.residual.defined()) {
      const at::Tensor base = w.q.to(at::kFloat) * w.scale.reshape(shape);
      const at::Tensor scale = w.scale / at::pow(2.0, w.residual_shift.to(at::kFloat));
      r = reconstruct_rounding(weight, base, scale, w.range, w.residual, covariances, options_);
      w.residual = r.q;
    } else {
      r = reconstruct_rounding(weight, at::Tensor(), w.scale, w.range, w.q, covariances, options_);
      w.q = r.q;
    }
    results[node.id] = r;
    simulated_.nodes[static_cast<size_t>(node.id)].params["weight"] = w.dequantized();
    output = run_node(simulated_.node(node.id), inputs);
    char extra[160];
    std::snprintf(extra, sizeof extra, "%s error %.4f -> %.4f", node.name.c_str(), r.error_before, r.error_after);
    progress_.update(static_cast<int64_t>(results.size()), extra);
    return true;
  }
  std::map<int, RoundingResult> results;

 private:
  QuantizedModel& model_;
  Graph& simulated_;
  const std::map<int, at::Tensor>& float_inputs_;
  ReconstructOptions options_;
  Progress progress_;
};

// Step 5: histograms of every point; with scales and ranges set, the signal
// and noise sums of the activation SQNR (activation_sqnr_db) instead.
class PointObserver : public Observer {
 public:
  explicit PointObserver(const std::vector<int>& point_of_node) : point_of_node_(point_of_node) {}
  void after_node(const Node& node, const std::vector<at::Tensor>&, at::Tensor& output) override {
    const int p = point_of_node_[static_cast<size_t>(node.id)];
    if (p < 0) return;
    if (scales.empty()) {
      histograms[static_cast<size_t>(p)].add(output);
    } else {
      const at::Tensor q = fake_quantize(output, at::scalar_tensor(scales[static_cast<size_t>(p)]),
                                         ranges[static_cast<size_t>(p)]);
      signal[static_cast<size_t>(p)] += output.to(at::kDouble).pow(2).sum().item<double>();
      noise[static_cast<size_t>(p)] += (output - q).to(at::kDouble).pow(2).sum().item<double>();
    }
  }
  std::vector<Histogram> histograms;
  std::vector<double> scales, signal, noise;
  std::vector<QuantRange> ranges;

 private:
  const std::vector<int>& point_of_node_;
};

// KL(p_float || p) of the softmax outputs, mean over images.
double output_divergence(const at::Tensor& reference_logits, const at::Tensor& logits) {
  const at::Tensor p = at::log_softmax(reference_logits.to(at::kDouble), 1), q = at::log_softmax(logits.to(at::kDouble), 1);
  return (p.exp() * (p - q)).sum(1).mean().item<double>();
}

// Fake-quantizes every quantization point of a context (scale > 0 in
// `at_node`, indexed by node id), one of them possibly at other bits.
class ContextQuantizer : public Observer {
 public:
  struct Point {
    QuantRange range;
    double scale = 0;  // 0: not a point
  };
  explicit ContextQuantizer(std::vector<Point> at_node) : at_node_(std::move(at_node)) {}
  void override_point(int node, Point point) { override_node_ = node, override_ = point; }
  void after_node(const Node& node, const std::vector<at::Tensor>&, at::Tensor& output) override {
    const Point& p = node.id == override_node_ ? override_ : at_node_[static_cast<size_t>(node.id)];
    if (p.scale > 0) output = fake_quantize(output, at::scalar_tensor(p.scale), p.range);
  }

 private:
  std::vector<Point> at_node_;
  int override_node_ = -1;
  Point override_;
};

// In-context sensitivities as excesses over the best candidate, made
// non-increasing in bits (fewer bits never measure better: what does is noise).
void to_nonincreasing_excess(std::vector<double>& sensitivity, const std::vector<int>& bits) {
  std::vector<size_t> order(bits.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return bits[a] > bits[b]; });
  for (size_t k = 1; k < order.size(); ++k)
    sensitivity[order[k]] = std::max(sensitivity[order[k]], sensitivity[order[k - 1]]);
  const double best = *std::min_element(sensitivity.begin(), sensitivity.end());
  for (double& v : sensitivity) v -= best;
}

// Step 2a's result: bits per Conv2d/Linear node id and per chosen point node id.
struct MixedBits {
  std::map<int, int> weight_bits, activation_bits;
};

// Step 2a: per-layer (weight bits, input bits) by the exact ILP of
// bit_allocation.h. A layer's weight sensitivity at w bits is the output
// divergence with that layer's weights quantized to w bits (the clip of step
// 2); a point's sensitivity at a bits the divergence with that point
// quantized to a bits (the clip of step 5's method, on a histogram of the
// model it is measured in), carried by its first reader so the sum stays
// additive. The rest of the model is float (kIsolated, kReconstructed) or
// quantized (kInContext, quantize.h). `reference` is the float model's logits on the
// calibration batch.
MixedBits allocate_mixed_bits(const Graph& folded, const ActivationPoints& points, const at::Tensor& calibration,
                              const at::Tensor& reference, const QuantizeOptions& o, const FloatStatistics& statistics,
                              QuantizeReport& report) {
  const bool mixed_activations = !o.candidate_activation_bits.empty();
  const bool in_context = o.sensitivity == MixedSensitivity::kInContext;
  const bool output_objective = o.weight_objective == WeightObjective::kOutput;
  // A layer's weights at `bits` (step 2's clip), dequantized; with `cov`
  // defined (kReconstructed: the layer's float-input covariances) after step
  // 5b's method, as the ILP's choice will be.
  auto candidate_weight = [&](const Node& n, int bits, const InputCovariances& cov = {}) {
    WeightQuant q = quantize_weight(n.param("weight"), n.optional_param("bias"), QuantRange{bits, true}, o,
                                    output_objective ? statistics.input_moments.at(n.id) : at::Tensor());
    if (cov.ff.defined())
      q.q = reconstruct_rounding(n.param("weight"), at::Tensor(), q.scale, q.range, q.q, cov, o.reconstruct).q;
    return q.dequantized();
  };
  // The points whose bits are chosen: those read by a Conv2d/Linear, but not the input.
  std::vector<int> chosen_points;  // node ids, in graph order
  for (const Node& n : folded.nodes) {
    if (n.op != Op::Conv2d && n.op != Op::Linear) continue;
    const int source = points.scale_source[static_cast<size_t>(n.inputs[0])];
    if (mixed_activations && source > 0 && std::find(chosen_points.begin(), chosen_points.end(), source) == chosen_points.end())
      chosen_points.push_back(source);
  }
  // The model the candidates are measured in: float, or quantized everywhere
  // (its activation clips from its own histograms), with the histograms of
  // the chosen points for their candidate clips.
  Graph base = folded;
  const std::vector<int>& observed = in_context ? points.points : chosen_points;
  std::vector<int> point_of_node(folded.nodes.size(), -1);
  for (size_t p = 0; p < observed.size(); ++p) point_of_node[static_cast<size_t>(observed[p])] = static_cast<int>(p);
  PointObserver histograms(point_of_node);
  histograms.histograms.resize(observed.size());
  std::vector<ContextQuantizer::Point> context_points(folded.nodes.size());
  if (in_context) {
    const int bits = context_weight_bits(o);
    for (const Node& n : folded.nodes)
      if (n.op == Op::Conv2d || n.op == Op::Linear) base.nodes[static_cast<size_t>(n.id)].params["weight"] = candidate_weight(n, bits);
  }
  if (in_context || mixed_activations) forward(base, calibration, &histograms);
  auto clip_of = [&](int id, int bits) {
    const size_t index = static_cast<size_t>(std::find(points.points.begin(), points.points.end(), id) - points.points.begin());
    const QuantRange range{bits, !points.is_unsigned[index]};
    const double clip = std::max(1e-12, histograms.histograms[static_cast<size_t>(point_of_node[static_cast<size_t>(id)])]
                                            .clip(range, o.activation_range));
    return ContextQuantizer::Point{range, clip / static_cast<double>(range.qmax())};
  };
  if (in_context)
    for (int id : points.points) context_points[static_cast<size_t>(id)] = clip_of(id, id == 0 ? 8 : o.activation_bits);
  ContextQuantizer quantizer(context_points);  // isolated: every scale 0, no point quantized
  auto divergence = [&](const Graph& g, Observer* observer) {
    return std::max(0.0, output_divergence(reference, forward(g, calibration, observer)));
  };

  Progress progress("mixed precision sensitivity",
                    static_cast<int64_t>(statistics.macs.size() * o.candidate_bits.size() +
                                         chosen_points.size() * o.candidate_activation_bits.size()),
                    o.quiet);
  int64_t done = 0;
  std::map<int, std::map<int, double>> point_sensitivity;  // point node id -> bits -> KL
  for (int id : chosen_points) {
    std::vector<double> values;
    for (int bits : o.candidate_activation_bits) {
      ContextQuantizer one(context_points);
      one.override_point(id, clip_of(id, bits));
      values.push_back(divergence(base, &one));
      progress.update(++done, folded.node(id).name);
    }
    if (in_context) to_nonincreasing_excess(values, o.candidate_activation_bits);
    for (size_t k = 0; k < values.size(); ++k) point_sensitivity[id][o.candidate_activation_bits[k]] = values[k];
  }
  std::vector<LayerBitOptions> layers;
  std::vector<MixedPrecisionLayer> rows;
  double parameters = 0;
  std::vector<int> ids;
  std::set<int> counted;  // points whose sensitivity a reader already carries
  for (const Node& n : folded.nodes) {
    if (n.op != Op::Conv2d && n.op != Op::Linear) continue;
    const int source = points.scale_source[static_cast<size_t>(n.inputs[0])];
    MixedPrecisionLayer row{n.name, 0, {}, {}, folded.node(source).name, 0, {}, {}, false};
    LayerBitOptions layer{n.name, {}, -1};
    if (point_sensitivity.count(source)) {
      layer.activation_group = source;
      row.candidate_activation_bits = o.candidate_activation_bits;
      row.activation_counted = counted.insert(source).second;
      for (int bits : o.candidate_activation_bits) row.activation_sensitivity.push_back(point_sensitivity[source][bits]);
    } else {  // the network input is 8 bits (what its readers read); other points keep --abits
      row.candidate_activation_bits = {source == 0 ? 8 : o.activation_bits};
      row.activation_sensitivity = {0.0};
    }
    parameters += static_cast<double>(n.param("weight").numel());
    InputCovariances cov;
    if (o.sensitivity == MixedSensitivity::kReconstructed)
      cov = input_covariances(n, statistics.inputs.at(n.id), statistics.inputs.at(n.id));
    for (int bits : o.candidate_bits) {
      Graph trial = base;
      trial.nodes[static_cast<size_t>(n.id)].params["weight"] = candidate_weight(n, bits, cov);
      row.candidate_bits.push_back(bits);
      row.sensitivity.push_back(divergence(trial, in_context ? &quantizer : nullptr));
      progress.update(++done, n.name);
    }
    if (in_context) to_nonincreasing_excess(row.sensitivity, row.candidate_bits);
    for (size_t w = 0; w < row.candidate_bits.size(); ++w) {
      for (size_t k = 0; k < row.candidate_activation_bits.size(); ++k) {
        BitOption option;
        option.weight_bits = row.candidate_bits[w], option.activation_bits = row.candidate_activation_bits[k];
        option.sensitivity = row.sensitivity[w] + (row.activation_counted ? row.activation_sensitivity[k] : 0.0);
        option.size_bits = static_cast<double>(n.param("weight").numel()) * option.weight_bits;
        option.bops = static_cast<double>(statistics.macs.at(n.id)) * option.weight_bits * option.activation_bits;
        layer.options.push_back(option);
      }
    }
    layers.push_back(layer);
    rows.push_back(row);
    ids.push_back(n.id);
  }
  progress.finish();
  BitBudget budget;
  if (o.size_budget_bits_per_weight > 0) budget.size_bits = o.size_budget_bits_per_weight * parameters;
  if (o.bops_budget > 0) budget.bops = o.bops_budget;
  if (o.bops_budget_weight_bits > 0) {  // uniform W x A, each layer's input bits counted as its options count them
    budget.bops = 0;
    for (size_t l = 0; l < layers.size(); ++l) {
      const int a = layers[l].activation_group >= 0 ? o.bops_budget_activation_bits : rows[l].candidate_activation_bits[0];
      budget.bops += static_cast<double>(statistics.macs.at(ids[l])) * o.bops_budget_weight_bits * a;
    }
  }
  report.bops_budget = std::isfinite(budget.bops) ? budget.bops : 0.0;
  const BitAllocation allocation = allocate_bits(layers, budget);
  MixedBits chosen;
  for (size_t l = 0; l < layers.size(); ++l) {
    const BitOption& pick = layers[l].options[static_cast<size_t>(allocation.choice[l])];
    chosen.weight_bits[ids[l]] = pick.weight_bits;
    if (layers[l].activation_group >= 0) chosen.activation_bits[layers[l].activation_group] = pick.activation_bits;
    rows[l].chosen_bits = pick.weight_bits;
    rows[l].chosen_activation_bits = pick.activation_bits;
    report.mixed_precision.push_back(rows[l]);
  }
  report.predicted_divergence = allocation.sensitivity;
  report.bops = allocation.bops;
  // The trade-off around the choice, under the same BOPs limit: half-bit steps
  // over the candidates' range (each an exact solve, milliseconds each).
  std::vector<double> per_weight;
  const auto [lowest, highest] = std::minmax_element(o.candidate_bits.begin(), o.candidate_bits.end());
  for (double b = *lowest; b <= *highest + 1e-9; b += 0.5) per_weight.push_back(b);
  std::vector<double> size_budgets;
  for (double b : per_weight) size_budgets.push_back(b * parameters);
  BitBudget other = budget;
  other.size_bits = INFINITY;
  const std::vector<ParetoRow> pareto = pareto_by_size(layers, size_budgets, other);
  for (size_t i = 0; i < pareto.size(); ++i)
    report.pareto.push_back({per_weight[i], pareto[i].feasible, pareto[i].allocation.sensitivity, pareto[i].allocation.bops});
  return chosen;
}

}  // namespace

BiasCorrection parse_bias_correction(const std::string& text, const std::string& option) {
  if (text == "none") return BiasCorrection::kNone;
  if (text == "weights") return BiasCorrection::kWeights;
  if (text == "full") return BiasCorrection::kFull;
  fail(option, "one of none, weights, full", "\"" + text + "\"");
}

WeightObjective parse_weight_objective(const std::string& text, const std::string& option) {
  if (text == "weight") return WeightObjective::kWeight;
  if (text == "output") return WeightObjective::kOutput;
  fail(option, "one of weight, output", "\"" + text + "\"");
}

const char* to_string(BiasCorrection mode) {
  switch (mode) {
    case BiasCorrection::kNone: return "none";
    case BiasCorrection::kWeights: return "weights";
    case BiasCorrection::kFull: return "full";
  }
  return "?";
}

const char* to_string(WeightObjective objective) {
  return objective == WeightObjective::kWeight ? "weight" : "output";
}

MixedSensitivity parse_mixed_sensitivity(const std::string& text, const std::string& option) {
  if (text == "isolated") return MixedSensitivity::kIsolated;
  if (text == "reconstructed") return MixedSensitivity::kReconstructed;
  if (text == "in-context") return MixedSensitivity::kInContext;
  fail(option, "one of isolated, reconstructed, in-context", "\"" + text + "\"");
}

const char* to_string(MixedSensitivity where) {
  switch (where) {
    case MixedSensitivity::kIsolated: return "isolated";
    case MixedSensitivity::kReconstructed: return "reconstructed";
    case MixedSensitivity::kInContext: return "in-context";
  }
  return "?";
}

std::vector<double> activation_sqnr_db(const QuantizedModel& model, const at::Tensor& calibration) {
  at::NoGradGuard no_grad;
  const ActivationPoints points = activation_points(model.graph);
  std::vector<int> point_of_node(model.graph.nodes.size(), -1);
  PointObserver observer(point_of_node);
  for (size_t p = 0; p < points.points.size(); ++p) {
    const int id = points.points[p];
    point_of_node[static_cast<size_t>(id)] = static_cast<int>(p);
    const auto it = model.activations.find(id);
    if (it == model.activations.end())
      fail("activation SQNR", "a scale at every quantization point", "none at " + model.graph.node(id).name);
    observer.ranges.push_back(it->second.range);
    observer.scales.push_back(it->second.scale);
  }
  observer.signal.assign(points.points.size(), 0.0);
  observer.noise.assign(points.points.size(), 0.0);
  forward(weight_quantized_graph(model), calibration, &observer);
  std::vector<double> sqnr;
  for (size_t p = 0; p < points.points.size(); ++p)
    sqnr.push_back(observer.noise[p] > 0 ? 10.0 * std::log10(observer.signal[p] / observer.noise[p]) : INFINITY);
  return sqnr;
}

int context_weight_bits(const QuantizeOptions& o) {
  if (o.candidate_bits.empty()) return o.weight_bits;
  std::vector<int> bits = o.candidate_bits;
  std::sort(bits.begin(), bits.end());
  const double target = o.size_budget_bits_per_weight > 0 ? o.size_budget_bits_per_weight
                        : o.bops_budget_weight_bits > 0   ? o.bops_budget_weight_bits
                                                          : bits[(bits.size() - 1) / 2];
  int nearest = bits.front();
  for (int b : bits)
    if (std::abs(b - target) < std::abs(nearest - target)) nearest = b;
  return nearest;
}

QuantizedModel quantize_model(const Graph& graph, const at::Tensor& calibration, const QuantizeOptions& options,
                              QuantizeReport& report) {
  QuantizeOptions o = options;
  o.weight_range.power_of_two = o.weight_range.power_of_two || o.power_of_two_scales;
  o.activation_range.power_of_two = o.activation_range.power_of_two || o.power_of_two_scales;
  validate(o, calibration);
  const auto start = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;
  report = QuantizeReport{};
  QuantizedModel model;
  model.graph = fold_batch_norms(graph);
  if (o.cross_layer_equalization)
    report.equalization = equalize_cross_layer(model.graph, o.equalization, folded_batch_norm_statistics(graph));
  const Graph& folded = model.graph;
  const ActivationPoints points = activation_points(folded);
  const bool output_objective = o.weight_objective == WeightObjective::kOutput;
  const bool reconstruct = o.reconstruct.method != Reconstruction::kNone;
  FloatStatistics statistics(output_objective, reconstruct);
  const at::Tensor float_logits = forward(folded, calibration, &statistics);

  // Step 2a: mixed precision.
  MixedBits mixed;
  if (has_bit_budget(o)) mixed = allocate_mixed_bits(folded, points, calibration, float_logits, o, statistics, report);
  const std::map<int, int>& mixed_bits = mixed.weight_bits;

  // Step 2: weights.
  for (const Node& n : folded.nodes) {
    if (n.op != Op::Conv2d && n.op != Op::Linear) continue;
    const bool first = points.scale_source[static_cast<size_t>(n.inputs[0])] == 0;
    const bool last = n.id == folded.output;
    const int bits = mixed_bits.count(n.id)                          ? mixed_bits.at(n.id)
                     : (first || last) && o.first_last_bits > 0 ? o.first_last_bits
                                                                : o.weight_bits;
    WeightQuant q = quantize_weight(n.param("weight"), n.optional_param("bias"), QuantRange{bits, true}, o,
                                    output_objective ? statistics.input_moments.at(n.id) : at::Tensor());
    LayerReport layer;
    // Step 2b: the lookup table, from the uniform grid just chosen.
    if (o.weight_lut && bits <= 4) {
      const at::Tensor& w = n.param("weight");
      const WeightLut fit = fit_weight_lut(w, q.scale, q.range, output_objective ? statistics.input_moments.at(n.id) : at::Tensor(),
                                           o.weight_range.power_of_two, o.lut_iterations);
      q.q = fit.q, q.scale = fit.scale, q.lut = fit.lut, q.codes = fit.codes;
      const at::Tensor max_abs = std::get<0>(w.abs().reshape({w.size(0), -1}).max(1)).clamp_min(1e-30);
      q.clip_ratio = (q.scale * q.lut.abs().max().to(at::kFloat) / max_abs).mean().item<double>();
      const at::Tensor table = q.lut.to(at::kInt).contiguous();
      layer.lut.assign(table.data_ptr<int>(), table.data_ptr<int>() + table.numel());
      layer.lut_objective_ratio = fit.objective_uniform > 0 ? fit.objective / fit.objective_uniform : 1.0;
      layer.lut_iterations = fit.iterations;
    }
    layer.name = n.name;
    layer.node = n.id;
    layer.bits = bits;
    layer.parameters = n.param("weight").numel();
    layer.clip_ratio = q.clip_ratio;
    layer.normalized_error = normalized_error(n.param("weight"), q.dequantized());
    report.layers.push_back(layer);
    model.weights.emplace(n.id, std::move(q));
  }
  // Step 3: residual tensors.
  for (int id : choose_residual_layers(report.layers, o)) add_residual(model.weights.at(id), folded.node(id).param("weight"));
  for (LayerReport& layer : report.layers) {
    const WeightQuant& q = model.weights.at(layer.node);
    layer.residual = q.residual.defined();
    layer.weight_sqnr_db = sqnr_db(folded.node(layer.node).param("weight"), q.dequantized());
    report.weight_bits_total += static_cast<double>(layer.parameters) * layer.bits * (layer.residual ? 2 : 1);
  }

  // The float graph with quantized weights (and, after step 4, corrected biases).
  Graph weight_quantized = weight_quantized_graph(model);
  // Step 4: bias correction.
  if (o.bias_correction != BiasCorrection::kNone) {
    BiasCorrector corrector(folded, model, weight_quantized);
    forward(weight_quantized, calibration, &corrector);
    for (LayerReport& layer : report.layers) layer.bias_shift = corrector.shifts[layer.node];
  }

  // Step 5: activation ranges.
  std::vector<int> point_of_node(folded.nodes.size(), -1);
  for (size_t p = 0; p < points.points.size(); ++p) point_of_node[static_cast<size_t>(points.points[p])] = static_cast<int>(p);
  PointObserver observer(point_of_node);
  observer.histograms.resize(points.points.size());
  forward(weight_quantized, calibration, &observer);
  for (size_t p = 0; p < points.points.size(); ++p) {
    const int id = points.points[p];
    const int bits = id == 0 ? 8 : mixed.activation_bits.count(id) ? mixed.activation_bits.at(id) : o.activation_bits;
    const QuantRange range{bits, !points.is_unsigned[p]};
    const double clip = std::max(1e-12, observer.histograms[p].clip(range, o.activation_range));
    model.activations[id] = ActivationQuant{range, clip / static_cast<double>(range.qmax())};
    report.points.push_back(PointReport{folded.node(id).name, id, range.describe(), model.activations[id].scale, clip, 0.0});
  }
  for (LayerReport& layer : report.layers) {
    const int source = points.scale_source[static_cast<size_t>(folded.node(layer.node).inputs[0])];
    const auto it = model.activations.find(source);
    if (it == model.activations.end()) continue;
    layer.input_point = folded.node(source).name;
    layer.input_bits = it->second.range.bits;
  }
  // Step 5b: reconstruction.
  if (reconstruct) {
    Graph simulated = simulated_graph(model);
    Reconstructor reconstructor(model, simulated, statistics.inputs, o.reconstruct, o.quiet);
    forward(simulated, calibration, &reconstructor);
    statistics.inputs.clear();
    for (LayerReport& layer : report.layers) {
      const RoundingResult& r = reconstructor.results.at(layer.node);
      const WeightQuant& q = model.weights.at(layer.node);
      layer.reconstruction_error_before = r.error_before;
      layer.reconstruction_error_after = r.error_after;
      layer.rounding_changed = r.changed;
      layer.weight_sqnr_db = sqnr_db(folded.node(layer.node).param("weight"), q.dequantized());
      weight_quantized.nodes[static_cast<size_t>(layer.node)].params["weight"] = q.dequantized();
    }
  }
  // Step 6: bias correction on the simulated model.
  if (o.bias_correction == BiasCorrection::kFull) {
    Graph simulated = simulated_graph(model);
    SimulatedBiasCorrector corrector(model, simulated, statistics.output_mean);
    forward(simulated, calibration, &corrector);
    for (LayerReport& layer : report.layers) layer.bias_shift += corrector.shifts[layer.node];
  }

  // Step 7: activation SQNR of the final model (the one saved), after every
  // step that changes its weights or biases.
  const std::vector<double> sqnr = activation_sqnr_db(model, calibration);
  for (size_t p = 0; p < points.points.size(); ++p) report.points[p].activation_sqnr_db = sqnr[p];

  model.config.weight_bits = o.weight_bits;
  model.config.activation_bits = o.activation_bits;
  model.config.first_last_bits = o.first_last_bits;
  model.config.per_channel = o.per_channel;
  model.config.weight_range = to_string(o.weight_range.method);
  model.config.activation_range = to_string(o.activation_range.method);
  model.config.percentile = o.activation_range.percentile;
  model.config.residual_layers = 0;
  for (const LayerReport& l : report.layers) model.config.residual_layers += l.residual ? 1 : 0;
  model.config.residual_budget = o.residual_budget;
  model.config.bias_correction = to_string(o.bias_correction);
  model.config.weight_objective = to_string(o.weight_objective);
  model.config.reconstruction = to_string(o.reconstruct.method);
  model.config.cross_layer_equalization = o.cross_layer_equalization;
  model.config.power_of_two_scales = o.weight_range.power_of_two && o.activation_range.power_of_two;
  model.config.weight_lut = o.weight_lut;
  model.config.calibration_count = calibration.size(0);
  model.config.input_size = {calibration.size(2), calibration.size(3)};
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return model;
}

}  // namespace dfq
