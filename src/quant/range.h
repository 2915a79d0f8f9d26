// Range setting: the clip c (scale = c / qmax, see quantizer.h) of weights
// (exact values, per output channel) and activations (a histogram filled on
// calibration data). Methods, on m = |x| (signed range) or x (unsigned: values
// <= 0 quantize to 0 whatever c is, so they never move the choice):
//   minmax      c = max m.
//   percentile  c = that percentile of m (signed) or of x (unsigned); linear
//               interpolation between order statistics, as numpy.
//   kl          TensorRT entropy calibration on a histogram of m (see Histogram).
//   mmse        c = argmin over (0, max m] of E (x - Q_c(x))^2 (Choukroun et al.
//               2019). Every candidate is scored with the true objective; the MSE
//               is piecewise quadratic in c with a kink wherever a value crosses
//               a rounding boundary, so not unimodal on real data: hence a dense
//               grid first (100 uniform points i/100 * max, plus 10 geometric ones
//               below max/100 for channels whose c* sits far below an outlier),
//               then two local grids of 31 points between the neighbours of the
//               best point (not golden section, which needs unimodality in the
//               bracket): resolution ~4e-5 * max, ~170 MSE evaluations.
// Every clip returned is > 0 (kMinClip when no value is above zero).
//
// Power-of-two scales (RangeOptions::power_of_two, dfq quantize --pow2-scales):
// the scale c / qmax is restricted to 2^k, so every requantization ratio
// s_in * s_w / s_out of the integer engine is a power of two too (a shift).
// mmse scores every candidate c = qmax * 2^k from the smallest k whose clip
// reaches max m down to 20 halvings below it (c in [max * 2^-20, 2 max): the
// interval of the unconstrained search and the one candidate above it) and
// keeps the best: exhaustive over that set, 21 evaluations, no unimodality
// assumed. minmax takes that smallest k (nothing clipped). percentile and kl
// have no error to compare candidates with: their clip is rounded to the
// nearer power of two on a log scale. kMinClip is rounded the same way.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "quant/quantizer.h"

