#include "quant/simulate.h"

#include <ATen/ATen.h>

#include "core/error.h"
#include "core/execute.h"

namespace dfq {

at::Tensor bias_on_integer_grid(const WeightQuant& w, double input_scale) {
  at::Tensor unit = w.scale.to(at::kDouble) * input_scale;
  if (w.residual.defined()) unit = unit / at::pow(2.0, w.residual_shift.to(at::kDouble));
  return (round_half_away(w.bias.to(at::kDouble) / unit) * unit).to(at::kFloat);
}

namespace {

class FakeQuantizer : public Observer {
 public:
  explicit FakeQuantizer(const std::vector<const ActivationQuant*>& point) : point_(point) {}
  void after_node(const Node& node, const std::vector<at::Tensor>&, at::Tensor& output) override {
    const ActivationQuant* q = point_[static_cast<size_t>(node.id)];
    if (q) output = fake_quantize(output, at::scalar_tensor(q->scale), q->range);
  }

 private:
  const std::vector<const ActivationQuant*>& point_;
};

}  // namespace

SimulatedModel::SimulatedModel(const QuantizedModel& model) : graph_(model.graph), model_(model) {
  const ActivationPoints points = activation_points(model_.graph);
  point_.assign(graph_.nodes.size(), nullptr);
  for (const auto& [id, act] : model_.activations) point_[static_cast<size_t>(id)] = &act;
  for (const auto& [id, w] : model_.weights) {
    Node& node = graph_.nodes[static_cast<size_t>(id)];
    const int source = points.scale_source[static_cast<size_t>(node.inputs[0])];
    const auto input = model_.activations.find(source);
    if (source < 0 || input == model_.activations.end())
      fail("quantized node '" + node.name + "'", "a quantized input", "none");
    node.params["weight"] = w.dequantized();
    node.params["bias"] = bias_on_integer_grid(w, input->second.scale);
  }
}

at::Tensor SimulatedModel::forward(const at::Tensor& input) const {
  FakeQuantizer observer(point_);
  return dfq::forward(graph_, input, &observer);
}

}  // namespace dfq
