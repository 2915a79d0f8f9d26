// upsample_bilinear2d: bilinear resize of N x C x H x W to attribute
// output_size or by scale_h, scale_w, with attribute align_corners
// (F.interpolate(mode='bilinear'), segmentation heads). A quantization point:
// the integer engine weighs each output's four inputs with fixed-point weights
// from resample() (ATen's source coordinates) and requantizes the sum.
#include <ATen/ops/upsample_bilinear2d.h>

#include <algorithm>
#include <cmath>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kUpsampleBilinear2dOp;  // defined at the end

namespace {

// aten::upsample_bilinear2d(input, output_size?, align_corners, scale_factors?)
// or (input, output_size, align_corners, scales_h?, scales_w?)
void import(ImportCall& c) {
  const int x = c.tensor(0);
  const bool align_corners = c.bool_arg(2);
  Node& node = c.add(kUpsampleBilinear2dOp, {x});
  import_upsample_size(c, node, 1, 3, /*vec_overload=*/c.arg_count() == 4);
  node.attrs.ints["align_corners"] = {align_corners};
}

at::Tensor run(const Node& n, const std::vector<at::Tensor>& in) {
  const bool align = n.attrs.i("align_corners") != 0;
  const std::vector<int64_t>& size = n.attrs.list("output_size");
  if (!size.empty()) return at::upsample_bilinear2d(in[0], at::IntArrayRef(size), align, c10::nullopt);
  const std::vector<double> scales{n.attrs.f("scale_h"), n.attrs.f("scale_w")};
  return at::upsample_bilinear2d(in[0], c10::nullopt, align, at::ArrayRef<double>(scales));
}

// ATen's area_pixel_compute_source_index for one axis.
ResampleAxis axis(int64_t in, int64_t out, bool align_corners, double scale_factor) {
  double scale = 0.0;
  if (align_corners) scale = out > 1 ? static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
  else scale = scale_factor > 0.0 ? 1.0 / scale_factor : static_cast<double>(in) / static_cast<double>(out);
  ResampleAxis a;
  for (int64_t i = 0; i < out; ++i) {
    const double src = align_corners ? scale * static_cast<double>(i)
                                     : std::max(scale * (static_cast<double>(i) + 0.5) - 0.5, 0.0);
    const int64_t i0 = std::min(static_cast<int64_t>(src), in - 1);
    a.i0.push_back(i0);
    a.i1.push_back(std::min(i0 + 1, in - 1));
    a.lambda.push_back(src - static_cast<double>(i0));
  }
  return a;
}

void resample(const Node& n, int64_t h, int64_t w, ResampleAxis& rows, ResampleAxis& cols) {
  const auto [out_h, out_w] = upsample_size(n, h, w);
  const bool align = n.attrs.i("align_corners") != 0;
  const bool sized = !n.attrs.list("output_size").empty();
  rows = axis(h, out_h, align, sized ? 0.0 : n.attrs.f("scale_h"));
  cols = axis(w, out_w, align, sized ? 0.0 : n.attrs.f("scale_w"));
}

// Resize (linear) to the static output size; ATen's scale-factor form maps
// coordinates by the factor, not by the size ratio: refused unless they agree.
void export_onnx(OnnxCall& c) {
  const Node& n = c.node();
  const std::vector<int64_t> in = c.input_shape(0), out = c.output_shape();
  const bool align = n.attrs.i("align_corners") != 0;
  if (!align && n.attrs.list("output_size").empty() &&
      (in[2] * n.attrs.f("scale_h") != double(out[2]) || in[3] * n.attrs.f("scale_w") != double(out[3])))
    c.unsupported("bilinear upsampling by a factor that does not give a whole output size");
  const std::string sizes = c.add("Shape", {c.input(0)});
  const std::string nc = c.add("Slice", {sizes, c.ints({0}), c.ints({2})});
  const std::string target = c.add("Concat", {nc, c.ints({out[2], out[3]})}, {OnnxAttr::i("axis", 0)});
  c.add("Resize", {c.input(0), "", "", target},
        {OnnxAttr::s("mode", "linear"),
         OnnxAttr::s("coordinate_transformation_mode", align ? "align_corners" : "pytorch_half_pixel")});
}

OpDef make() {
  OpDef d;
  d.name = "upsample_bilinear2d";
  d.role = QuantRole::kResample;
  d.aten = {"aten::upsample_bilinear2d"};
  d.import = import;
  d.validate = [](const Node& n) {
    validate_upsample(n);
    require_ints(n, {"align_corners"}, 1, 0);
  };
  d.run = run;
  d.describe = [](const Node& n) { return describe_upsample(n) + (n.attrs.i("align_corners") ? " align" : ""); };
  d.output_unsigned = [](const Node&, const std::vector<bool>& in) { return bool(in[0]); };
  d.resample = resample;
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kUpsampleBilinear2dOp = make();

}  // namespace dfq
