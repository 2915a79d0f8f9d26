#include "quant/simulate.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "core/error.h"

namespace dfq {

at::Tensor accumulator_unit(const WeightQuant& w, double input_scale) {
  at::Tensor unit = w.scale.to(at::kDouble) * input_scale;
  if (w.residual.defined()) unit = unit / at::pow(2.0, w.residual_shift.to(at::kDouble));
  return unit;
}

at::Tensor integer_bias(const WeightQuant& w, double input_scale) {
  return round_half_away(w.bias.to(at::kDouble) / accumulator_unit(w, input_scale)).to(at::kLong);
}

at::Tensor bias_on_integer_grid(const WeightQuant& w, double input_scale, at::ScalarType type) {
  return (integer_bias(w, input_scale).to(at::kDouble) * accumulator_unit(w, input_scale)).to(type);
}

double weight_input_scale(const QuantizedModel& model, const ActivationPoints& points, int node) {
  const Node& n = model.graph.node(node);
  const int source = points.scale_source[static_cast<size_t>(n.inputs[0])];
  const auto input = model.activations.find(source);
  if (source < 0 || input == model.activations.end()) fail("quantized node '" + n.name + "'", "a quantized input", "none");
  return input->second.scale;
}

Graph simulated_graph(const QuantizedModel& model, at::ScalarType type) {
  const ActivationPoints points = activation_points(model.graph);
  Graph graph = model.graph;
  for (Node& node : graph.nodes)
    for (auto& [key, t] : node.params) t = t.to(type);
  for (const auto& [id, w] : model.weights) {
    Node& node = graph.nodes[static_cast<size_t>(id)];
    node.params["weight"] = w.dequantized(type);
    node.params["bias"] = bias_on_integer_grid(w, weight_input_scale(model, points, id), type);
  }
  return graph;
}

FakeQuantizer::FakeQuantizer(const QuantizedModel& model) : point_(model.graph.nodes.size(), nullptr) {
  for (const auto& [id, act] : model.activations) point_[static_cast<size_t>(id)] = &act;
}

void FakeQuantizer::after_node(const Node& node, const std::vector<at::Tensor>&, at::Tensor& output) {
  const ActivationQuant* q = point_[static_cast<size_t>(node.id)];
  // The scale as a double tensor: fake_quantize converts it to the value's type.
  if (q) output = fake_quantize(output, at::scalar_tensor(q->scale, at::kDouble), q->range);
}

SimulatedModel::SimulatedModel(const QuantizedModel& model)
    : model_(model), graph_(simulated_graph(model_, at::kDouble)) {}

// ATen's float64 convolutions run on one thread, so the batch is cut into one
// slice per thread instead (each image's result does not depend on the others).
at::Tensor SimulatedModel::forward(const at::Tensor& input) const {
  const at::Tensor x = input.to(at::kDouble);
  const int64_t slices = std::min<int64_t>(at::get_num_threads(), x.size(0));
  if (slices <= 1) {
    FakeQuantizer observer(model_);
    return dfq::forward(graph_, x, &observer).to(at::kFloat);
  }
  std::vector<at::Tensor> outputs(static_cast<size_t>(slices));
  const int64_t step = (x.size(0) + slices - 1) / slices;
  at::parallel_for(0, slices, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      FakeQuantizer observer(model_);
      const int64_t from = k * step, to = std::min(x.size(0), from + step);
      if (from < to) outputs[static_cast<size_t>(k)] = dfq::forward(graph_, x.slice(0, from, to), &observer);
    }
  });
  std::vector<at::Tensor> parts;
  for (const at::Tensor& t : outputs)
    if (t.defined()) parts.push_back(t);
  return at::cat(parts, 0).to(at::kFloat);
}

}  // namespace dfq
