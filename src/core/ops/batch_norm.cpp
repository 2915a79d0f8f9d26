// batch_norm: inference-mode batch norm. Params weight, bias, running_mean,
// running_var [C]; attribute eps. Synthesis matches its running statistics;
// before quantization core/passes.h folds it into the convolution before it
// (or turns it into a depthwise 1x1 convolution when there is none).
#include <ATen/ops/batch_norm.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/zeros_like.h>

#include <cstdio>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {
namespace {

// aten::batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn)
void import(ImportCall& c) {
  const int x = c.tensor(0);
  if (c.bool_arg(5)) c.unsupported("batch norm in training mode; trace the model after model.eval()");
  at::Tensor mean = c.param(3), var = c.param(4);
  if (!mean.defined() || !var.defined()) c.unsupported("batch norm without running statistics");
  at::Tensor weight = c.param(1), bias = c.param(2);
  if (!weight.defined()) weight = at::ones_like(mean);
  if (!bias.defined()) bias = at::zeros_like(mean);
  Node& node = c.add(kBatchNormOp, {x});
  node.attrs.reals["eps"] = c.real_arg(7);
  node.params = {{"weight", weight}, {"bias", bias}, {"running_mean", mean}, {"running_var", var}};
}

void validate(const Node& n) {
  const int64_t channels = n.param("weight").numel();
  for (const char* key : {"weight", "bias", "running_mean", "running_var"}) require_tensor(n, key, 1, channels);
  require_reals(n, {"eps"});
}

at::Tensor run(const Node& n, const std::vector<at::Tensor>& in) {
  return at::batch_norm(in[0], n.param("weight"), n.param("bias"), n.param("running_mean"), n.param("running_var"),
                        /*training=*/false, /*momentum=*/0.0, n.attrs.f("eps"), /*cudnn_enabled=*/true);
}

std::string describe(const Node& n) {
  char buffer[80];
  std::snprintf(buffer, sizeof buffer, "%lld ch eps=%g", static_cast<long long>(n.param("running_mean").size(0)),
                n.attrs.f("eps"));
  return buffer;
}

void export_onnx(OnnxCall& c) {
  c.add("BatchNormalization",
        {c.input(0), c.param("weight"), c.param("bias"), c.param("running_mean"), c.param("running_var")},
        {OnnxAttr::f("epsilon", c.node().attrs.f("eps"))});
}

OpDef make() {
  OpDef d;
  d.name = "batch_norm";
  d.role = QuantRole::kFolded;
  d.aten = {"aten::batch_norm"};
  d.import = import;
  d.validate = validate;
  d.run = run;
  d.describe = describe;
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kBatchNormOp = make();

}  // namespace dfq
