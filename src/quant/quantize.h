// Post-training quantization of a float graph on a calibration batch.
//
// Pipeline (each step its own function in quantize.cpp):
//  1. fold BN into the convolutions (core/passes.h), optionally
//     equalize and absorb biases across layers (equalize.h); one float pass of
//     the calibration batch records each Conv2d/Linear's output channel means
//     and, for the output objective, the second moments of its input patches;
//  2. weights: symmetric per output channel (or per tensor), clip chosen by
//     the weight range method (range.h); mmse minimizes the layer's output
//     error E|(W - W_q) x|^2 (--weight-objective output, default) or |W - W_q|^2
//     (weight); --first-last-bits for the layer that reads the input and the
//     layer that produces the output; with --pow2-scales every weight and
//     activation scale is a power of two (range.h);
//  2b. (--weight-lut) layers of <= 4 bits get a lookup table of int8 levels,
//     fitted from the uniform grid on the same objective (weight_lut.h);
//  3. residual tensors for the layers with the largest normalized weight error
//     |W - W_q|^2 / |W|^2, greedily, up to --residual-layers K or while the extra
//     weight bits stay within --residual-budget F of the model's (qmodel.h);
//  4. empirical bias correction (weights, full): one pass of the calibration
//     batch through the weight-quantized graph; at each Conv2d/Linear the
//     per-channel mean of (W_q x - W x) over the batch and positions is
//     subtracted from its bias, in graph order so later layers see corrected
//     inputs;
//  5. activation ranges from histograms of every quantization point on that
//     corrected graph, by the activation range method; the input always 8-bit,
//     the points step 2a chose bits for (candidate_activation_bits) at those;
//  5b. (--reconstruct adaround|adaquant) each layer's integers re-chosen to
//     minimize its output error on the calibration set, in graph order on the
//     simulated model (reconstruct.h); on a lookup table AdaRound chooses
//     between the two table levels around each weight;
//  6. (full) bias correction again, on one pass of the simulated model: each
//     layer's mean output channel, with quantized weights and activations
//     upstream, is set to the float model's (step 1), up to the bias's int32
//     grid; this also removes the shifts of activation clipping and rounding;
//  7. report: weight SQNR per layer, activation SQNR per point of the final
//     model (activation_sqnr_db), clip ratios.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "core/graph.h"
#include "quant/equalize.h"
#include "quant/qmodel.h"
#include "quant/range.h"
#include "quant/reconstruct.h"

