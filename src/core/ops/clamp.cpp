// clamp: min(max(x, min), max), from ReLU6, hardtanh and clamp; attributes min,
// max (reals, +-inf when absent). A quantization point (unsigned when min >=
// 0), or absorbed into the requantization of the layer before it.
#include <ATen/ops/clamp.h>
#include <ATen/ops/clamp_max.h>
#include <ATen/ops/clamp_min.h>
#include <ATen/ops/relu.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {
namespace {

void import(ImportCall& c) {
  const std::string& k = c.kind();
  const double inf = std::numeric_limits<double>::infinity();
  double lo = 0.0, hi = 6.0;  // relu6
  if (k == "aten::hardtanh" || k == "aten::hardtanh_") lo = c.real_arg(1), hi = c.real_arg(2);
  if (k == "aten::clamp" || k == "aten::clamp_") lo = c.optional_real(1, -inf), hi = c.optional_real(2, inf);
  Node& node = c.add(kClampOp, {c.tensor(0)});
  node.attrs.reals["min"] = lo;
  node.attrs.reals["max"] = hi;
}

at::Tensor run(const Node& n, const std::vector<at::Tensor>& in) {
  const double lo = n.attrs.f("min"), hi = n.attrs.f("max");
  if (lo == 0.0 && std::isinf(hi)) return at::relu(in[0]);
  if (std::isinf(lo)) return at::clamp_max(in[0], hi);
  if (std::isinf(hi)) return at::clamp_min(in[0], lo);
  return at::clamp(in[0], lo, hi);
}

std::string describe(const Node& n) {
  char buffer[80];
  std::snprintf(buffer, sizeof buffer, "[%g, %g]", n.attrs.f("min"), n.attrs.f("max"));
  return buffer;
}

// Clip with an omitted bound for an infinite one.
void export_onnx(OnnxCall& c) {
  const double lo = c.node().attrs.f("min"), hi = c.node().attrs.f("max");
  c.add("Clip", {c.input(0), std::isinf(lo) ? std::string() : c.real(lo), std::isinf(hi) ? std::string() : c.real(hi)});
}

OpDef make() {
  OpDef d;
  d.name = "clamp";
  d.role = QuantRole::kClamp;
  d.aten = {"aten::relu6", "aten::relu6_", "aten::hardtanh", "aten::hardtanh_", "aten::clamp", "aten::clamp_"};
  d.import = import;
  d.validate = [](const Node& n) { require_reals(n, {"min", "max"}); };
  d.run = run;
  d.describe = describe;
  d.output_unsigned = [](const Node& n, const std::vector<bool>&) { return n.attrs.f("min") >= 0.0; };
  d.bounds = [](const Node& n) { return std::make_pair(n.attrs.f("min"), n.attrs.f("max")); };
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kClampOp = make();

}  // namespace dfq
