// flatten: attributes start_dim, end_dim. Exact on integers.
#include <ATen/ops/flatten.h>

#include "core/import_call.h"
#include "core/op_util.h"

namespace dfq {

extern const OpDef kFlattenOp;  // defined at the end

namespace {

OpDef make() {
  OpDef d;
  d.name = "flatten";
  d.role = QuantRole::kExact;
  d.aten = {"aten::flatten"};
  d.import = [](ImportCall& c) {
    const int x = c.tensor(0);
    Node& node = c.add(kFlattenOp, {x});
    node.attrs.ints = {{"start_dim", {c.int_arg(1)}}, {"end_dim", {c.int_arg(2)}}};
  };
  d.validate = [](const Node& n) { require_ints(n, {"start_dim", "end_dim"}, 1, INT64_MIN); };
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) {
    return at::flatten(in[0], n.attrs.i("start_dim"), n.attrs.i("end_dim"));
  };
  d.describe = [](const Node& n) {
    return "dims " + std::to_string(n.attrs.i("start_dim")) + ".." + std::to_string(n.attrs.i("end_dim"));
  };
  return d;
}

}  // namespace

const OpDef kFlattenOp = make();

}  // namespace dfq
