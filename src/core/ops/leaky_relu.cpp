// leaky_relu: x for x >= 0, slope * x otherwise (attribute slope; YOLO-style
// detectors' backbones). A table op: exact on any <= 8-bit input.
#include <ATen/ops/leaky_relu.h>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kLeakyReluOp;  // defined at the end

namespace {

void export_onnx(OnnxCall& c) {
  c.add("LeakyRelu", {c.input(0)}, {OnnxAttr::f("alpha", c.node().attrs.f("slope"))});
}

OpDef make() {
  OpDef d;
  d.name = "leaky_relu";
  d.role = QuantRole::kTable;
  d.aten = {"aten::leaky_relu", "aten::leaky_relu_"};
  d.import = [](ImportCall& c) {
    const int x = c.tensor(0);
    c.add(kLeakyReluOp, {x}).attrs.reals["slope"] = c.arg_count() > 1 ? c.real_arg(1) : 0.01;
  };
  d.validate = [](const Node& n) { require_reals(n, {"slope"}); };
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) { return at::leaky_relu(in[0], n.attrs.f("slope")); };
  d.describe = [](const Node& n) { return "slope " + std::to_string(n.attrs.f("slope")); };
  d.output_unsigned = [](const Node& n, const std::vector<bool>& in) { return in[0] && n.attrs.f("slope") >= 0.0; };
  d.pointwise = [](const Node& n, double x) { return x >= 0.0 ? x : n.attrs.f("slope") * x; };
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kLeakyReluOp = make();

}  // namespace dfq
