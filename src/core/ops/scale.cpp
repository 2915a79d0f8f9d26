// scale: x times a constant number (attribute factor), from aten::mul with a
// 0-dim constant operand (x * 0.5 traces so; see mul.cpp). A table op: exact on
// any <= 8-bit input, like the pointwise activations.
#include <ATen/TensorOperators.h>

#include "core/onnx_call.h"
#include "core/op_util.h"

namespace dfq {

extern const OpDef kScaleOp;
const OpDef kScaleOp = [] {
  OpDef d;
  d.name = "scale";
  d.role = QuantRole::kTable;
  d.validate = [](const Node& n) { require_reals(n, {"factor"}); };
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) { return in[0] * n.attrs.f("factor"); };
  d.describe = [](const Node& n) { return "x" + std::to_string(n.attrs.f("factor")); };
  d.output_unsigned = [](const Node& n, const std::vector<bool>& in) { return in[0] && n.attrs.f("factor") >= 0.0; };
  d.pointwise = [](const Node& n, double x) { return n.attrs.f("factor") * x; };
  d.export_onnx = [](OnnxCall& c) { c.add("Mul", {c.input(0), c.real(c.node().attrs.f("factor"))}); };
  return d;
}();

}  // namespace dfq
