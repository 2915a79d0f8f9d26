#include "quant/qmodel.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

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

namespace {

std::string shape_text(const at::Tensor& t) {
  return t.defined() ? std::string(c10::toString(t.scalar_type())) + " " + c10::str(t.sizes()) : "none";
}

// A tensor of `type` and exactly `shape`.
void require_tensor(const std::string& subject, const at::Tensor& t, at::ScalarType type, at::IntArrayRef shape) {
  if (!t.defined() || t.scalar_type() != type || t.sizes() != shape)
    fail(subject, std::string(c10::toString(type)) + " " + c10::str(shape), shape_text(t));
}

void require_integers_in(const std::string& subject, const at::Tensor& t, int64_t lo, int64_t hi) {
  if (t.numel() == 0) return;
  const int64_t min = t.min().item<int64_t>(), max = t.max().item<int64_t>();
  if (min < lo || max > hi)
    fail(subject, "values in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]",
         "[" + std::to_string(min) + ", " + std::to_string(max) + "]");
}

void require_finite(const std::string& subject, const at::Tensor& t, bool positive) {
  const bool ok = at::isfinite(t).all().item<bool>() && (!positive || (t > 0).all().item<bool>());
  if (!ok) fail(subject, positive ? "finite values > 0" : "finite values", "other values");
}

void validate_weights(const Node& n, const WeightQuant& w) {
  const std::string subject = "quantized weights of node '" + n.name + "'";
  check_bits(w.range.bits, subject + " bits");
  if (!w.range.is_signed) fail(subject, "signed integers", "unsigned");
  const at::Tensor& weight = n.param("weight");
  require_tensor(subject + " (integers)", w.q, at::kChar, weight.sizes());
  const int64_t channels = w.q.size(0);
  if (w.lut.defined()) {
    // q = lut[codes]: codes within range.bits bits, levels int8 in [-127, 127].
    if (w.range.bits > 4) fail(subject + " lookup table", "codes of 4 bits or fewer", std::to_string(w.range.bits) + " bits");
    require_tensor(subject + " (lookup table)", w.lut, at::kChar, {int64_t{1} << w.range.bits});
    require_integers_in(subject + " (lookup table)", w.lut, -127, 127);
    require_tensor(subject + " (codes)", w.codes, at::kByte, weight.sizes());
    require_integers_in(subject + " (codes)", w.codes, 0, (int64_t{1} << w.range.bits) - 1);
    require_integers_in(subject + " (integers)", w.q, -127, 127);
    if (w.residual.defined()) fail(subject, "no residual tensor with a lookup table", "a residual tensor");
  } else {
    if (w.codes.defined()) fail(subject, "codes only with a lookup table", "codes without one");
    require_integers_in(subject + " (integers)", w.q, w.range.qmin(), w.range.qmax());
  }
  require_tensor(subject + " (scales)", w.scale, at::kFloat, {channels});
  require_finite(subject + " (scales)", w.scale, /*positive=*/true);
  require_tensor(subject + " (bias)", w.bias, at::kFloat, {channels});
  require_finite(subject + " (bias)", w.bias, /*positive=*/false);
  if (w.residual.defined()) {
    require_tensor(subject + " (residual)", w.residual, at::kChar, weight.sizes());
    require_integers_in(subject + " (residual)", w.residual, w.range.qmin(), w.range.qmax());
    require_tensor(subject + " (residual shifts)", w.residual_shift, at::kLong, {channels});
    require_integers_in(subject + " (residual shifts)", w.residual_shift, 1, w.range.bits + 1);
  } else if (w.residual_shift.defined()) {
    fail(subject, "residual shifts only with a residual tensor", "shifts without one");
  }
  if (!std::isfinite(w.clip_ratio)) fail(subject + " clip ratio", "a finite number", std::to_string(w.clip_ratio));
}

}  // namespace

void validate(const QuantizedModel& model) {
  const Graph& g = model.graph;
  validate(g);
  for (const auto& [id, w] : model.weights)
    if (id < 0 || id >= static_cast<int>(g.nodes.size()) ||
        (g.node(id).op != Op::Conv2d && g.node(id).op != Op::Linear))
      fail("quantized weights of node id " + std::to_string(id), "a Conv2d or Linear node",
           id >= 0 && id < static_cast<int>(g.nodes.size()) ? std::string(op_name(g.node(id).op)) : "no such node");
  for (const Node& n : g.nodes) {
    if (n.op != Op::Conv2d && n.op != Op::Linear) continue;
    const auto it = model.weights.find(n.id);
    if (it == model.weights.end()) fail("node '" + n.name + "'", "quantized weights", "none");
    validate_weights(n, it->second);
  }
  const ActivationPoints points = activation_points(g);
  for (const auto& [id, a] : model.activations)
    if (id < 0 || id >= static_cast<int>(g.nodes.size()) || points.scale_source[static_cast<size_t>(id)] != id)
      fail("activation quantization of node id " + std::to_string(id), "a quantization point (qmodel.h)",
           id >= 0 && id < static_cast<int>(g.nodes.size()) ? "node '" + g.node(id).name + "', which is none"
                                                            : "no such node");
  for (size_t p = 0; p < points.points.size(); ++p) {
    const Node& n = g.node(points.points[p]);
    const std::string subject = "activation quantization of node '" + n.name + "'";
    const auto it = model.activations.find(n.id);
    if (it == model.activations.end()) fail(subject, "an entry (the node is a quantization point)", "none");
    const ActivationQuant& a = it->second;
    check_bits(a.range.bits, subject + " bits");
    if (a.range.is_signed == points.is_unsigned[p])
      fail(subject, points.is_unsigned[p] ? "unsigned (the value is >= 0)" : "signed", a.range.is_signed ? "signed" : "unsigned");
    if (n.id == 0 && a.range.bits != 8) fail(subject, "8 bits at the input", std::to_string(a.range.bits));
    // The simulated engine computes in float: the scale must stay finite and non-zero there too.
    if (!std::isfinite(a.scale) || !(a.scale >= std::numeric_limits<float>::min()) ||
        !(a.scale <= std::numeric_limits<float>::max()))
      fail(subject + " scale", "a finite number > 0 within float's normal range", c10::str(a.scale));
  }
  // The engines put each bias on its layer's accumulator grid, round(bias / unit)
  // with unit = input scale * weight scale (* 2^-shift), and add it in int64:
  // it must be a finite number well inside that range (2^52: exact in double too).
  for (const auto& [id, w] : model.weights) {
    const Node& n = g.node(id);
    const int source = points.scale_source[static_cast<size_t>(n.inputs[0])];
    if (source < 0) fail("node '" + n.name + "'", "a quantized input", "an input without a quantization point");
    at::Tensor unit = w.scale.to(at::kDouble) * model.activations.at(source).scale;
    if (w.residual.defined()) unit = unit / at::pow(2.0, w.residual_shift.to(at::kDouble));
    const at::Tensor units = (w.bias.to(at::kDouble) / unit).abs();
    if (!(at::isfinite(units).all().item<bool>() && units.max().item<double>() <= std::ldexp(1.0, 52)))
      fail("quantized bias of node '" + n.name + "'", "at most 2^52 accumulator units (bias / (input scale * weight scale))",
           std::to_string(units.max().item<double>()));
  }
}

}  // namespace dfq
