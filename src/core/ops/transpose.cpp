// transpose: swaps attribute dims dim0 and dim1 (ShuffleNetV2's channel
// shuffle). Exact on integers.
#include "core/import_call.h"
#include "core/op_util.h"

namespace dfq {

extern const OpDef kTransposeOp;  // defined at the end

namespace {

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
  return d;
}

}  // namespace

const OpDef kTransposeOp = make();

}  // namespace dfq
