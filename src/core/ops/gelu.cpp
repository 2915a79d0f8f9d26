// gelu: x * Phi(x) (attribute approximate: 0 exact erf form, 1 tanh form, as
// aten::gelu's approximate='none'|'tanh'). A table op like hardswish.
#include <ATen/ops/gelu.h>

#include <cmath>

#include "core/import_call.h"
#include "core/onnx_call.h"
#include "core/op_util.h"

namespace dfq {

extern const OpDef kGeluOp;  // defined at the end

namespace {

void import(ImportCall& c) {
  const int x = c.tensor(0);
  const std::string approximate = c.arg_count() > 1 ? c.string_arg(1) : "none";
  if (approximate != "none" && approximate != "tanh") c.unsupported("gelu approximation '" + approximate + "'");
  c.add(kGeluOp, {x}).attrs.ints["approximate"] = {approximate == "tanh" ? 1 : 0};
}

double f(const Node& n, double x) {
  if (n.attrs.i("approximate") == 0) return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  const double k = std::sqrt(2.0 / std::acos(-1.0));
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

// Gelu from opset 20; before, its formula: 0.5 x (1 + erf(x / sqrt 2)), or
// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
void export_onnx(OnnxCall& c) {
  const bool tanh_form = c.node().attrs.i("approximate") != 0;
  const std::string x = c.input(0);
  if (c.opset() >= 20) return void(c.add("Gelu", {x}, {OnnxAttr::s("approximate", tanh_form ? "tanh" : "none")}));
  std::string inner;
  if (!tanh_form) {
    inner = c.add("Erf", {c.add("Mul", {x, c.real(1.0 / std::sqrt(2.0))})});
  } else {
    const std::string cube = c.add("Mul", {c.add("Mul", {x, x}), x});
    const std::string sum = c.add("Add", {x, c.add("Mul", {cube, c.real(0.044715)})});
    inner = c.add("Tanh", {c.add("Mul", {sum, c.real(std::sqrt(2.0 / std::acos(-1.0)))})});
  }
  const std::string half_x = c.add("Mul", {x, c.real(0.5)});
  c.add("Mul", {half_x, c.add("Add", {inner, c.real(1.0)})});
}

OpDef make() {
  OpDef d;
  d.name = "gelu";
  d.role = QuantRole::kTable;
  d.aten = {"aten::gelu", "aten::gelu_"};
  d.import = import;
  d.validate = [](const Node& n) { require_ints(n, {"approximate"}, 1, 0); };
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) {
    return at::gelu(in[0], n.attrs.i("approximate") == 0 ? "none" : "tanh");
  };
  d.describe = [](const Node& n) { return std::string(n.attrs.i("approximate") == 0 ? "erf" : "tanh"); };
  d.pointwise = f;
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kGeluOp = make();

}  // namespace dfq
