// Cross-layer equalization (CLE) and bias absorption: Nagel et al. 2019,
// "Data-Free Quantization Through Weight Equalization and Bias Correction".
//
// Equalization. Take two layers in a chain, layer1 (output channel i:
// y_i = W1[i] . x + b1[i]) -> f -> layer2 (reads channel i with W2[:, i]), with
// f positively homogeneous: f(y / s) = f(y) / s for s > 0 (ReLU, or nothing).
// Scaling
//
//   W1[i] /= s_i,   b1[i] /= s_i,   W2[:, i] *= s_i
//
// leaves the network's function unchanged: layer2 sees s_i f(y_i / s_i) = f(y_i).
// With r1_i = max|W1[i, ...]| (output channel i of layer1) and
// r2_i = max|W2[:, i, ...]| (every weight of layer2 that reads channel i), the
// ranges become r1_i / s_i and r2_i s_i; they are equal for
//
//   s_i = sqrt(r1_i / r2_i),   both ranges then sqrt(r1_i r2_i),
//
// Nagel's choice (it maximizes the summed per-channel precision of the pair
// under per-tensor quantization). A channel with r1_i = 0 or r2_i = 0 keeps
// s_i = 1 (nothing to balance). Grouped convolutions: layer1's output channel i
// is row i of its weight whatever its groups (a depthwise layer1 contributes
// its own 3x3 kernel); layer2's input channel i = g * I_g + k is column k of
// the O/G rows of group g (a depthwise layer2: its own kernel i; with a channel
// multiplier m, its kernels i*m .. i*m+m-1).
//
// Chains (MobileNetV2's pw -> dw -> pw) share a layer between two pairs, so
// equalizing one pair unbalances the other; the pairs are swept in graph order
// until every s_i of a sweep is within 1 +- tolerance (Nagel's iterative
// scheme), at most max_iterations sweeps. Scales are accumulated in double and
// applied to the weights once, at the end.
//
// ReLU6 (Clamp 0..M, M finite) is not homogeneous: clamp(y / s, 0, 6) * s
// clips at 6 s. Following Nagel, an equalized pair's ReLU6 becomes a ReLU
// (relu6_to_relu, reported: this changes the float function where activations
// exceed 6); with the option off such pairs are skipped. Clamp(0, inf) is a
// ReLU and always eligible.
//
// Bias absorption. BN told us layer1's pre-activation h_i has mean beta_i and
// standard deviation |gamma_i| (after CLE: both / s_i). With
// c_i = max(0, beta_i - 3 |gamma_i|), ReLU(h - c) = ReLU(h) - c wherever h >= c,
// so moving c from b1 into b2,
//
//   b1 -= c,   b2[o] += sum over (i, kernel taps) of W2[o, i, ...] c_i,
//
// keeps layer2's output while layer1's output range (and its quantization
// grid) shrinks by c. Two limits, both documented in the report:
//  - where h_i < c_i the output changes by at most c_i (ReLU clips at c, not 0);
//    for a Gaussian h that is 0.13 % of the values (absorb_sigmas = 3);
//  - layer2's zero padding is not shifted by c: with padding, outputs whose
//    receptive field crosses the border change by W2[taps outside] . c. Such
//    pairs are skipped unless absorb_through_padding (a quantization-accuracy
//    trade the user opts into; MobileNetV2's 3x3 depthwise layers are such
//    layer2s, its 1x1 projections are not).
// Absorption needs statistics (pairs without them are skipped) and a ReLU
// between the layers (a pair with nothing between has no range to shrink).
//
// Contract: the graph must be BN-folded (core/passes.h); only
// Conv2d -> [ReLU | Clamp(0, M)] -> Conv2d and Linear -> [act] -> Linear pairs
// are used, where layer1's output and the activation are each read by exactly
// one node (not a residual Add, not the graph output). Parameters are replaced
// by new tensors, never written in place: copies of a Graph share tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

#include "core/graph.h"

namespace dfq {

struct EqualizeOptions {
  bool relu6_to_relu = true;   // equalize ReLU6 pairs by making them ReLU; off: skip them
  int max_iterations = 100;    // sweeps over all pairs
  double tolerance = 1e-4;     // converged when every scale of a sweep is within 1 +- tolerance
  bool bias_absorption = true;
  bool absorb_through_padding = false;  // absorb into a layer2 with zero padding (inexact at borders)
  double absorb_sigmas = 3.0;  // c = max(0, beta - absorb_sigmas |gamma|)
};

// Pre-activation statistics of a layer's output channels: mean and standard
// deviation, [O] each (from the BatchNorm folded into it: beta and |gamma|).
struct ChannelStatistics {
  at::Tensor mean, std;
};

// For every BatchNorm of `original` that fold_batch_norms() folds, the
// statistics of its output, keyed by the name of the Conv2d it folds into
// (folding keeps the conv's name).
std::map<std::string, ChannelStatistics> folded_batch_norm_statistics(const Graph& original);

struct EqualizedPair {
  std::string layer1, activation, layer2;  // activation "" when none
  int node1 = 0, node2 = 0;
  bool relu6_replaced = false;
  // "absorbed", or why not: "off", "no relu", "no statistics", "padding",
  // "nothing to absorb" (c = 0 for every channel).
  std::string absorption = "off";
  int64_t absorbed_channels = 0;  // channels with c > 0
  double absorbed_mean = 0.0;     // mean c over layer1's channels (equalized units)
};

// Spread of a layer's per-output-channel weight ranges r_o = max|W[o, ...]|:
// spread = max_o r_o / min_o r_o over channels with r_o > 0 (what per-tensor
// quantization suffers from), utilization = mean_o r_o / max_o r_o (the mean
// fraction of the tensor's grid a channel uses). A layer that is only a
// layer2 has its columns scaled, not its rows: its spread changes incidentally.
struct LayerSpread {
  std::string name;
  int node = 0;
  bool outputs_equalized = false;  // layer1 of a pair
  double spread_before = 1.0, spread_after = 1.0;
  double utilization_before = 1.0, utilization_after = 1.0;
};

struct EqualizeReport {
  std::vector<EqualizedPair> pairs;
  std::vector<std::string> skipped;  // "layer1 -> layer2: reason"
  std::vector<LayerSpread> layers;   // every layer of an equalized pair, graph order
  int iterations = 0;
  bool converged = true;
  double last_change = 0.0;          // max |s - 1| of the last sweep
  double seconds = 0.0;
  // Over the layers with outputs_equalized: the largest and the median spread.
  double max_spread_before = 1.0, max_spread_after = 1.0;
  double median_spread_before = 1.0, median_spread_after = 1.0;
};

// Equalizes every eligible pair of the BN-folded `folded` in place, then (if
// options.bias_absorption) absorbs biases using `statistics` keyed by layer1's
// name. Throws dfq::Error for options out of range (max_iterations < 1,
// tolerance <= 0, absorb_sigmas < 0) or statistics whose size differs from the
// layer's output channels.
EqualizeReport equalize_cross_layer(Graph& folded, const EqualizeOptions& options,
                                    const std::map<std::string, ChannelStatistics>& statistics = {});

}  // namespace dfq
