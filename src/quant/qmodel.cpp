#include "quant/qmodel.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/passes.h"

namespace dfq {

at::Tensor WeightQuant::dequantized(at::ScalarType type) const {
  std::vector<int64_t> shape(static_cast<size_t>(q.dim()), 1);
  shape[0] = q.size(0);
  const at::Tensor s = scale.to(type).reshape(shape);
  at::Tensor w = q.to(type) * s;
  if (residual.defined())
    w = w + residual.to(type) * (s / at::pow(2.0, residual_shift.to(type)).reshape(shape));
  return w;
}

ActivationPoints activation_points(const Graph& g) {
  const Readers readers = readers_of(g);
  ActivationPoints p;
  p.scale_source.assign(g.nodes.size(), -1);
  p.absorbed_clamp.assign(g.nodes.size(), -1);
  p.accumulator_input = accumulator_inputs(g, readers);
  std::vector<bool> into_add(g.nodes.size(), false);
  for (const Node& n : g.nodes)
    if (p.accumulator_input[static_cast<size_t>(n.id)] >= 0)
      into_add[static_cast<size_t>(n.inputs[static_cast<size_t>(p.accumulator_input[static_cast<size_t>(n.id)])])] = true;
  std::vector<int> point_index(g.nodes.size(), -1);
  auto add_point = [&](int id, bool is_unsigned) {
    point_index[static_cast<size_t>(id)] = static_cast<int>(p.points.size());
    p.points.push_back(id);
    p.is_unsigned.push_back(is_unsigned);
    p.scale_source[static_cast<size_t>(id)] = id;
  };
  // Whether each input is >= 0 (from the point whose scale it carries).
  auto inputs_unsigned = [&](const Node& n) {
    std::vector<bool> result;
    for (int in : n.inputs) {
      const int src = p.scale_source[static_cast<size_t>(in)];
      if (src < 0) fail("node '" + n.name + "'", "quantized inputs", "an input without a quantization point");
      result.push_back(p.is_unsigned[static_cast<size_t>(point_index[static_cast<size_t>(src)])]);
    }
    return result;
  };
  for (const Node& n : g.nodes) {
    const size_t id = static_cast<size_t>(n.id);
    const bool is_output = n.id == g.output;
    p.absorbed_clamp[id] = absorbed_clamp(g, readers, n.id);
    switch (n.op->role) {
      case QuantRole::kInput: add_point(n.id, false); break;
      case QuantRole::kFolded:
        fail("node '" + n.name + "' (batch_norm)", "a BatchNorm folded before quantization (core/passes.h)",
             "an unfolded one");
      case QuantRole::kWeighted:
      case QuantRole::kAdd:
        if (!is_output && p.absorbed_clamp[id] < 0 && !into_add[id]) add_point(n.id, false);
        break;
      case QuantRole::kClamp:
      case QuantRole::kConcat:
      case QuantRole::kAverage:
      case QuantRole::kTable:
      case QuantRole::kMultiply:
      case QuantRole::kResample: {
        if (is_output) break;
        // A clamp's sign is its own (its input may be a layer that applies it).
        const std::vector<bool> in =
            n.op->role == QuantRole::kClamp ? std::vector<bool>(n.inputs.size(), false) : inputs_unsigned(n);
        add_point(n.id, n.op->output_unsigned && n.op->output_unsigned(n, in));
        break;
      }
      case QuantRole::kExact: {
        const std::string refusal = n.op->integer_refusal ? n.op->integer_refusal(n) : std::string();
        if (!refusal.empty()) fail("node '" + n.name + "' (" + n.op->name + ")", "an op exact on integers", refusal);
        p.scale_source[id] = p.scale_source[static_cast<size_t>(n.inputs[0])];
        break;
      }
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
  const std::vector<int64_t>& size = model.config.input_size;
  if (!size.empty() && (size.size() != 2 || size[0] < 1 || size[1] < 1 || size[0] > 65536 || size[1] > 65536))
    fail("config input_size", "empty or two sizes in 1..65536", std::to_string(size.size()) + " values");
  if (!g.source_sha256.empty() &&
      (g.source_sha256.size() != 64 || g.source_sha256.find_first_not_of("0123456789abcdef") != std::string::npos))
    fail("graph source_sha256", "64 lowercase hex digits", std::to_string(g.source_sha256.size()) + " characters");
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
