// relu: max(x, 0). A quantization point (unsigned), or absorbed into the
// requantization of the layer before it (quant/qmodel.h).
#include <ATen/ops/relu.h>

#include <cmath>

#include "core/import_call.h"
#include "core/onnx_call.h"

namespace dfq {
namespace {

void export_onnx(OnnxCall& c) { c.add("Relu", {c.input(0)}); }

OpDef make() {
  OpDef d;
  d.name = "relu";
  d.role = QuantRole::kClamp;
  d.aten = {"aten::relu", "aten::relu_"};
  d.import = [](ImportCall& c) { c.add(kReluOp, {c.tensor(0)}); };
  d.run = [](const Node&, const std::vector<at::Tensor>& in) { return at::relu(in[0]); };
  d.output_unsigned = [](const Node&, const std::vector<bool>&) { return true; };
  d.bounds = [](const Node&) { return std::make_pair(0.0, double(INFINITY)); };
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kReluOp = make();

}  // namespace dfq
