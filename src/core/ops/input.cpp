// input: the network input (node 0), N x C x H x W float. Quantized to 8-bit
// signed integers: the integer engine's one float step.
#include "core/op.h"

#include "core/graph.h"

namespace dfq {
namespace {

OpDef make() {
  OpDef d;
  d.name = "input";
  d.min_inputs = d.max_inputs = 0;
  d.role = QuantRole::kInput;
  d.run = [](const Node&, const std::vector<at::Tensor>& in) { return in.at(0); };
  return d;
}

}  // namespace

const OpDef kInputOp = make();

}  // namespace dfq