namespace dfq {

enum class RangeMethod { kMinMax, kPercentile, kKl, kMmse };

struct RangeOptions {
  RangeMethod method = RangeMethod::kMmse;
  double percentile = 99.99;  // in (0, 100]; checked by every function taking options, whatever the method
  bool power_of_two = false;  // scales restricted to powers of two (see above)
};

// The clip returned when every value is <= 0 (unsigned) or 0 (signed).
constexpr double kMinClip = 1e-8;

// "minmax" | "percentile" | "kl" | "mmse"; anything else throws dfq::Error naming `option`.
RangeMethod parse_range_method(const std::string& text, const std::string& option);
const char* to_string(RangeMethod method);

// One clip per output channel (dimension 0) of a floating weight tensor of rank
// >= 1, from the channel's exact values (kl: from a histogram of them with n
// rounded up to a power of two bins, within [256, 2048]). Returns a float tensor
// [O]. Throws dfq::Error on an empty, non-floating or non-finite tensor, bits
// outside 2..8, a bad percentile, or kl on int2 (one level above zero: the
// one-bin candidate has KL 0 whatever the data).
at::Tensor choose_weight_clips(const at::Tensor& weight, QuantRange range, const RangeOptions& options);

// mmse on the layer's output instead of its weights: the clip minimizing
// E|(W - W_q) x|^2 = sum_o d_o^T H d_o, d_o = w_o - Q(w_o), over the layer's input
// patches x (one row of W per output channel, flattened), with H = E[x x^T] the
// second moments of those patches (the layer's Hessian for a squared output
// loss). `hessian` is [G, D, D] for G groups of channels (channel o reads group
// o / (O / G)), D = weight.numel() / O. Same grid search as mmse, one clip per
// channel, or one for the tensor when !per_channel. Throws dfq::Error on shapes
// that do not fit, non-finite values or bits outside 2..8. power_of_two: the
// clips qmax * 2^k only, searched exhaustively as mmse above.
at::Tensor choose_weight_clips_for_output(const at::Tensor& weight, QuantRange range, const at::Tensor& hessian,
                                          bool per_channel, bool power_of_two = false);
// sum_o d_o^T H_g(o) d_o for the given clips [O] (the objective above).
double output_error(const at::Tensor& weight, const at::Tensor& clip, QuantRange range, const at::Tensor& hessian);

// The power-of-two clip qmax * 2^k nearest to `clip` on a log scale (ties up).
double nearest_power_of_two_clip(double clip, QuantRange range);

// The clip for all values of one tensor, as one channel of choose_weight_clips.
double choose_clip(const at::Tensor& values, QuantRange range, const RangeOptions& options);

// mean (x - fake_quantize(x, clip / qmax))^2 over all values, exactly. Throws
// dfq::Error on an empty or non-floating tensor or a clip not finite and > 0.
double quantization_mse(const at::Tensor& values, double clip, QuantRange range);

// Streaming histogram of activations, filled batch by batch, mergeable.
// x > 0 and -x for x < 0 are counted in two arrays of `bins` bins over [0,
// upper); exact zeros apart (they quantize without error; spread over bin 0
// they would invent some). upper is a power of two, max |x| < upper <= 2 max |x|;
// a later batch with a larger value doubles upper (as often as needed) and
// merges bins in pairs. That re-binning is exact (bin edges are nested), so the
// counts do not depend on the order of the batches and merging equals filling
// one histogram with both inputs; the price is that the data may cover only half
// of the bins (>= 1024 of the default 2048).
//
// Clips: minmax uses the exact max seen; percentile interpolates within a bin;
// mmse scores a clip with the values of each bin spread uniformly over it and
// the squared error integrated exactly over the rounding cells (counts at bin
// centres are biased when a step spans only a few bins); kl, with L = qmax
// levels, h = magnitude_counts() with zero_count() added to bin 0, B = last
// non-empty bin + 1, for each i in [L, B]: p = h[0, i) with the count of the
// bins >= i added to p[i-1]; q = h[0, i) merged into L groups of i / L bins (the
// last takes the remainder), each group's total spread evenly over its bins
// where p > 0; KL(p / sum p || q / sum q), +inf where q = 0 < p (no smoothing).
// The smallest i of least KL gives c = min(i * bin_width, max); c = max if B <= L.
class Histogram {
 public:
  // bins: a power of two in [256, 2^20]; else throws dfq::Error.
  explicit Histogram(int bins = 2048);

  // Adds every value of a non-empty floating tensor; throws dfq::Error on NaN/Inf.
  void add(const at::Tensor& x);
  void add(const float* x, int64_t n);  // the same on raw memory
  // Adds the counts of `other`, which must have the same number of bins.
  void merge(const Histogram& other);

  // Throws dfq::Error if nothing was added, or as choose_weight_clips on options.
  double clip(QuantRange range, const RangeOptions& options) const;
  // MSE of quantizing the added values with `clip`, estimated from the bins as
  // described above (values <= 0 in an unsigned range are counted exactly).
  double quantization_mse(double clip, QuantRange range) const;

  int bins() const { return bins_; }
  int64_t count() const { return count_; }            // values added
  int64_t zero_count() const { return zeros_; }       // values exactly 0
  double upper() const { return upper_; }             // 0 until a non-zero value arrives
  double bin_width() const { return upper_ / bins_; }
  double max_abs() const;                             // max |x|
  double max_positive() const { return max_pos_; }    // max(x, 0)
  // Per bin: counts of |x| (signed) or of x > 0 (unsigned), zeros excluded.
  std::vector<int64_t> magnitude_counts(bool is_signed) const;

 private:
  void grow_to(double value);  // sets or doubles upper_ until value < upper_
  void double_upper();         // upper_ *= 2, merging bins in pairs

  int bins_;
  double upper_ = 0;
  std::vector<int64_t> pos_, neg_;  // counts of x and of -x, per bin
  int64_t zeros_ = 0, negatives_ = 0, count_ = 0;
  double max_pos_ = 0, max_neg_ = 0;  // largest x and -x seen (0 if none)
  double neg_square_sum_ = 0;         // sum of x^2 over x < 0 (exact error of unsigned ranges)
};

}  // namespace dfq
