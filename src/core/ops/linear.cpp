// linear: params weight [O, I], optional bias [O]; from aten::linear and
// aten::addmm (beta * bias + alpha * x @ W^T, folded into the parameters).
// Quantized like conv2d.
#include <ATen/TensorOperators.h>
#include <ATen/ops/linear.h>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {
namespace {

void add_linear(ImportCall& c, int x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!weight.defined() || weight.dim() != 2) c.unsupported("linear weight must be a constant matrix");
  Node& node = c.add(kLinearOp, {x});
  node.params["weight"] = weight.contiguous();
  if (bias.defined()) node.params["bias"] = bias.contiguous();
}

void import(ImportCall& c) {
  if (c.kind() == "aten::linear") return add_linear(c, c.tensor(0), c.param(1), c.param(2));
  // aten::addmm(bias, x, W^T, beta, alpha)
  const int x = c.tensor(1);
  const at::Tensor weight_t = c.param(2);
  if (!weight_t.defined() || weight_t.dim() != 2) c.unsupported("addmm needs a constant matrix");
  const double beta = c.arg_count() > 3 ? c.real_arg(3) : 1.0;
  const double alpha = c.arg_count() > 4 ? c.real_arg(4) : 1.0;
  const at::Tensor bias = c.param(0);
  add_linear(c, x, weight_t.t().contiguous() * alpha, bias.defined() ? bias * beta : bias);
}

void validate(const Node& n) {
  require_tensor(n, "weight", 2, -1);
  if (n.has_param("bias")) require_tensor(n, "bias", 1, n.param("weight").size(0));
}

// Gemm on a matrix; on more dimensions, MatMul with the transposed weight.
void export_onnx(OnnxCall& c) {
  if (c.input_shape(0).size() == 2) {
    c.add("Gemm", {c.input(0), c.param("weight"), c.param("bias")}, {OnnxAttr::i("transB", 1)});
    return;
  }
  const std::string t = c.add("Transpose", {c.param("weight")}, {OnnxAttr::list("perm", {1, 0})});
  const std::string y = c.add("MatMul", {c.input(0), t});
  const std::string bias = c.param("bias");
  if (!bias.empty()) c.add("Add", {y, bias});
}

OpDef make() {
  OpDef d;
  d.name = "linear";
  d.role = QuantRole::kWeighted;
  d.aten = {"aten::linear", "aten::addmm"};
  d.import = import;
  d.validate = validate;
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) {
    return at::linear(in[0], n.param("weight"), n.optional_param("bias"));
  };
  d.describe = [](const Node& n) {
    const at::Tensor& w = n.param("weight");
    return std::to_string(w.size(1)) + "->" + std::to_string(w.size(0));
  };
  d.absorbs_clamp = true;
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kLinearOp = make();

}  // namespace dfq
