// mean: over attribute dims, keepdim. Integer form only over the spatial
// dimensions 2 and 3 (a global average pool).
#include <ATen/ops/mean.h>

#include <algorithm>

#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {
namespace {

void import(ImportCall& c) {
  if (c.arg_count() < 3) c.unsupported("mean over all dimensions");
  if (c.arg_count() > 3 && !c.is_none(3)) c.unsupported("mean with a dtype");
  const int x = c.tensor(0);
  Node& node = c.add(kMeanOp, {x});
  node.attrs.ints = {{"dims", c.ints_arg(1)}, {"keepdim", {c.bool_arg(2)}}};
}

bool spatial(const Node& n) {
  std::vector<int64_t> dims = n.attrs.list("dims");
  for (int64_t& d : dims) d = d < 0 ? d + 4 : d;
  std::sort(dims.begin(), dims.end());
  return dims == std::vector<int64_t>{2, 3};
}

PoolGeometry pool(const Node& n, int64_t h, int64_t w) {
  PoolGeometry g;
  g.windows.push_back({0, h, 0, w, h * w});
  g.keep_4d = n.attrs.i("keepdim") != 0;
  return g;
}

// Over the spatial dimensions: GlobalAveragePool (then a Reshape to N x C
// without keepdim); other dimensions: ReduceMean (axes an attribute before opset 18).
void export_onnx(OnnxCall& c) {
  const bool keep = c.node().attrs.i("keepdim") != 0;
  if (spatial(c.node()) && c.input_shape(0).size() == 4) {
    const std::string pooled = c.add("GlobalAveragePool", {c.input(0)});
    if (!keep) c.add("Reshape", {pooled, c.ints({0, -1})});
    return;
  }
  const std::vector<int64_t>& dims = c.node().attrs.list("dims");
  if (c.opset() < 18) c.add("ReduceMean", {c.input(0)}, {OnnxAttr::list("axes", dims), OnnxAttr::i("keepdims", keep)});
  else c.add("ReduceMean", {c.input(0), c.ints(dims)}, {OnnxAttr::i("keepdims", keep)});
}

OpDef make() {
  OpDef d;
  d.name = "mean";
  d.role = QuantRole::kAverage;
  d.aten = {"aten::mean"};
  d.import = import;
  d.validate = [](const Node& n) {
    n.attrs.list("dims");
    require_ints(n, {"keepdim"}, 1, 0);
  };
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) {
    return at::mean(in[0], n.attrs.list("dims"), n.attrs.i("keepdim") != 0);
  };
  d.describe = [](const Node& n) {
    return "dims " + join(n.attrs.list("dims"), ",") + (n.attrs.i("keepdim") ? " keepdim" : "");
  };
  d.output_unsigned = [](const Node&, const std::vector<bool>& in) { return bool(in[0]); };
  d.pool = pool;
  d.integer_refusal = [](const Node& n) {
    return spatial(n) ? std::string()
                      : "dims " + join(n.attrs.list("dims"), ",") + " (only a mean over the spatial dimensions 2 and 3)";
  };
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kMeanOp = make();

}  // namespace dfq
