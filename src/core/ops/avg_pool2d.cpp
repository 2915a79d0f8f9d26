// avg_pool2d: attributes kernel, stride, padding (2 each), ceil_mode,
// count_include_pad, divisor_override (0 = none). Integer: window sums
// requantized with ATen's divisor per window.
#include <ATen/ops/avg_pool2d.h>

#include <algorithm>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kAvgPool2dOp;  // defined at the end

namespace {

// aten::avg_pool2d(self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
void import(ImportCall& c) {
  const int x = c.tensor(0);
  const std::vector<int64_t> kernel = c.pair_arg(1);
  const std::vector<int64_t> stride = c.ints_arg(2).empty() ? kernel : c.pair_arg(2);
  Node& node = c.add(kAvgPool2dOp, {x});
  node.attrs.ints = {{"kernel", kernel},
                     {"stride", stride},
                     {"padding", c.pair_arg(3)},
                     {"ceil_mode", {c.bool_arg(4)}},
                     {"count_include_pad", {c.bool_arg(5)}},
                     {"divisor_override", {c.is_none(6) ? 0 : c.int_arg(6)}}};
}

void validate(const Node& n) {
  require_window(n, /*dilated=*/false);
  require_ints(n, {"ceil_mode", "count_include_pad", "divisor_override"}, 1, 0);
}

at::Tensor run(const Node& n, const std::vector<at::Tensor>& in) {
  const Attrs& a = n.attrs;
  const int64_t divisor = a.i("divisor_override");
  return at::avg_pool2d(in[0], a.list("kernel"), a.list("stride"), a.list("padding"), a.i("ceil_mode") != 0,
                        a.i("count_include_pad") != 0, divisor > 0 ? c10::optional<int64_t>(divisor) : c10::nullopt);
}

PoolGeometry pool(const Node& n, int64_t h, int64_t w) {
  const Attrs& a = n.attrs;
  const auto& k = a.list("kernel");
  const auto& st = a.list("stride");
  const auto& p = a.list("padding");
  const bool ceil_mode = a.i("ceil_mode") != 0, include_pad = a.i("count_include_pad") != 0;
  const int64_t divisor_override = a.i("divisor_override");
  PoolGeometry g;
  g.out_h = pooled_size(h, k[0], st[0], p[0], 1, ceil_mode);
  g.out_w = pooled_size(w, k[1], st[1], p[1], 1, ceil_mode);
  for (int64_t i = 0; i < g.out_h; ++i)
    for (int64_t j = 0; j < g.out_w; ++j) {
      int64_t h0 = i * st[0] - p[0], w0 = j * st[1] - p[1];
      int64_t h1 = std::min(h0 + k[0], h + p[0]), w1 = std::min(w0 + k[1], w + p[1]);
      const int64_t padded = (h1 - h0) * (w1 - w0);
      h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
      h1 = std::min(h1, h), w1 = std::min(w1, w);
      const int64_t divisor = divisor_override > 0 ? divisor_override : include_pad ? padded : (h1 - h0) * (w1 - w0);
      g.windows.push_back({h0, h1, w0, w1, divisor});
    }
  return g;
}

// ONNX's AveragePool divides like ATen except with ceil_mode windows that
// start in the padding, and has no divisor override: those are refused.
void export_onnx(OnnxCall& c) {
  const Attrs& a = c.node().attrs;
  if (a.i("divisor_override") > 0) c.unsupported("avg_pool2d with a divisor override");
  if (a.i("ceil_mode") != 0 && a.i("count_include_pad") != 0 && a.list("padding") != std::vector<int64_t>{0, 0})
    c.unsupported("avg_pool2d with ceil_mode, padding and count_include_pad (ONNX divides its edge windows differently)");
  const std::vector<int64_t>& p = a.list("padding");
  c.add("AveragePool", {c.input(0)},
        {OnnxAttr::list("kernel_shape", a.list("kernel")), OnnxAttr::list("strides", a.list("stride")),
         OnnxAttr::list("pads", {p[0], p[1], p[0], p[1]}), OnnxAttr::i("ceil_mode", a.i("ceil_mode")),
         OnnxAttr::i("count_include_pad", a.i("count_include_pad"))});
}

OpDef make() {
  OpDef d;
  d.name = "avg_pool2d";
  d.role = QuantRole::kAverage;
  d.aten = {"aten::avg_pool2d"};
  d.import = import;
  d.validate = validate;
  d.run = run;
  d.describe = describe_window;
  d.output_unsigned = [](const Node&, const std::vector<bool>& in) { return bool(in[0]); };
  d.pool = pool;
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kAvgPool2dOp = make();

}  // namespace dfq
