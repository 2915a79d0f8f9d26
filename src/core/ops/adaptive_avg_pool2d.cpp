// adaptive_avg_pool2d: attribute output_size (2). Integer: window sums
// requantized per window size, ATen's windows.
#include <ATen/ops/adaptive_avg_pool2d.h>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kAdaptiveAvgPool2dOp;  // defined at the end

namespace {

PoolGeometry pool(const Node& n, int64_t h, int64_t w) {
  PoolGeometry g;
  g.out_h = n.attrs.list("output_size")[0], g.out_w = n.attrs.list("output_size")[1];
  for (int64_t i = 0; i < g.out_h; ++i)
    for (int64_t j = 0; j < g.out_w; ++j) {
      const int64_t h0 = i * h / g.out_h, h1 = ((i + 1) * h + g.out_h - 1) / g.out_h;
      const int64_t w0 = j * w / g.out_w, w1 = ((j + 1) * w + g.out_w - 1) / g.out_w;
      g.windows.push_back({h0, h1, w0, w1, (h1 - h0) * (w1 - w0)});
    }
  return g;
}

// GlobalAveragePool, or AveragePool when the windows tile the input evenly;
// ATen's overlapping windows have no ONNX form.
void export_onnx(OnnxCall& c) {
  const std::vector<int64_t> in = c.input_shape(0);
  const std::vector<int64_t>& out = c.node().attrs.list("output_size");
  if (out[0] == 1 && out[1] == 1) return void(c.add("GlobalAveragePool", {c.input(0)}));
  if (in[2] % out[0] != 0 || in[3] % out[1] != 0)
    c.unsupported("adaptive average pool from " + std::to_string(in[2]) + "x" + std::to_string(in[3]) + " to " +
                  join(out, "x") + " (windows of different sizes)");
  const std::vector<int64_t> k{in[2] / out[0], in[3] / out[1]};
  c.add("AveragePool", {c.input(0)}, {OnnxAttr::list("kernel_shape", k), OnnxAttr::list("strides", k)});
}

OpDef make() {
  OpDef d;
  d.name = "adaptive_avg_pool2d";
  d.role = QuantRole::kAverage;
  d.aten = {"aten::adaptive_avg_pool2d"};
  d.import = [](ImportCall& c) {
    const int x = c.tensor(0);
    c.add(kAdaptiveAvgPool2dOp, {x}).attrs.ints["output_size"] = c.pair_arg(1);
  };
  d.validate = [](const Node& n) { require_ints(n, {"output_size"}, 2, 1); };
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) {
    return at::adaptive_avg_pool2d(in[0], n.attrs.list("output_size"));
  };
  d.describe = [](const Node& n) { return "out " + join(n.attrs.list("output_size"), "x"); };
  d.output_unsigned = [](const Node&, const std::vector<bool>& in) { return bool(in[0]); };
  d.pool = pool;
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kAdaptiveAvgPool2dOp = make();

}  // namespace dfq
