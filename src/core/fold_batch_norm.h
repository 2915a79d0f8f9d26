// Folding inference-mode batch norm into the preceding convolution.
//
// For a Conv2d (weight w, bias b) read only by a BatchNorm (gamma, beta, mean,
// var, eps), with k = gamma / sqrt(var + eps) per output channel:
//   w' = w * k,   b' = (b - mean) * k + beta
// so conv'(x) == bn(conv(x)) up to float rounding.
#pragma once

#include "core/graph.h"

namespace dfq {

// A copy of `graph` with every foldable BatchNorm merged into its convolution
// (the conv keeps its name and gains a bias). BatchNorms that do not follow a
// conv, or whose conv output is also read elsewhere, are kept.
Graph fold_batch_norms(const Graph& graph);

}  // namespace dfq
