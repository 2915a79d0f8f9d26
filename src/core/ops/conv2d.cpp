// conv2d: 2-D convolution. Params weight [O, I/groups, kH, kW], optional bias
// [O]; attributes stride, padding, dilation (2 each), groups. Quantized with
// integer weights per output channel (quant/qmodel.h).
#include <ATen/ops/conv2d.h>

#include <cstdio>

#include "core/error.h"
#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {
namespace {

// aten::_convolution(input, weight, bias, stride, padding, dilation, transposed,
//                    output_padding, groups, ...); aten::conv2d(input, weight, bias,
//                    stride, padding, dilation, groups)
void import(ImportCall& c) {
  const bool underscore_form = c.kind() == "aten::_convolution";
  if (underscore_form && c.bool_arg(6)) c.unsupported("transposed convolution");
  const int x = c.tensor(0);
  at::Tensor weight = c.param(1);
  if (!weight.defined() || weight.dim() != 4) c.unsupported("only 2-D convolutions with constant weights");
  at::Tensor bias = c.param(2);
  Node& node = c.add(kConv2dOp, {x});
  node.attrs.ints["stride"] = c.pair_arg(3);
  node.attrs.ints["padding"] = c.pair_arg(4);
  node.attrs.ints["dilation"] = c.pair_arg(5);
  node.attrs.ints["groups"] = {c.int_arg(underscore_form ? 8 : 6)};
  node.params["weight"] = weight;
  if (bias.defined()) node.params["bias"] = bias;
}

void validate(const Node& n) {
  require_tensor(n, "weight", 4, -1);
  const int64_t out = n.param("weight").size(0);
  if (n.has_param("bias")) require_tensor(n, "bias", 1, out);
  require_ints(n, {"stride", "dilation"}, 2, 1);
  require_ints(n, {"padding"}, 2, 0);
  require_ints(n, {"groups"}, 1, 1);
  if (out % n.attrs.i("groups") != 0)
    fail("graph node '" + n.name + "'", "groups dividing the " + std::to_string(out) + " output channels",
         std::to_string(n.attrs.i("groups")) + " groups");
}

at::Tensor run(const Node& n, const std::vector<at::Tensor>& in) {
  const Attrs& a = n.attrs;
  return at::conv2d(in[0], n.param("weight"), n.optional_param("bias"), a.list("stride"), a.list("padding"),
                    a.list("dilation"), a.i("groups"));
}

std::string describe(const Node& n) {
  const Attrs& a = n.attrs;
  const at::Tensor& w = n.param("weight");
  char buffer[160];
  std::snprintf(buffer, sizeof buffer, "%lldx%lld s%s p%s d%s g%lld %lld->%lld", static_cast<long long>(w.size(2)),
                static_cast<long long>(w.size(3)), join(a.list("stride"), ",").c_str(),
                join(a.list("padding"), ",").c_str(), join(a.list("dilation"), ",").c_str(),
                static_cast<long long>(a.i("groups")), static_cast<long long>(w.size(1) * a.i("groups")),
                static_cast<long long>(w.size(0)));
  return buffer;
}

void export_onnx(OnnxCall& c) {
  const Attrs& a = c.node().attrs;
  const at::Tensor& w = c.node().param("weight");
  const std::vector<int64_t>& p = a.list("padding");
  c.add("Conv", {c.input(0), c.param("weight"), c.param("bias")},
        {OnnxAttr::list("kernel_shape", {w.size(2), w.size(3)}), OnnxAttr::list("strides", a.list("stride")),
         OnnxAttr::list("pads", {p[0], p[1], p[0], p[1]}), OnnxAttr::list("dilations", a.list("dilation")),
         OnnxAttr::i("group", a.i("groups"))});
}

OpDef make() {
  OpDef d;
  d.name = "conv2d";
  d.role = QuantRole::kWeighted;
  d.aten = {"aten::_convolution", "aten::conv2d"};
  d.import = import;
  d.validate = validate;
  d.run = run;
  d.describe = describe;
  d.absorbs_clamp = true;
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kConv2dOp = make();

}  // namespace dfq
