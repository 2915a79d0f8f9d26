// A quantized model: the BN-folded graph plus the integers and scales of every
// quantized tensor (formula and rounding in quantizer.h). This is what the
// artifact stores and what the simulated and integer engines run.
//
// Quantization points (activation_points()), by the ops' roles (core/op.h):
// the network input (8-bit signed), and the outputs of weighted layers
// (Conv2d/Linear), clamps (ReLU/ReLU6), adds, concatenations, averages, tables
// (hardswish, SiLU, sigmoid...), products and bilinear resampling, unsigned
// when the op says its output is >= 0 (a clamp with lower bound >= 0, a
// sigmoid, or an average/concatenation/product of unsigned inputs). A layer
// or add that absorbs the clamp reading it (core/passes.h absorbed_clamp) is
// not a point of its own: the clamp's output is, its bounds applied in the
// layer's requantization. A Conv2d/Linear whose only reader is an Add (the
// last convolution of a residual branch) is not a point either: the add reads
// its accumulator, rescales both branches and rounds once, so a residual
// block costs one rounding instead of two (at 4 bits the second one, on a
// signed branch output, is what breaks deep ResNets). At most one input of an
// Add arrives that way (the first eligible), and not when the Add runs in
// float as (part of) the graph output (core/passes.h accumulator_inputs).
// Exact ops (slice, pad with zeros, max pool, flatten, reshape, transpose,
// permute, chunk, nearest upsampling) keep their input's scale. A convolution
// that feeds a table is a point at --abits like any other. The graph output
// (the logits) is not quantized: the engines return it in float.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

#include "core/graph.h"
#include "quant/quantizer.h"

namespace dfq {

// Weights of one Conv2d or Linear node, symmetric per output channel (a
// per-tensor scheme stores one scale repeated per channel):
//   W ~= scale[o] * q[o]                                        (one tensor)
//   W ~= scale[o] * q[o] + scale[o] * 2^-shift[o] * residual[o]  (two tensors)
// The residual's scale is a power-of-two fraction of the first, so the
// integer engine can combine the two accumulations exactly:
//   acc = (acc_q << shift) + acc_residual, in units of scale * 2^-shift.
// With a lookup table (weight_lut.h) the stored integers are `range.bits`-bit
// codes and q = lut[codes] spans int8 (non-uniform levels); q is what both
// engines multiply with, so nothing else changes for them.
struct WeightQuant {
  QuantRange range;           // of q, or of the codes when lut is defined
  at::Tensor q;               // int8, the weight's shape
  at::Tensor lut;             // int8 [2^bits] in [-127, 127], or undefined (uniform integers)
  at::Tensor codes;           // uint8 like q when lut is defined: q = lut[codes]
  at::Tensor scale;           // float32 [O]
  at::Tensor residual;        // int8 like q, or undefined (no second tensor)
  at::Tensor residual_shift;  // int64 [O] when residual is defined
  at::Tensor bias;            // float32 [O]: the (bias-corrected) float bias; engines quantize it with
                              // scale_in * scale[o] (* 2^-shift) to int32
  double clip_ratio = 1.0;    // mean over channels of clip / max|W|, for the report

  at::Tensor dequantized(at::ScalarType type = at::kFloat) const;  // the weight the scheme represents
};

struct ActivationQuant {
  QuantRange range;
  double scale = 1.0;  // zero_point = 0
};

// Every option that changes the numbers, recorded for reports and the card.
struct QuantConfig {
  int weight_bits = 8, activation_bits = 8, first_last_bits = 0;  // 0: same as the rest
  bool per_channel = true;
  std::string weight_range = "mmse", activation_range = "mmse";
  double percentile = 99.99;
  int residual_layers = 0;        // chosen count (after --residual-layers / --residual-budget)
  double residual_budget = 0.0;   // requested extra weight bits fraction, 0 if by count
  std::string bias_correction = "full";   // none | weights | full (quantize.h)
  std::string weight_objective = "output"; // weight | output (quantize.h)
  std::string reconstruction = "none";     // none | adaround | adaquant (reconstruct.h)
  bool cross_layer_equalization = false;   // equalize.h, before quantization
  bool power_of_two_scales = false;        // every scale 2^k (range.h)
  bool weight_lut = false;                 // <= 4-bit layers through a lookup table (weight_lut.h)
  std::string calibration;        // "synthetic (direct, 256 images, 500 iterations)" or a folder
  int64_t calibration_count = 0;
  std::vector<int64_t> input_size;  // H, W of the calibration images (empty in older artifacts)
};

struct QuantizedModel {
  Graph graph;                                   // BN folded; float weights kept for reference
  std::map<int, WeightQuant> weights;            // Conv2d/Linear node id ->
  std::map<int, ActivationQuant> activations;    // quantization-point node id ->
  QuantConfig config;
};

// Checks what the engines rely on and the quantizer guarantees, so that an
// inconsistent artifact is refused when loaded: the graph's invariants
// (graph.h); weights for exactly the Conv2d/Linear nodes (signed, 2-8 bits,
// int8 integers of the layer's weight shape within that range, finite float32
// scales > 0 and finite biases per output channel, a residual of the same
// shape with int64 shifts in 1..bits+1); an activation for exactly the
// quantization points (2-8 bits, signed 8-bit at the input, signedness of
// activation_points(), a finite scale > 0), and biases within 2^52 units of
// their layer's accumulator. Throws dfq::Error naming the node.
void validate(const QuantizedModel& model);

// Node ids whose output is a quantization point (see above), in graph order,
// and for every node the point whose scale its output carries (-1 for the
// graph output and for nodes before a fused activation).
struct ActivationPoints {
  std::vector<int> points;
  std::vector<bool> is_unsigned;       // per point: output >= 0 by construction
  std::vector<int> scale_source;       // per node id
  std::vector<int> accumulator_input;  // per node id: for an Add, the index of the input that
                                       // arrives as an accumulator, else -1 (core/passes.h)
  std::vector<int> absorbed_clamp;     // per node id: the clamp its requantization applies, else -1
};
// Throws dfq::Error naming the node for ops the quantizer cannot place (a
// BatchNorm that is not folded into a convolution).
ActivationPoints activation_points(const Graph& folded);

}  // namespace dfq
