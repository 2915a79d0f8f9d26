// permute: reorders dimensions to attribute dims. Exact on integers.
#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kPermuteOp;  // defined at the end

namespace {

void export_onnx(OnnxCall& c) {
  const int64_t rank = static_cast<int64_t>(c.input_shape(0).size());
  std::vector<int64_t> perm = c.node().attrs.list("dims");
  for (int64_t& d : perm) d = d < 0 ? d + rank : d;
  c.add("Transpose", {c.input(0)}, {OnnxAttr::list("perm", perm)});
}

OpDef make() {
  OpDef d;
  d.name = "permute";
  d.role = QuantRole::kExact;
  d.aten = {"aten::permute"};
  d.import = [](ImportCall& c) {
    const int x = c.tensor(0);
    c.add(kPermuteOp, {x}).attrs.ints["dims"] = c.ints_arg(1);
    c.output_dims_permuted(x, c.ints_arg(1));
  };
  d.validate = [](const Node& n) { require_ints(n, {"dims"}, 0, -8); };
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) { return in[0].permute(n.attrs.list("dims")); };
  d.describe = [](const Node& n) { return "dims " + join(n.attrs.list("dims"), ","); };
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kPermuteOp = make();

}  // namespace dfq
