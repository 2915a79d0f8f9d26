// Float execution of a Graph with LibTorch ops.
//
// Differentiable: when the input requires grad, gradients flow back to it
// (synthesis optimizes images through this). For evaluation, call it under
// c10::InferenceMode to skip autograd bookkeeping.
#pragma once

#include <vector>

#include "core/graph.h"

namespace dfq {

// Replaces forward hooks (LibTorch C++ has none): called after every node with
// the node's input values and its output. An observer may replace `output`
// (e.g. with a fake-quantized copy); consumers then see the replacement.
class Observer {
 public:
  virtual ~Observer() = default;
  // Called before a node runs: an observer that computes the node itself (e.g. a
  // fused kernel) stores the result in `output` and returns true; run_node is
  // then skipped. after_node still follows.
  virtual bool compute_node(const Node& /*node*/, const std::vector<at::Tensor>& /*inputs*/,
                            at::Tensor& /*output*/) {
    return false;
  }
  virtual void after_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor& output) = 0;
};

// Runs the whole graph on `input` (N x C x H x W float) and returns the value
// of graph.output. Intermediate values are released after their last reader.
// Throws dfq::Error if the input's rank or channel count does not fit the graph.
at::Tensor forward(const Graph& graph, const at::Tensor& input, Observer* observer = nullptr);

// Stores every convolution weight in channels-last (NHWC) order. With inputs
// from to_channels_last(), oneDNN then runs each convolution without layout
// reorders (about 1.5x faster on CIFAR ResNets); results are unchanged up to
// float rounding, since every op here is defined on logical indices.
void use_channels_last(Graph& graph);
at::Tensor to_channels_last(const at::Tensor& input);

// The float semantics of one node applied to its input values.
at::Tensor run_node(const Node& node, const std::vector<at::Tensor>& inputs);

}  // namespace dfq
