// Graph passes: the rules that span several ops, each one function with its
// contract. (An op's own behaviour is in its op file, core/op.h; which values
// are quantization points is activation_points() in quant/qmodel.h, built
// from these.)
#pragma once

#include <vector>

#include "core/graph.h"

namespace dfq {

// Readers of every node's value: count (the graph output counts as one) and,
// when there is exactly one reading node, its id (else -1).
struct Readers {
  std::vector<int> count, sole;
};
Readers readers_of(const Graph& graph);

// The BatchNorm `bn` folds into the node it reads: a Conv2d read by nothing
// else. Folding inference-mode batch norm (gamma, beta, mean, var, eps) into
// that convolution (weight w, bias b), with k = gamma / sqrt(var + eps) per
// output channel:
//   w' = w * k,   b' = (b - mean) * k + beta
// so conv'(x) == bn(conv(x)) up to float rounding.
bool folds_into_producer(const Graph& graph, const Readers& readers, int bn);

// A copy of `graph` without BatchNorm nodes: each one that folds into its
// producer is merged into it (the conv keeps its name and gains a bias);
// every other one (DenseNet's BN after a concatenation) becomes a depthwise
// 1x1 convolution with weight k and bias beta - mean * k, under the BN's name.
// (A BN over a 2-D value is not supported.)
Graph fold_batch_norms(const Graph& graph);

// The clamp (ReLU, ReLU6...) that node `id` applies in its own output
// requantization: `id` absorbs_clamp (op.h) and is read only by that clamp; -1
// when there is none.
int absorbed_clamp(const Graph& graph, const Readers& readers, int id);

// For every Add node, the index of the input that arrives as a Conv2d/Linear
// accumulator (that layer read only by the add, so the add rescales it and
// rounds once; the first eligible input), else -1. Not for an Add that is the
// graph output or runs in float as part of it (read only by an output clamp).
std::vector<int> accumulator_inputs(const Graph& graph, const Readers& readers);

}  // namespace dfq
