#include "core/op_util.h"

#include <c10/util/StringUtil.h>

#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/import_call.h"

namespace dfq {

void require_ints(const Node& n, std::initializer_list<const char*> keys, size_t count, int64_t minimum) {
  for (const char* key : keys) {
    const std::vector<int64_t>& values = n.attrs.list(key);
    const std::string subject = "graph node '" + n.name + "' attribute '" + key + "'";
    if (count > 0 && values.size() != count)
      fail(subject, std::to_string(count) + " integer(s)", std::to_string(values.size()));
    for (int64_t v : values)
      if (v < minimum) fail(subject, "values >= " + std::to_string(minimum), std::to_string(v));
  }
}

void require_reals(const Node& n, std::initializer_list<const char*> keys) {
  for (const char* key : keys) n.attrs.f(key);
}

void require_tensor(const Node& n, const char* key, int64_t dims, int64_t size0) {
  const at::Tensor& t = n.param(key);
  const std::string subject = "graph node '" + n.name + "' parameter '" + key + "'";
  if (!t.defined() || t.scalar_type() != at::kFloat || t.dim() != dims || (size0 >= 0 && t.size(0) != size0))
    fail(subject, "a float32 tensor of " + std::to_string(dims) + " dimension(s)" +
                      (size0 >= 0 ? " and " + std::to_string(size0) + " rows" : std::string()),
         t.defined() ? std::string(c10::toString(t.scalar_type())) + " of shape " + c10::str(t.sizes()) : "none");
}

void require_window(const Node& n, bool dilated) {
  require_ints(n, {"kernel", "stride"}, 2, 1);
  require_ints(n, {"padding"}, 2, 0);
  std::vector<int64_t> dilation{1, 1};
  if (dilated) {
    require_ints(n, {"dilation"}, 2, 1);
    dilation = n.attrs.list("dilation");
  }
  const std::vector<int64_t>& k = n.attrs.list("kernel");
  const std::vector<int64_t>& p = n.attrs.list("padding");
  for (size_t i = 0; i < 2; ++i)
    if (k[i] > (int64_t{1} << 30) || dilation[i] > (int64_t{1} << 30) || p[i] > ((k[i] - 1) * dilation[i] + 1) / 2)
      fail("graph node '" + n.name + "' attribute 'padding'",
           "at most half the (dilated) kernel " + c10::str(k) + " and kernel, dilation <= 2^30", c10::str(p));
}

OpDef table_op(const char* name, std::vector<const char*> aten,
               at::Tensor (*run)(const Node&, const std::vector<at::Tensor>&), double (*f)(const Node&, double),
               bool output_unsigned, void (*export_onnx)(OnnxCall&)) {
  OpDef d;
  d.name = name;
  d.role = QuantRole::kTable;
  d.aten = std::move(aten);
  d.import = [](ImportCall& c) { c.add(c.op(), {c.tensor(0)}); };
  d.run = run;
  d.pointwise = f;
  d.export_onnx = export_onnx;
  if (output_unsigned) d.output_unsigned = [](const Node&, const std::vector<bool>&) { return true; };
  return d;
}

void import_upsample_size(ImportCall& c, Node& node, size_t size_arg, size_t scales_arg, bool vec_overload) {
  std::vector<int64_t> size;
  if (!c.is_none(size_arg)) size = c.ints_arg(size_arg);
  double scale_h = 0.0, scale_w = 0.0;
  if (vec_overload && !c.is_none(scales_arg)) {
    const std::vector<double> scales = c.reals_arg(scales_arg);
    if (scales.size() != 2) c.unsupported("scale factors for 2 dimensions");
    scale_h = scales[0], scale_w = scales[1];
  } else if (!vec_overload) {
    scale_h = c.optional_real(scales_arg, 0.0), scale_w = c.optional_real(scales_arg + 1, 0.0);
  }
  if (size.empty() && (scale_h <= 0.0 || scale_w <= 0.0)) c.unsupported("upsampling without a size or scale factors");
  if (!size.empty() && size.size() != 2) c.unsupported("an output size of 2 dimensions");
  node.attrs.ints["output_size"] = size;
  node.attrs.reals["scale_h"] = scale_h;
  node.attrs.reals["scale_w"] = scale_w;
}

std::pair<int64_t, int64_t> upsample_size(const Node& n, int64_t h, int64_t w) {
  const std::vector<int64_t>& size = n.attrs.list("output_size");
  if (!size.empty()) return {size[0], size[1]};
  return {static_cast<int64_t>(std::floor(static_cast<double>(h) * n.attrs.f("scale_h"))),
          static_cast<int64_t>(std::floor(static_cast<double>(w) * n.attrs.f("scale_w")))};
}

void validate_upsample(const Node& n) {
  // Bounded so that a graph read from a file cannot ask for a huge allocation.
  const std::vector<int64_t>& size = n.attrs.list("output_size");
  if (!size.empty()) require_ints(n, {"output_size"}, 2, 1);
  for (int64_t v : size)
    if (v > (int64_t{1} << 16)) fail("graph node '" + n.name + "' attribute 'output_size'", "at most 65536", std::to_string(v));
  const double sh = n.attrs.f("scale_h"), sw = n.attrs.f("scale_w");
  if (size.empty() && !(sh > 0.0 && sw > 0.0 && sh <= 64.0 && sw <= 64.0))
    fail("graph node '" + n.name + "'", "an output size or scale factors in (0, 64]",
         std::to_string(sh) + ", " + std::to_string(sw));
}

std::string describe_upsample(const Node& n) {
  const std::vector<int64_t>& size = n.attrs.list("output_size");
  if (!size.empty()) return "to " + join(size, "x");
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "x%g,%g", n.attrs.f("scale_h"), n.attrs.f("scale_w"));
  return buffer;
}

std::string join(const std::vector<int64_t>& values, const char* sep) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) out += (i ? sep : "") + std::to_string(values[i]);
  return out;
}

std::string describe_window(const Node& n) {
  const Attrs& a = n.attrs;
  return "k" + join(a.list("kernel"), "x") + " s" + join(a.list("stride"), ",") + " p" + join(a.list("padding"), ",") +
         (a.i("ceil_mode") ? " ceil" : "");
}

int64_t pooled_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation, bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1;
  int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;  // the last window must start inside
  return out;
}

}  // namespace dfq
