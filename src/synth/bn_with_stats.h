// Inference-mode batch norm fused with the statistics of its input.
//
// Synthesis needs, at every BN layer, both the layer's output and the mean and
// variance of its input. Computed with separate LibTorch ops (var_mean, then
// batch_norm) each costs its own passes over the activations forward and
// backward plus a gradient accumulation; this op makes one pass forward and one
// backward (measured: the BN-loss forward+backward of ResNet-20 is then close to
// a plain forward+backward).
//
// For input x (N x C x H x W, or N x C) and per-channel scale k and shift t:
//   output = k_c * x + t_c                     (k = gamma / sqrt(var_run + eps),
//                                               t = beta - k * mean_run)
//   mean   = mean of x_c,  var = biased variance of x_c, taken over batch and
//            spatial positions (shape C) or, per image, over spatial positions
//            only (shape N x C).
// Backward: dx = k_c * d_output + d_mean / n + d_var * 2 (x - mean) / n, with n
// the number of elements each statistic covers. Works on NCHW and on
// channels-last tensors (output and gradient keep the input's layout). Sums
// accumulate in double; every image is reduced by one thread and images are
// combined in order, so results do not depend on the thread count.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>

namespace dfq {

struct BnWithStats {
  at::Tensor output;  // same shape as x
  at::Tensor mean;    // C, or N x C per image (float)
  at::Tensor var;     // same shape as mean
};

// Differentiable with respect to x. x must be float with 2 or 4 dimensions;
// scale and shift hold C floats. per_image needs 4 dimensions.
// Fusions of what usually follows a BN: with `residual` (shaped like x) the
// output is k * x + t + residual (a residual add); with clamp_min/clamp_max it
// is then clamped (ReLU, ReLU6). The gradient passes where the output lies
// strictly inside (clamp_min, clamp_max). Differentiable in x and residual.
BnWithStats batch_norm_with_stats(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                                  bool per_image, double clamp_min = -INFINITY, double clamp_max = INFINITY,
                                  const at::Tensor& residual = at::Tensor());

}  // namespace dfq
