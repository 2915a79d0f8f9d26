// flatten: attributes start_dim, end_dim. Exact on integers.
#include <ATen/ops/flatten.h>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kFlattenOp;  // defined at the end

namespace {

// Flatten when the trailing dimensions all go; otherwise a Reshape whose
// leading size follows the batch.
void export_onnx(OnnxCall& c) {
  const int64_t rank = static_cast<int64_t>(c.input_shape(0).size());
  int64_t start = c.node().attrs.i("start_dim"), end = c.node().attrs.i("end_dim");
  start = start < 0 ? start + rank : start, end = end < 0 ? end + rank : end;
  if (end == rank - 1 && start >= 1) {
    if (start == 1) return void(c.add("Flatten", {c.input(0)}, {OnnxAttr::i("axis", 1)}));
  }
  if (start == 0) c.unsupported("flatten across the batch dimension");
  std::vector<int64_t> shape{0};  // Reshape's 0: copy the batch size
  const std::vector<int64_t> in = c.input_shape(0);
  for (int64_t d = 1; d < rank; ++d) {
    if (d <= start || d > end) shape.push_back(in[static_cast<size_t>(d)]);
    else shape.back() *= in[static_cast<size_t>(d)];
  }
  c.add("Reshape", {c.input(0), c.ints(shape)});
}

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
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kFlattenOp = make();

}  // namespace dfq
