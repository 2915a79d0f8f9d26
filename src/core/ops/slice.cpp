// slice: x.slice(dim, start, end, step), step >= 1. Exact on integers. Also
// the pieces of aten::split (see chunk.cpp for aten::chunk).
#include <limits>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kSliceOp;  // defined at the end

namespace {

// aten::slice(self, dim, start, end, step)
void import(ImportCall& c) {
  const int x = c.tensor(0);
  const int64_t dim = c.int_arg(1);
  const int64_t start = c.is_none(2) ? 0 : c.int_arg(2);
  const int64_t end = c.is_none(3) ? std::numeric_limits<int64_t>::max() : c.int_arg(3);
  const int64_t step = c.int_arg(4);
  if (step < 1) c.unsupported("slice step must be positive");
  if (start == 0 && end == std::numeric_limits<int64_t>::max() && step == 1) return c.alias(0);  // x[:, :]
  Node& node = c.add(kSliceOp, {x});
  node.attrs.ints = {{"dim", {dim}}, {"start", {start}}, {"end", {end}}, {"step", {step}}};
}

// aten::split(self, split_size, dim) and aten::split_with_sizes(self, sizes,
// dim): one slice per piece; how many pieces the traced call produced is known
// from the prim::ListUnpack that reads it.
void import_split(ImportCall& c) {
  const int x = c.tensor(0);
  const std::vector<int64_t> sizes = c.ints_arg(1);
  const int64_t dim = c.int_arg(2);
  const size_t pieces = c.unpacked_count();
  if (pieces == 0) c.unsupported("split whose pieces are not unpacked into separate values");
  if (c.kind() != "aten::split" || sizes.size() != 1) {
    if (sizes.size() != pieces) c.unsupported("split sizes that do not match the unpacked pieces");
  }
  std::vector<int> nodes;
  int64_t start = 0;
  for (size_t k = 0; k < pieces; ++k) {
    const int64_t size = sizes.size() == 1 ? sizes[0] : sizes[k];
    const int64_t end = k + 1 == pieces && sizes.size() == 1 ? std::numeric_limits<int64_t>::max() : start + size;
    Node& node = c.add_part(kSliceOp, {x});
    node.attrs.ints = {{"dim", {dim}}, {"start", {start}}, {"end", {end}}, {"step", {1}}};
    nodes.push_back(node.id);
    start += size;
  }
  c.output_list(nodes);
}

void import_any(ImportCall& c) {
  if (c.kind() == "aten::slice") import(c);
  else import_split(c);
}

void validate(const Node& n) {
  require_ints(n, {"dim", "start", "end"}, 1, INT64_MIN);
  require_ints(n, {"step"}, 1, 1);
}

std::string describe(const Node& n) {
  const Attrs& a = n.attrs;
  return "dim " + std::to_string(a.i("dim")) + " [" + std::to_string(a.i("start")) + ":" +
         (a.i("end") == INT64_MAX ? std::string() : std::to_string(a.i("end"))) + ":" + std::to_string(a.i("step")) + "]";
}

void export_onnx(OnnxCall& c) {
  const Attrs& a = c.node().attrs;
  int64_t dim = a.i("dim");
  dim = dim < 0 ? dim + static_cast<int64_t>(c.input_shape(0).size()) : dim;
  if (dim == 0) c.unsupported("slice along the batch dimension");
  c.add("Slice", {c.input(0), c.ints({a.i("start")}), c.ints({a.i("end")}), c.ints({dim}), c.ints({a.i("step")})});
}

OpDef make() {
  OpDef d;
  d.name = "slice";
  d.role = QuantRole::kExact;
  d.aten = {"aten::slice", "aten::split", "aten::split_with_sizes"};
  d.import = import_any;
  d.validate = validate;
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) {
    const Attrs& a = n.attrs;
    return in[0].slice(a.i("dim"), a.i("start"), a.i("end"), a.i("step"));
  };
  d.describe = describe;
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kSliceOp = make();

}  // namespace dfq
