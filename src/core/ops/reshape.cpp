// reshape: attributes shape (-1 allowed), shape_from_input and shape_divisor:
// entry i with shape_from_input[i] >= 0 is that dimension of the input at run
// time, floor-divided by shape_divisor[i] (x.view(x.size(0), -1) follows the
// batch; ShuffleNet's view(b, g, c // g, h, w)). Exact on integers.
#include "core/error.h"
#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kReshapeOp;  // defined at the end

namespace {

void import(ImportCall& c) {
  const int x = c.tensor(0);
  const std::vector<ShapeEntry> entries = c.shape_arg(1, x);
  std::vector<int64_t> shape, from_input, divisor;
  for (const ShapeEntry& e : entries) {
    shape.push_back(e.dim >= 0 ? -1 : e.value);
    from_input.push_back(e.dim);
    divisor.push_back(e.divisor);
  }
  Node& node = c.add(kReshapeOp, {x});
  node.attrs.ints = {{"shape", shape}, {"shape_from_input", from_input}, {"shape_divisor", divisor}};
}

void validate(const Node& n) {
  const size_t count = n.attrs.list("shape").size();
  for (const char* key : {"shape_from_input", "shape_divisor"})
    if (n.attrs.ints.count(key) && n.attrs.list(key).size() != count)
      fail("graph node '" + n.name + "' attribute '" + key + "'", std::to_string(count) + " integers",
           std::to_string(n.attrs.list(key).size()));
  n.attrs.list("shape_from_input");
  if (n.attrs.ints.count("shape_divisor")) require_ints(n, {"shape_divisor"}, 0, 1);
}

at::Tensor run(const Node& n, const std::vector<at::Tensor>& in) {
  const at::Tensor& x = in[0];
  std::vector<int64_t> shape = n.attrs.list("shape");
  const std::vector<int64_t>& from = n.attrs.list("shape_from_input");
  const bool divided = n.attrs.ints.count("shape_divisor") != 0;  // absent in artifacts before version 6
  for (size_t i = 0; i < shape.size(); ++i)
    if (from[i] >= 0) shape[i] = x.size(from[i]) / (divided ? n.attrs.list("shape_divisor")[i] : 1);
  return x.reshape(shape);
}

// The target shape as a tensor: constants, and sizes read from the input at
// run time (Shape, Gather, Div), so that it follows the batch.
void export_onnx(OnnxCall& c) {
  const Attrs& a = c.node().attrs;
  const std::vector<int64_t>& shape = a.list("shape");
  const std::vector<int64_t>& from = a.list("shape_from_input");
  const bool divided = a.ints.count("shape_divisor") != 0;
  std::vector<std::string> parts;
  std::string sizes;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (from[i] < 0) {
      parts.push_back(c.ints({shape[i]}));
      continue;
    }
    if (sizes.empty()) sizes = c.add("Shape", {c.input(0)});
    std::string part = c.add("Gather", {sizes, c.ints({from[i]})}, {OnnxAttr::i("axis", 0)});
    const int64_t divisor = divided ? a.list("shape_divisor")[i] : 1;
    if (divisor != 1) part = c.add("Div", {part, c.ints({divisor})});
    parts.push_back(part);
  }
  const std::string target = c.add("Concat", parts, {OnnxAttr::i("axis", 0)});
  c.add("Reshape", {c.input(0), target});
}

OpDef make() {
  OpDef d;
  d.name = "reshape";
  d.role = QuantRole::kExact;
  d.aten = {"aten::view", "aten::reshape"};
  d.import = import;
  d.validate = validate;
  d.run = run;
  d.describe = [](const Node& n) { return "shape " + join(n.attrs.list("shape"), ","); };
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kReshapeOp = make();

}  // namespace dfq
