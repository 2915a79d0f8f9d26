// pad: constant padding; attributes pads (torch order, last dimension first),
// value. Exact on integers when the value is 0.
#include <ATen/ops/constant_pad_nd.h>

#include "core/error.h"
#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kPadOp;  // defined at the end

namespace {

void import(ImportCall& c) {
  const int x = c.tensor(0);
  double value = 0.0;
  if (c.kind() == "aten::pad") {
    if (c.string_arg(2) != "constant") c.unsupported("only constant padding");
    value = c.optional_real(3, 0.0);
  } else {
    value = c.real_arg(2);
  }
  Node& node = c.add(kPadOp, {x});
  node.attrs.ints["pads"] = c.ints_arg(1);
  node.attrs.reals["value"] = value;
}

void validate(const Node& n) {
  require_reals(n, {"value"});
  if (n.attrs.list("pads").size() % 2 != 0)
    fail("graph node '" + n.name + "' attribute 'pads'", "an even number of integers",
         std::to_string(n.attrs.list("pads").size()));
}

// ATen lists (before, after) pairs from the last dimension backwards; ONNX
// all befores, then all afters, from the first dimension.
void export_onnx(OnnxCall& c) {
  const std::vector<int64_t>& torch_pads = c.node().attrs.list("pads");
  const size_t rank = c.input_shape(0).size(), padded = torch_pads.size() / 2;
  if (padded > rank) c.unsupported("padding more dimensions than the input has");
  std::vector<int64_t> pads(2 * rank, 0);
  for (size_t k = 0; k < padded; ++k) {
    pads[rank - 1 - k] = torch_pads[2 * k];
    pads[2 * rank - 1 - k] = torch_pads[2 * k + 1];
  }
  if (*std::min_element(pads.begin(), pads.end()) < 0) c.unsupported("negative padding (cropping)");
  c.add("Pad", {c.input(0), c.ints(pads), c.real(c.node().attrs.f("value"))}, {OnnxAttr::s("mode", "constant")});
}

OpDef make() {
  OpDef d;
  d.name = "pad";
  d.role = QuantRole::kExact;
  d.aten = {"aten::pad", "aten::constant_pad_nd"};
  d.import = import;
  d.validate = validate;
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) {
    return at::constant_pad_nd(in[0], n.attrs.list("pads"), n.attrs.f("value"));
  };
  d.describe = [](const Node& n) { return "pads " + join(n.attrs.list("pads"), ","); };
  d.integer_refusal = [](const Node& n) {
    return n.attrs.f("value") == 0.0 ? std::string()
                                     : "value " + std::to_string(n.attrs.f("value")) + " (only zero padding is exact)";
  };
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kPadOp = make();

}  // namespace dfq
