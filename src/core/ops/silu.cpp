// silu: x * sigmoid(x), also called swish (EfficientNet). A table op (core/op.h): on a <= 8-bit input the
// integer engine looks up one output integer per input level, computed from f.
#include <ATen/ops/silu.h>

#include <cmath>

#include "core/onnx_call.h"
#include "core/op_util.h"

namespace dfq {
namespace {

double f(const Node&, double x) { return x / (1.0 + std::exp(-x)); }

}  // namespace

extern const OpDef kSiluOp;
const OpDef kSiluOp = table_op("silu", {"aten::silu", "aten::silu_"}, [](const Node&, const std::vector<at::Tensor>& in) { return at::silu(in[0]); }, f, false,
    [](OnnxCall& c) { c.add("Mul", {c.input(0), c.add("Sigmoid", {c.input(0)})}); });

}  // namespace dfq
