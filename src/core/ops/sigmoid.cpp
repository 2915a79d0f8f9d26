// sigmoid: 1 / (1 + exp(-x)), in [0, 1] (squeeze-excite gates). A table op (core/op.h): on a <= 8-bit input the
// integer engine looks up one output integer per input level, computed from f.
#include <ATen/ops/sigmoid.h>

#include <cmath>

#include "core/onnx_call.h"
#include "core/op_util.h"

namespace dfq {
namespace {

double f(const Node&, double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

extern const OpDef kSigmoidOp;
const OpDef kSigmoidOp = table_op("sigmoid", {"aten::sigmoid", "aten::sigmoid_"}, [](const Node&, const std::vector<at::Tensor>& in) { return at::sigmoid(in[0]); }, f, true,
    [](OnnxCall& c) { c.add("Sigmoid", {c.input(0)}); });

}  // namespace dfq
