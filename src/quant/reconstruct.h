// Layer-wise reconstruction of quantized weights on the calibration set:
// AdaRound (Nagel et al. 2020: learn whether each weight rounds up or down)
// and AdaQuant (Hubara et al. 2021: learn the weights themselves, rounded
// with a straight-through gradient), both minimizing the layer's output error
// against the float model.
//
// The objective is the asymmetric one: the quantized layer sees its input as
// the quantized model computes it (x_q: quantized weights and activations
// upstream, already reconstructed), the float layer its float input x_f, and
//
//   E| W_s x_q - W x_f |^2 over output channels, positions and images
//     = sum_o  w_s,o C_qq w_s,o^T - 2 w_s,o C_qf w_o^T + w_o C_ff w_o^T
//
// with C the (co)variances of the patches each weight row multiplies (per
// group). Centered moments, because the bias is corrected afterwards (the
// mean of the error is the bias correction's job, quantize.h step 6). The
// moments are exact over the whole calibration set, so every optimizer step
// costs one [O, D] x [D, D] product instead of a pass over the images.
//
// AdaRound: W_s = base + s * clamp(floor(x) + h(V), qmin, qmax) with
// x = (W - base) / s, h(V) = clamp(sigmoid(V) (zeta - gamma) + gamma, 0, 1)
// (zeta = 1.1, gamma = -0.1), V initialized so h(V) = x - floor(x); the
// regularizer lambda * mean(1 - |2h - 1|^beta), beta annealed from 20 to 2
// after a warm-up of 20 % of the steps, drives h to 0 or 1; the result rounds
// h at 1/2. AdaQuant: W_s = base + s * clamp(round(u)), u initialized to x,
// round's gradient taken as 1. `base` is a layer's first tensor when the
// tensor being rounded is its residual tensor (qmodel.h), else zero.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "quant/quantizer.h"

namespace dfq {

enum class Reconstruction { kNone, kAdaRound, kAdaQuant };
Reconstruction parse_reconstruction(const std::string& text, const std::string& option);
const char* to_string(Reconstruction method);

struct ReconstructOptions {
  Reconstruction method = Reconstruction::kNone;
  int iterations = 1000;         // optimizer steps per layer
  double learning_rate = 0.05;   // Adam, on V (AdaRound) or u (AdaQuant), grid units
  double regularization = 0.01;  // lambda (AdaRound)
};

// Patch covariances of one layer's inputs, [G, D, D] (double).
struct InputCovariances {
  at::Tensor qq, qf, ff;
};

struct RoundingResult {
  at::Tensor q;                // int8, the weight's shape
  double error_before = 0.0;   // relative output error E|W_s x_q - W x_f|^2 / E|W x_f|^2 (centered) with `initial`
  double error_after = 0.0;    // the same with q
  double changed = 0.0;        // fraction of integers that differ from `initial`
};

// Reconstructs the integers of one tensor: weight W [O, ...] (float), base
// (like W, or undefined for zero), per-channel scale [O], range, the layer's
// covariances with G groups, and the starting integers (e.g. nearest
// rounding). Deterministic. Throws dfq::Error on shape mismatches or kNone.
// `levels` (ascending, distinct, >= 2 values: a weight lookup table's entries,
// weight_lut.h) replaces the integers of `range` by a non-uniform grid:
// AdaRound then chooses between the two levels around x, lo + h (hi - lo), and
// the single moves go from one to the other; AdaQuant is refused with levels.
RoundingResult reconstruct_rounding(const at::Tensor& weight, const at::Tensor& base, const at::Tensor& scale,
                                    QuantRange range, const at::Tensor& initial, const InputCovariances& cov,
                                    const ReconstructOptions& options, const at::Tensor& levels = at::Tensor());

// Accumulates InputCovariances over batches of paired patches [G, P, D]
// (quantized-model and float-model inputs of the same positions).
class CovarianceAccumulator {
 public:
  void add(const at::Tensor& patches_q, const at::Tensor& patches_f);
  InputCovariances result() const;  // throws dfq::Error when nothing was added

 private:
  at::Tensor sum_q_, sum_f_, qq_, qf_, ff_;
  int64_t count_ = 0;
};

}  // namespace dfq
