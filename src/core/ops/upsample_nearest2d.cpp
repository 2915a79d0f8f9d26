// upsample_nearest2d: nearest-neighbour resize of N x C x H x W to attribute
// output_size or by scale_h, scale_w (F.interpolate(mode='nearest'),
// nn.Upsample). Exact on integers: every output copies one input value.
#include <ATen/ops/arange.h>
#include <ATen/ops/upsample_nearest2d.h>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kUpsampleNearest2dOp;  // defined at the end

namespace {

// aten::upsample_nearest2d(input, output_size?, scale_factors?) or
// (input, output_size, scales_h?, scales_w?)
void import(ImportCall& c) {
  const int x = c.tensor(0);
  Node& node = c.add(kUpsampleNearest2dOp, {x});
  import_upsample_size(c, node, 1, 2, /*vec_overload=*/c.arg_count() == 3);
}

at::Tensor run(const Node& n, const std::vector<at::Tensor>& in) {
  const std::vector<int64_t>& size = n.attrs.list("output_size");
  if (!size.empty()) return at::upsample_nearest2d(in[0], at::IntArrayRef(size), c10::nullopt);
  const std::vector<double> scales{n.attrs.f("scale_h"), n.attrs.f("scale_w")};
  return at::upsample_nearest2d(in[0], c10::nullopt, at::ArrayRef<double>(scales));
}

// The source row and column of every output position, taken from the float op
// itself run on planes of row and column indices (integers below 2^24 are
// exact in float), then gathered from the integers.
at::Tensor run_integer(const Node& n, const std::vector<at::Tensor>& in) {
  const at::Tensor& x = in[0];
  const int64_t h = x.size(2), w = x.size(3);
  const at::Tensor rows = at::arange(h, at::kFloat).reshape({1, 1, h, 1}).expand({1, 1, h, w}).contiguous();
  const at::Tensor cols = at::arange(w, at::kFloat).reshape({1, 1, 1, w}).expand({1, 1, h, w}).contiguous();
  const at::Tensor r = run(n, {rows}).select(0, 0).select(0, 0).select(1, 0).to(at::kLong);
  const at::Tensor c = run(n, {cols}).select(0, 0).select(0, 0).select(0, 0).to(at::kLong);
  return x.index_select(2, r).index_select(3, c);
}

// Resize to the static output size, batch and channels read at run time.
void export_onnx(OnnxCall& c) {
  const std::vector<int64_t> out = c.output_shape();
  const std::string sizes = c.add("Shape", {c.input(0)});
  const std::string nc = c.add("Slice", {sizes, c.ints({0}), c.ints({2})});
  const std::string target = c.add("Concat", {nc, c.ints({out[2], out[3]})}, {OnnxAttr::i("axis", 0)});
  c.add("Resize", {c.input(0), "", "", target},
        {OnnxAttr::s("mode", "nearest"), OnnxAttr::s("coordinate_transformation_mode", "asymmetric"),
         OnnxAttr::s("nearest_mode", "floor")});
}

OpDef make() {
  OpDef d;
  d.name = "upsample_nearest2d";
  d.role = QuantRole::kExact;
  d.aten = {"aten::upsample_nearest2d"};
  d.import = import;
  d.validate = validate_upsample;
  d.run = run;
  d.run_integer = run_integer;
  d.describe = describe_upsample;
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kUpsampleNearest2dOp = make();

}  // namespace dfq
