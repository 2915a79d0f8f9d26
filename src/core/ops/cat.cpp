// cat: concatenation of all inputs along attribute dim. A quantization point:
// every input requantized onto its scale (unsigned when all inputs are).
#include <ATen/ops/cat.h>

#include <algorithm>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kCatOp;  // defined at the end

namespace {

void export_onnx(OnnxCall& c) {
  std::vector<std::string> inputs;
  for (size_t k = 0; k < c.node().inputs.size(); ++k) inputs.push_back(c.input(k));
  c.add("Concat", inputs, {OnnxAttr::i("axis", c.node().attrs.i("dim"))});
}

OpDef make() {
  OpDef d;
  d.name = "cat";
  d.min_inputs = 1;
  d.max_inputs = -1;
  d.role = QuantRole::kConcat;
  d.aten = {"aten::cat", "aten::concat"};
  d.import = [](ImportCall& c) {
    const std::vector<int> inputs = c.tensor_list(0);
    c.add(kCatOp, inputs).attrs.ints["dim"] = {c.int_arg(1)};
  };
  d.validate = [](const Node& n) { require_ints(n, {"dim"}, 1, INT64_MIN); };
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) { return at::cat(in, n.attrs.i("dim")); };
  d.describe = [](const Node& n) { return "dim " + std::to_string(n.attrs.i("dim")); };
  d.output_unsigned = [](const Node&, const std::vector<bool>& in) {
    return std::all_of(in.begin(), in.end(), [](bool u) { return u; });
  };
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kCatOp = make();

}  // namespace dfq
