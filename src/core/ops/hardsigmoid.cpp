// hardsigmoid: relu6(x + 3) / 6, in [0, 1] (MobileNetV3 squeeze-excite gates). A table op (core/op.h): on a <= 8-bit input the
// integer engine looks up one output integer per input level, computed from f.
#include <ATen/ops/hardsigmoid.h>
#include <algorithm>
#include <cmath>

#include "core/onnx_call.h"
#include "core/op_util.h"

namespace dfq {
namespace {

double f(const Node&, double x) { return std::min(std::max(x + 3.0, 0.0), 6.0) / 6.0; }

}  // namespace

extern const OpDef kHardsigmoidOp;
const OpDef kHardsigmoidOp = table_op("hardsigmoid", {"aten::hardsigmoid", "aten::hardsigmoid_"}, [](const Node&, const std::vector<at::Tensor>& in) { return at::hardsigmoid(in[0]); }, f, true,
    [](OnnxCall& c) { c.add("HardSigmoid", {c.input(0)}, {OnnxAttr::f("alpha", 1.0 / 6.0), OnnxAttr::f("beta", 0.5)}); });

}  // namespace dfq
