// transpose: swaps attribute dims dim0 and dim1 (ShuffleNetV2's channel
// shuffle). Exact on integers.
#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kTransposeOp;  // defined at the end

namespace {

void export_onnx(OnnxCall& c) {
  const int64_t rank = static_cast<int64_t>(c.input_shape(0).size());
  int64_t d0 = c.node().attrs.i("dim0"), d1 = c.node().attrs.i("dim1");
  d0 = d0 < 0 ? d0 + rank : d0, d1 = d1 < 0 ? d1 + rank : d1;
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < rank; ++d) perm.push_back(d == d0 ? d1 : d == d1 ? d0 : d);
  c.add("Transpose", {c.input(0)}, {OnnxAttr::list("perm", perm)});
}

OpDef make() {
  OpDef d;
  d.name = "transpose";
  d.role = QuantRole::kExact;
  d.aten = {"aten::transpose"};
  d.import = [](ImportCall& c) {
    const int x = c.tensor(0);
    Node& node = c.add(kTransposeOp, {x});
    node.attrs.ints = {{"dim0", {c.int_arg(1)}}, {"dim1", {c.int_arg(2)}}};
    c.output_dims_transposed(x, c.int_arg(1), c.int_arg(2));
  };
  d.validate = [](const Node& n) { require_ints(n, {"dim0", "dim1"}, 1, -8); };
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) {
    return in[0].transpose(n.attrs.i("dim0"), n.attrs.i("dim1"));
  };
  d.describe = [](const Node& n) {
    return "dims " + std::to_string(n.attrs.i("dim0")) + "," + std::to_string(n.attrs.i("dim1"));
  };
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kTransposeOp = make();

}  // namespace dfq
