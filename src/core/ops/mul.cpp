// mul: inputs[0] * inputs[1], elementwise with broadcasting (a squeeze-and-
// excitation gate N x C x 1 x 1 times its N x C x H x W input). A quantization
// point: the integer engine multiplies the integers and requantizes the
// product by s_a s_b / s_out (unsigned when both inputs are).
#include <ATen/ops/mul.h>

#include "core/import_call.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kMulOp;  // defined at the end
extern const OpDef kScaleOp;

namespace {

// aten::mul(a, b): two computed tensors, or one and a constant number (a 0-dim
// tensor when traced), which becomes a scale node.
void import(ImportCall& c) {
  if (c.is_tensor(0) && c.is_tensor(1)) {
    c.add(kMulOp, {c.tensor(0), c.tensor(1)});
    return;
  }
  const size_t x = c.is_tensor(0) ? 0 : 1;
  const at::Tensor factor = c.param(1 - x);
  if (!factor.defined() || factor.numel() != 1)
    c.unsupported("multiplying by a constant tensor (only a single number is supported)");
  c.add(kScaleOp, {c.tensor(x)}).attrs.reals["factor"] = factor.item<double>();
}

void export_onnx(OnnxCall& c) { c.add("Mul", {c.input(0), c.input(1)}); }

OpDef make() {
  OpDef d;
  d.name = "mul";
  d.min_inputs = d.max_inputs = 2;
  d.role = QuantRole::kMultiply;
  d.aten = {"aten::mul", "aten::mul_"};
  d.import = import;
  d.run = [](const Node&, const std::vector<at::Tensor>& in) { return at::mul(in[0], in[1]); };
  d.output_unsigned = [](const Node&, const std::vector<bool>& in) { return in[0] && in[1]; };
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kMulOp = make();

}  // namespace dfq
