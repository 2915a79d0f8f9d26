#include "quant/qmodel.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/error.h"

namespace dfq {

at::Tensor WeightQuant::dequantized() const {
  std::vector<int64_t> shape(static_cast<size_t>(q.dim()), 1);
  shape[0] = q.size(0);
  const at::Tensor s = scale.reshape(shape);
  at::Tensor w = q.to(at::kFloat) * s;
  if (residual.defined())
    w = w + residual.to(at::kFloat) * (s / at::pow(2.0, residual_shift.to(at::kFloat)).reshape(shape));
  return w;
}

namespace {

bool is_activation(const Node& n) { return n.op == Op::ReLU || n.op == Op::Clamp; }

bool activation_is_unsigned(const Node& n) { return n.op == Op::ReLU || n.attrs.f("min") >= 0.0; }

}  // namespace

ActivationPoints activation_points(const Graph& g) {
  std::vector<int> readers(g.nodes.size(), 0), sole_reader(g.nodes.size(), -1);
  for (const Node& n : g.nodes)
    for (int in : n.inputs) {
      readers[static_cast<size_t>(in)]++;
      sole_reader[static_cast<size_t>(in)] = n.id;
    }
  readers[static_cast<size_t>(g.output)]++;
  ActivationPoints p;
  p.scale_source.assign(g.nodes.size(), -1);
  p.accumulator_input.assign(g.nodes.size(), -1);
  std::vector<bool> into_add(g.nodes.size(), false);
  for (const Node& n : g.nodes) {
    const size_t id = static_cast<size_t>(n.id);
    if (n.op != Op::Add || n.id == g.output) continue;
    if (readers[id] == 1 && sole_reader[id] == g.output && is_activation(g.node(g.output))) continue;  // a float tail
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const int in = n.inputs[k];
      const Node& producer = g.node(in);
      if ((producer.op == Op::Conv2d || producer.op == Op::Linear) && in != g.output &&
          readers[static_cast<size_t>(in)] == 1) {
        p.accumulator_input[id] = static_cast<int>(k);
        into_add[static_cast<size_t>(in)] = true;
        break;
      }
    }
  }
  auto add_point = [&](int id, bool is_unsigned) {
    p.points.push_back(id);
    p.is_unsigned.push_back(is_unsigned);
    p.scale_source[static_cast<size_t>(id)] = id;
  };
  for (const Node& n : g.nodes) {
    const size_t id = static_cast<size_t>(n.id);
    const bool fused_into_activation =
        readers[id] == 1 && sole_reader[id] >= 0 && is_activation(g.node(sole_reader[id]));
    switch (n.op) {
      case Op::Input: add_point(n.id, false); break;
      case Op::BatchNorm:
        fail("node '" + n.name + "' (batch_norm)", "a BatchNorm folded into the convolution before it",
             "one that reads " + std::string(op_name(g.node(n.inputs[0]).op)) + " (not supported by the quantizer)");
      case Op::Conv2d:
      case Op::Linear:
      case Op::Add:
        if (n.id != g.output && !fused_into_activation && !into_add[id]) add_point(n.id, false);
        break;
      case Op::ReLU:
      case Op::Clamp: {
        if (n.id == g.output) break;
        add_point(n.id, activation_is_unsigned(n));
        break;
      }
      case Op::AvgPool2d:
      case Op::AdaptiveAvgPool2d:
      case Op::Mean:
      case Op::Cat: {
        if (n.id == g.output) break;
        bool all_unsigned = true;
        for (int in : n.inputs) {
          const int src = p.scale_source[static_cast<size_t>(in)];
          if (src < 0) fail("node '" + n.name + "'", "quantized inputs", "an input without a quantization point");
          const auto it = std::find(p.points.begin(), p.points.end(), src);
          all_unsigned = all_unsigned && p.is_unsigned[static_cast<size_t>(it - p.points.begin())];
        }
        add_point(n.id, all_unsigned);
        break;
      }
      case Op::Pad:
        if (n.attrs.f("value") != 0.0)
          fail("node '" + n.name + "' (pad)", "zero padding (exact on integers)", "value " + std::to_string(n.attrs.f("value")));
        p.scale_source[id] = p.scale_source[static_cast<size_t>(n.inputs[0])];
        break;
      case Op::Slice:
      case Op::MaxPool2d:
      case Op::Flatten:
      case Op::Reshape:
        p.scale_source[id] = p.scale_source[static_cast<size_t>(n.inputs[0])];
        break;
    }
  }
  return p;
}

}  // namespace dfq
