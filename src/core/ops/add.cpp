// add: inputs[0] + alpha * inputs[1] (attribute alpha). A quantization point
// where both branches are rescaled and rounded once; a convolution read only by
// the add arrives as its accumulator (quant/qmodel.h).
#include <ATen/ops/add.h>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {
namespace {

void import(ImportCall& c) {
  if (!c.is_tensor(1)) c.unsupported("adding a constant to a tensor");
  const int a = c.tensor(0), b = c.tensor(1);
  const double alpha = c.arg_count() > 2 ? c.real_arg(2) : 1.0;
  c.add(kAddOp, {a, b}).attrs.reals["alpha"] = alpha;
}

at::Tensor run(const Node& n, const std::vector<at::Tensor>& in) {
  const double alpha = n.attrs.f("alpha");
  return alpha == 1.0 ? at::add(in[0], in[1]) : at::add(in[0], in[1], alpha);
}

void export_onnx(OnnxCall& c) {
  const double alpha = c.node().attrs.f("alpha");
  const std::string b = alpha == 1.0 ? c.input(1) : c.add("Mul", {c.input(1), c.real(alpha)});
  c.add("Add", {c.input(0), b});
}

OpDef make() {
  OpDef d;
  d.name = "add";
  d.min_inputs = d.max_inputs = 2;
  d.role = QuantRole::kAdd;
  d.aten = {"aten::add", "aten::add_"};
  d.import = import;
  d.validate = [](const Node& n) { require_reals(n, {"alpha"}); };
  d.run = run;
  d.describe = [](const Node& n) {
    return n.attrs.f("alpha") == 1.0 ? std::string() : "alpha=" + std::to_string(n.attrs.f("alpha"));
  };
  d.absorbs_clamp = true;
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kAddOp = make();

}  // namespace dfq
