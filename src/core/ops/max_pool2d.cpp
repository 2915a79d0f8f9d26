// max_pool2d: attributes kernel, stride, padding, dilation (2 each), ceil_mode.
// Exact on integers (padding never wins, as ATen's implicit -inf); ATen has no
// integer max pool, so the integer form is its own loop.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/max_pool2d.h>

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kMaxPool2dOp;  // defined at the end

namespace {

// aten::max_pool2d(self, kernel_size, stride, padding, dilation, ceil_mode)
void import(ImportCall& c) {
  const int x = c.tensor(0);
  const std::vector<int64_t> kernel = c.pair_arg(1);
  const std::vector<int64_t> stride = c.ints_arg(2).empty() ? kernel : c.pair_arg(2);
  Node& node = c.add(kMaxPool2dOp, {x});
  node.attrs.ints = {{"kernel", kernel}, {"stride", stride}, {"padding", c.pair_arg(3)},
                     {"dilation", c.pair_arg(4)}, {"ceil_mode", {c.bool_arg(5)}}};
}

void validate(const Node& n) {
  require_window(n, /*dilated=*/true);
  require_ints(n, {"ceil_mode"}, 1, 0);
}

at::Tensor run(const Node& n, const std::vector<at::Tensor>& in) {
  const Attrs& a = n.attrs;
  return at::max_pool2d(in[0], a.list("kernel"), a.list("stride"), a.list("padding"), a.list("dilation"),
                        a.i("ceil_mode") != 0);
}

template <class X>
void max_pool_integers(const Node& n, const X* px, X* py, int64_t batch, int64_t channels, int64_t h, int64_t w,
                       int64_t out_h, int64_t out_w) {
  const Attrs& a = n.attrs;
  const auto& k = a.list("kernel");
  const auto& st = a.list("stride");
  const auto& p = a.list("padding");
  const auto& d = a.list("dilation");
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      for (int64_t i = 0; i < out_h; ++i)
        for (int64_t j = 0; j < out_w; ++j) {
          X* o = py + ((b * out_h + i) * out_w + j) * channels;
          std::fill(o, o + channels, std::numeric_limits<X>::lowest());
          for (int64_t u = 0; u < k[0]; ++u) {
            const int64_t y = i * st[0] - p[0] + u * d[0];
            if (y < 0 || y >= h) continue;
            for (int64_t v = 0; v < k[1]; ++v) {
              const int64_t xw = j * st[1] - p[1] + v * d[1];
              if (xw < 0 || xw >= w) continue;
              const X* pixel = px + ((b * h + y) * w + xw) * channels;
              for (int64_t c = 0; c < channels; ++c) o[c] = std::max(o[c], pixel[c]);
            }
          }
        }
  });
}

// x: int8/uint8, channels-last.
at::Tensor run_integer(const Node& n, const std::vector<at::Tensor>& in) {
  const at::Tensor x = in[0].contiguous(at::MemoryFormat::ChannelsLast);
  const Attrs& a = n.attrs;
  const int64_t batch = x.size(0), channels = x.size(1), h = x.size(2), w = x.size(3);
  const bool ceil_mode = a.i("ceil_mode") != 0;
  const int64_t out_h = pooled_size(h, a.list("kernel")[0], a.list("stride")[0], a.list("padding")[0],
                                    a.list("dilation")[0], ceil_mode);
  const int64_t out_w = pooled_size(w, a.list("kernel")[1], a.list("stride")[1], a.list("padding")[1],
                                    a.list("dilation")[1], ceil_mode);
  at::Tensor out = at::empty({batch, channels, out_h, out_w},
                             at::TensorOptions(x.scalar_type()).memory_format(at::MemoryFormat::ChannelsLast));
  if (x.scalar_type() == at::kChar)
    max_pool_integers(n, x.data_ptr<int8_t>(), out.data_ptr<int8_t>(), batch, channels, h, w, out_h, out_w);
  else if (x.scalar_type() == at::kByte)
    max_pool_integers(n, x.data_ptr<uint8_t>(), out.data_ptr<uint8_t>(), batch, channels, h, w, out_h, out_w);
  else
    fail("max pool '" + n.name + "' input", "int8 or uint8", std::string(c10::toString(x.scalar_type())));
  return out;
}

void export_onnx(OnnxCall& c) {
  const Attrs& a = c.node().attrs;
  const std::vector<int64_t>& p = a.list("padding");
  c.add("MaxPool", {c.input(0)},
        {OnnxAttr::list("kernel_shape", a.list("kernel")), OnnxAttr::list("strides", a.list("stride")),
         OnnxAttr::list("pads", {p[0], p[1], p[0], p[1]}), OnnxAttr::list("dilations", a.list("dilation")),
         OnnxAttr::i("ceil_mode", a.i("ceil_mode"))});
}

OpDef make() {
  OpDef d;
  d.name = "max_pool2d";
  d.role = QuantRole::kExact;
  d.aten = {"aten::max_pool2d"};
  d.import = import;
  d.validate = validate;
  d.run = run;
  d.run_integer = run_integer;
  d.describe = describe_window;
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kMaxPool2dOp = make();

}  // namespace dfq
