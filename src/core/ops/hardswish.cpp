// hardswish: x * relu6(x + 3) / 6 (MobileNetV3). A table op (core/op.h): on a <= 8-bit input the
// integer engine looks up one output integer per input level, computed from f.
#include <ATen/ops/hardswish.h>
#include <algorithm>
#include <cmath>

#include "core/onnx_call.h"
#include "core/op_util.h"

namespace dfq {
namespace {

double f(const Node&, double x) { return x * std::min(std::max(x + 3.0, 0.0), 6.0) / 6.0; }

}  // namespace

extern const OpDef kHardswishOp;
const OpDef kHardswishOp = table_op("hardswish", {"aten::hardswish", "aten::hardswish_"}, [](const Node&, const std::vector<at::Tensor>& in) { return at::hardswish(in[0]); }, f, false,
    [](OnnxCall& c) { c.add("HardSwish", {c.input(0)}); });

}  // namespace dfq