namespace dfq {

// none: biases as folded; weights: step 4 only; full: steps 4 and 6.
enum class BiasCorrection { kNone, kWeights, kFull };
// The error the weight clip search minimizes: |W - W_q|^2, or the layer's
// output error with the input's second moments as weights (range.h).
enum class WeightObjective { kWeight, kOutput };
// Where step 2a measures a candidate's sensitivity (QuantizeOptions::sensitivity).
enum class MixedSensitivity { kIsolated, kReconstructed, kInContext };
BiasCorrection parse_bias_correction(const std::string& text, const std::string& option);
WeightObjective parse_weight_objective(const std::string& text, const std::string& option);
MixedSensitivity parse_mixed_sensitivity(const std::string& text, const std::string& option);  // isolated|reconstructed|in-context
const char* to_string(BiasCorrection mode);
const char* to_string(WeightObjective objective);
const char* to_string(MixedSensitivity where);

struct QuantizeOptions {
  int weight_bits = 8, activation_bits = 8;
  int first_last_bits = 0;  // 0: same as the rest
  bool per_channel = true;
  RangeOptions weight_range, activation_range;
  int residual_layers = 0;       // K; at most one of K and budget is non-zero
  double residual_budget = 0.0;  // F in [0, 1]
  BiasCorrection bias_correction = BiasCorrection::kFull;
  WeightObjective weight_objective = WeightObjective::kOutput;
  ReconstructOptions reconstruct;  // step 5b; method kNone (the library's default) skips it; dfq quantize
                                   // defaults to adaround
  bool quiet = true;               // progress of the long steps on stderr
  // Step 2a, mixed precision: when a budget is set, each layer's weight bits are
  // chosen from candidate_bits by an exact ILP (bit_allocation.h) minimizing the
  // summed per-layer output divergence within the average bits per weight and/or
  // the bit-operations (MACs x weight bits x activation bits, per image).
  double size_budget_bits_per_weight = 0.0;  // 0: none
  double bops_budget = 0.0;                  // 0: none
  // Or the BOPs budget as the BOPs of uniform W-bit weights and A-bit
  // activations, counted as the options are (below): both 0 (none) or both 2..8.
  int bops_budget_weight_bits = 0, bops_budget_activation_bits = 0;
  std::vector<int> candidate_bits = {2, 3, 4, 6, 8};
  // kIsolated: a candidate's sensitivity is the divergence of the float model
  // with only that layer's weights (or that point) quantized. kReconstructed:
  // the same with that layer's weights reconstructed first (step 5b's method,
  // on the float input, as the ILP's choice will be); needs reconstruction.
  // kInContext: of the model quantized everywhere else
  // (context_weight_bits(options) weights, activation_bits activations, 8-bit
  // input), taken as the excess over the layer's (point's) best candidate and
  // made non-increasing in bits, since at 3-4 bits the errors of the layers
  // compound rather than add.
  MixedSensitivity sensitivity = MixedSensitivity::kIsolated;
  // Mixed activation bits (needs a BOPs budget: activations cost no model
  // size): each quantization point that feeds a Conv2d/Linear takes its bits
  // from these, chosen by the same ILP, whose options become (weight bits,
  // input bits) pairs; the layers reading one point share its bits. The input
  // stays 8-bit (its readers' BOPs count 8) and points that feed no
  // Conv2d/Linear keep activation_bits. Empty: every point at activation_bits,
  // and every layer's BOPs counted at activation_bits.
  std::vector<int> candidate_activation_bits;
  bool cross_layer_equalization = false;  // step 1, after folding (equalize.h)
  EqualizeOptions equalization;
  bool power_of_two_scales = false;  // step 2 and 5: sets power_of_two in both range options (range.h)
  // Step 2b: lookup tables for the layers of <= 4 bits (weight_lut.h), fitted
  // by at most lut_iterations Lloyd iterations. Refused with --wbits > 4,
  // residual tensors, mixed precision and adaquant.
  bool weight_lut = false;
  int lut_iterations = 20;
};

struct LayerReport {
  std::string name;
  int node = 0;
  int bits = 0;
  int64_t parameters = 0;
  std::string input_point;         // the quantization point whose integers the layer reads
  int input_bits = 0;              // and its bits (8 for the network input)
  double clip_ratio = 1.0;         // mean clip / max|W| over channels
  double normalized_error = 0.0;   // |W - W_q|^2 / |W|^2 with one tensor
  double weight_sqnr_db = 0.0;     // of the final representation (with residual if any)
  bool residual = false;
  double bias_shift = 0.0;         // mean |correction| subtracted from the bias
  // Step 5b (0 without reconstruction): relative output error before/after, and
  // the fraction of integers it changed.
  double reconstruction_error_before = 0.0, reconstruction_error_after = 0.0, rounding_changed = 0.0;
  // Step 2b (empty without a table): its entries by code, the weight objective
  // with it over the uniform grid's (<= 1), and the Lloyd iterations run.
  std::vector<int> lut;
  double lut_objective_ratio = 1.0;
  int lut_iterations = 0;
};

struct PointReport {
  std::string name;
  int node = 0;
  std::string range;               // QuantRange::describe()
  double scale = 0.0;
  double clip = 0.0;
  double activation_sqnr_db = 0.0; // on the calibration batch
};

// One layer's row of the mixed-precision table. An option's sensitivity is
// sensitivity[w] + (activation_counted ? activation_sensitivity[a] : 0).
struct MixedPrecisionLayer {
  std::string name;
  int chosen_bits = 0;
  std::vector<int> candidate_bits;
  std::vector<double> sensitivity;  // per candidate: KL(float || this layer's weights quantized), as options.sensitivity says
  // The bits of the point the layer reads (its input): chosen from the
  // candidates, or fixed (one candidate: 8 at the input, activation_bits
  // without candidate_activation_bits).
  std::string input_point;
  int chosen_activation_bits = 0;
  std::vector<int> candidate_activation_bits;
  std::vector<double> activation_sensitivity;  // KL(float || that point quantized), per candidate; 0 when fixed
  bool activation_counted = false;  // the point's first reader carries its sensitivity, the others 0
};

bool has_bit_budget(const QuantizeOptions& options);  // a size or BOPs budget: mixed precision
// The weight bits of the in-context sensitivity's surrounding model: the
// candidate nearest the size budget's bits per weight, else the BOPs budget's
// weight bits, else the middle candidate (ties to the fewer bits).
int context_weight_bits(const QuantizeOptions& options);

// One row of the size/divergence trade-off the ILP sees (pareto_by_size).
struct ParetoPoint {
  double bits_per_weight = 0;
  bool feasible = false;
  double predicted_divergence = 0, bops = 0;
};

struct QuantizeReport {
  std::vector<LayerReport> layers;
  std::vector<PointReport> points;
  EqualizeReport equalization;     // empty unless cross_layer_equalization
  double weight_bits_total = 0.0;  // stored weight bits incl. residual tensors
  std::vector<MixedPrecisionLayer> mixed_precision;  // empty without a budget
  double predicted_divergence = 0.0, bops = 0.0;     // the ILP's objective and BOPs
  double bops_budget = 0.0;                          // as given, or of uniform W x A; 0: none
  std::vector<ParetoPoint> pareto;  // with a budget: the ILP's optimum at 2, 2.5, ... 8 bits/weight
  double seconds = 0.0;
};

// Throws dfq::Error for options that do not fit together or lie outside their
// ranges (bit widths outside 2..8, both residual options, a budget outside
// [0, 1], a lookup table with what it does not support, ...): what
// quantize_model checks first, callable before slow steps.
void check_quantize_options(const QuantizeOptions& options);

// Throws dfq::Error for bad options (check_quantize_options), an empty
// calibration batch, or a graph the quantizer cannot place points in (qmodel.h).
QuantizedModel quantize_model(const Graph& graph, const at::Tensor& calibration, const QuantizeOptions& options,
                              QuantizeReport& report);

// Per point of activation_points(model.graph): SQNR in dB (INFINITY if exact) of the model's activations when fake-quantized.
std::vector<double> activation_sqnr_db(const QuantizedModel& model, const at::Tensor& calibration);

}  // namespace dfq
