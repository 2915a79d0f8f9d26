#include "quant/range.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <sstream>

#include "core/error.h"

namespace dfq {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

void check_options(QuantRange range, const RangeOptions& options) {
  check_bits(range.bits, "quantization bits");
  if (!(options.percentile > 0 && options.percentile <= 100))
    fail("range percentile", "a value in (0, 100]", number(options.percentile));
  // With one level above zero the one-bin candidate has KL 0 whatever the data,
  // so kl would always return the smallest threshold.
  if (options.method == RangeMethod::kKl && range.qmax() < 2)
    fail("range method kl", "at least 2 levels above zero (3+ bits when signed)", range.describe());
}

// The values of `values` as a contiguous float tensor; refuses what no method
// can use. Histogram::add checks finiteness itself, in its own pass.
at::Tensor checked_values(const at::Tensor& values, const std::string& subject, bool check_finite = true) {
  if (!values.defined() || values.numel() == 0) fail(subject, "a non-empty tensor", "an empty tensor");
  if (!at::isFloatingType(values.scalar_type()))
    fail(subject, "a floating-point tensor", std::string(c10::toString(values.scalar_type())));
  at::Tensor x = values.detach().to(at::kCPU, at::kFloat).contiguous();
  if (check_finite && !at::isfinite(x).all().item<bool>()) fail(subject, "finite values", "NaN or Inf");
  return x;
}

// Histogram size for the kl method on n exact values: about one bin per value,
// so that a small weight channel is not spread over mostly empty bins.
int kl_bins(int64_t n) {
  int bins = 256;
  while (bins < 2048 && bins < n) bins *= 2;
  return bins;
}

// ---- mmse search --------------------------------------------------------------

constexpr int kGrid = 100;      // uniform points over (0, hi]
constexpr int kGeometric = 10;  // points hi / kGrid * 2^-j below them, j = 1..kGeometric
constexpr int kRefine = 31;     // points per refinement level
constexpr int kLevels = 2;      // refinement levels

// argmin over c in (0, hi] of sse(c): dense grid, then local grids (see range.h).
template <class Sse>
double minimize_mse(double hi, const Sse& sse) {
  std::vector<double> grid;
  grid.reserve(kGeometric + kGrid);
  for (int j = kGeometric; j >= 1; --j) grid.push_back(std::ldexp(hi / kGrid, -j));
  for (int i = 1; i <= kGrid; ++i) grid.push_back(hi * i / kGrid);
  size_t best = grid.size() - 1;
  double best_error = kInf;
  for (size_t k = 0; k < grid.size(); ++k) {
    const double error = sse(grid[k]);
    if (error < best_error) best_error = error, best = k;
  }
  double c_best = grid[best];
  double lo = best > 0 ? grid[best - 1] : 0.0;
  double up = best + 1 < grid.size() ? grid[best + 1] : hi;
  for (int level = 0; level < kLevels; ++level) {
    const double step = (up - lo) / (kRefine + 1);
    for (int r = 1; r <= kRefine; ++r) {
      const double c = lo + r * step;
      const double error = sse(c);
      if (error < best_error) best_error = error, c_best = c;
    }
    lo = std::max(lo, c_best - step);
    up = std::min(up, c_best + step);
  }
  return c_best;
}

// ---- power-of-two scales (range.h) -------------------------------------------

constexpr int kPowerOfTwoBelow = 20;  // candidates below the covering one

// The smallest k with qmax * 2^k >= hi (hi > 0): the power-of-two clip that clips nothing.
int covering_exponent(double hi, int64_t qmax) {
  int k = static_cast<int>(std::ceil(std::log2(hi / static_cast<double>(qmax))));
  while (std::ldexp(static_cast<double>(qmax), k) < hi) ++k;  // log2 may be off by one ulp
  while (std::ldexp(static_cast<double>(qmax), k - 1) >= hi) --k;
  return k;
}

// argmin of sse over the clips qmax * 2^k, k from covering_exponent - 20 to it.
template <class Sse>
double minimize_mse_power_of_two(double hi, int64_t qmax, const Sse& sse) {
  const int top = covering_exponent(hi, qmax);
  double best = std::ldexp(static_cast<double>(qmax), top), best_error = kInf;
  for (int k = top - kPowerOfTwoBelow; k <= top; ++k) {
    const double c = std::ldexp(static_cast<double>(qmax), k);
    const double error = sse(c);
    if (error < best_error) best_error = error, best = c;
  }
  return best;
}

// A method's clip as returned, or rounded to a power-of-two scale (percentile,
// kl and the kMinClip of data without values above zero).
double rounded_clip(double clip, QuantRange range, const RangeOptions& options) {
  return options.power_of_two ? nearest_power_of_two_clip(clip, range) : clip;
}

// Sum of squared quantization errors of magnitudes a[0, n) (all >= 0) with
// levels k * c / qmax, k = 0..qmax. Written so the compiler vectorizes it:
// t is clamped to qmax before the float -> int conversion (truncation is floor
// for t >= 0), and the sum runs in 8 float lanes flushed to double per block.
double values_sse(const float* a, int64_t n, double clip, int64_t qmax) {
  const float s = static_cast<float>(clip / qmax);
  const float inv = static_cast<float>(qmax / clip);
  const float qm = static_cast<float>(qmax);
  constexpr int64_t kBlock = 1024;
  double total = 0;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = start;
    for (; i + 8 <= end; i += 8) {
      for (int l = 0; l < 8; ++l) {
        const float v = a[i + l];
        const float t = std::min(v * inv, qm);
        const float e = v - static_cast<float>(static_cast<int32_t>(t + 0.5f)) * s;
        acc[l] += e * e;
      }
    }
    for (; i < end; ++i) {
      const float v = a[i];
      const float t = std::min(v * inv, qm);
      const float e = v - static_cast<float>(static_cast<int32_t>(t + 0.5f)) * s;
      acc[0] += e * e;
    }
    for (float lane : acc) total += lane;
  }
  return total;
}

// Counts h[j] of magnitudes in bins [j w, (j+1) w), each spread uniformly over
// its bin. sse(c) integrates the squared error exactly over the rounding cells
// [(k - 1/2) s, (k + 1/2) s) (the last one open to +inf) from prefix sums of the
// zeroth, first and second moments: O(qmax) per clip instead of O(bins).
class BinnedSse {
 public:
  BinnedSse(const std::vector<int64_t>& h, double w, int64_t qmax) : w_(w), qmax_(qmax) {
    size_t used = h.size();
    while (used > 0 && h[used - 1] == 0) --used;
    n_.assign(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(used));
    m0_.assign(used + 1, 0.0);
    m1_.assign(used + 1, 0.0);
    m2_.assign(used + 1, 0.0);
    for (size_t j = 0; j < used; ++j) {
      const double lo = static_cast<double>(j) * w, hi = lo + w;
      m0_[j + 1] = m0_[j] + n_[j];
      m1_[j + 1] = m1_[j] + n_[j] * (lo + hi) / 2;
      m2_[j + 1] = m2_[j] + n_[j] * (lo * lo + lo * hi + hi * hi) / 3;
    }
    top_ = static_cast<double>(used) * w;
  }

  double operator()(double clip) const {
    if (n_.empty()) return 0;
    const double s = clip / static_cast<double>(qmax_);
    double p0 = 0, p1 = 0, p2 = 0, total = 0;
    for (int64_t k = 0; k <= qmax_; ++k) {
      const double b = k == qmax_ ? kInf : (static_cast<double>(k) + 0.5) * s;
      double c0, c1, c2;
      below(b, c0, c1, c2);
      const double m = static_cast<double>(k) * s;
      total += std::max(0.0, (c2 - p2) - 2 * m * (c1 - p1) + m * m * (c0 - p0));
      p0 = c0, p1 = c1, p2 = c2;
      if (b >= top_) break;
    }
    return total;
  }

 private:
  // Moments sum n, sum n x, sum n x^2 of the mass below t.
  void below(double t, double& c0, double& c1, double& c2) const {
    if (t >= top_) {
      c0 = m0_.back(), c1 = m1_.back(), c2 = m2_.back();
      return;
    }
    const size_t j = std::min(n_.size() - 1, static_cast<size_t>(t / w_));
    const double lo = static_cast<double>(j) * w_, density = n_[j] / w_;
    c0 = m0_[j] + density * (t - lo);
    c1 = m1_[j] + density * (t * t - lo * lo) / 2;
    c2 = m2_[j] + density * (t * t * t - lo * lo * lo) / 3;
  }

  double w_, top_ = 0;
  int64_t qmax_;
  std::vector<double> n_, m0_, m1_, m2_;
};

// ---- kl -----------------------------------------------------------------------

// TensorRT entropy calibration on counts h (zeros already in bin 0), as stated
// in range.h. Each candidate costs O(levels) thanks to prefix sums of h, of
// h log h and of the number of non-empty bins: within a group q is constant, so
// sum p log(p / q) = sum p log p - (sum p) log q.
double kl_clip(const std::vector<int64_t>& h, double w, double hi, int64_t levels) {
  int64_t used = static_cast<int64_t>(h.size());
  while (used > 0 && h[static_cast<size_t>(used - 1)] == 0) --used;
  if (used <= levels) return hi;
  std::vector<double> sum(used + 1, 0.0), sum_log(used + 1, 0.0);
  std::vector<int64_t> nonzero(used + 1, 0);
  for (int64_t j = 0; j < used; ++j) {
    const double v = static_cast<double>(h[static_cast<size_t>(j)]);
    sum[j + 1] = sum[j] + v;
    sum_log[j + 1] = sum_log[j] + (v > 0 ? v * std::log(v) : 0.0);
    nonzero[j + 1] = nonzero[j] + (v > 0);
  }
  const double total = sum[used];
  int64_t best_i = used;
  double best_kl = kInf;
  for (int64_t i = levels; i <= used; ++i) {
    const double outliers = total - sum[i];
    const int64_t merged = i / levels;
    double s = 0, q_total = 0;
    bool finite = true;
    for (int64_t g = 0; g < levels; ++g) {
      const int64_t start = g * merged;
      const bool last = g == levels - 1;
      const int64_t stop = last ? i : start + merged;
      const double group = sum[stop] - sum[start];
      double p_sum, p_log;
      int64_t p_nonzero;
      if (last) {  // p[i-1] carries the outliers
        const double p_last = static_cast<double>(h[static_cast<size_t>(i - 1)]) + outliers;
        p_sum = sum[i - 1] - sum[start] + p_last;
        p_log = sum_log[i - 1] - sum_log[start] + (p_last > 0 ? p_last * std::log(p_last) : 0.0);
        p_nonzero = nonzero[i - 1] - nonzero[start] + (p_last > 0);
      } else {
        p_sum = group;
        p_log = sum_log[stop] - sum_log[start];
        p_nonzero = nonzero[stop] - nonzero[start];
      }
      if (p_nonzero == 0) continue;
      if (group <= 0) {  // q = 0 where p > 0
        finite = false;
        break;
      }
      s += p_log - p_sum * std::log(group / static_cast<double>(p_nonzero));
      q_total += group;
    }
    if (!finite) continue;
    const double kl = s / total + std::log(q_total / total);
    if (kl < best_kl) best_kl = kl, best_i = i;
  }
  return std::min(static_cast<double>(best_i) * w, hi);
}

// ---- exact values ---------------------------------------------------------------

// Linear interpolation between order statistics at rank p/100 * (n - 1).
double percentile_of(std::vector<float> v, double percentile) {
  const double rank = percentile / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo), v.end());
  const double v_lo = v[lo];
  const double frac = rank - static_cast<double>(lo);
  if (frac == 0 || lo + 1 >= v.size()) return v_lo;
  const double v_hi = *std::min_element(v.begin() + static_cast<std::ptrdiff_t>(lo) + 1, v.end());
  return v_lo + frac * (v_hi - v_lo);
}

double positive_or_min(double clip) { return clip > 0 ? clip : kMinClip; }

// The clip of n exact values (options already checked).
double clip_of_values(const float* x, int64_t n, QuantRange range, const RangeOptions& options) {
  switch (options.method) {
    case RangeMethod::kPercentile: {
      std::vector<float> v(x, x + n);
      if (range.is_signed)
        for (float& value : v) value = std::fabs(value);
      return rounded_clip(positive_or_min(percentile_of(std::move(v), options.percentile)), range, options);
    }
    case RangeMethod::kKl: {
      Histogram histogram(kl_bins(n));
      histogram.add(x, n);
      return histogram.clip(range, options);
    }
    case RangeMethod::kMinMax:
    case RangeMethod::kMmse:
      break;
  }
  // Magnitudes: |x| (signed) or max(x, 0) (unsigned: values <= 0 quantize to 0
  // whatever the clip, so they add a constant to the error).
  std::vector<float> a(static_cast<size_t>(n));
  float hi = 0;
  for (int64_t i = 0; i < n; ++i) {
    a[static_cast<size_t>(i)] = range.is_signed ? std::fabs(x[i]) : std::max(x[i], 0.0f);
    hi = std::max(hi, a[static_cast<size_t>(i)]);
  }
  if (!(hi > 0)) return rounded_clip(kMinClip, range, options);
  const auto sse = [&](double c) { return values_sse(a.data(), n, c, range.qmax()); };
  if (options.power_of_two)
    return options.method == RangeMethod::kMinMax ? std::ldexp(static_cast<double>(range.qmax()), covering_exponent(hi, range.qmax()))
                                                  : minimize_mse_power_of_two(hi, range.qmax(), sse);
  if (options.method == RangeMethod::kMinMax) return hi;
  return minimize_mse(hi, sse);
}

}  // namespace

RangeMethod parse_range_method(const std::string& text, const std::string& option) {
  if (text == "minmax") return RangeMethod::kMinMax;
  if (text == "percentile") return RangeMethod::kPercentile;
  if (text == "kl") return RangeMethod::kKl;
  if (text == "mmse") return RangeMethod::kMmse;
  fail(option, "one of minmax, percentile, kl, mmse", "\"" + text + "\"");
}

const char* to_string(RangeMethod method) {
  switch (method) {
    case RangeMethod::kMinMax: return "minmax";
    case RangeMethod::kPercentile: return "percentile";
    case RangeMethod::kKl: return "kl";
    case RangeMethod::kMmse: return "mmse";
  }
  return "?";
}

double nearest_power_of_two_clip(double clip, QuantRange range) {
  check_bits(range.bits, "quantization bits");
  if (!(clip > 0 && std::isfinite(clip))) fail("quantization clip", "a finite value > 0", number(clip));
  const double k = std::floor(std::log2(clip / static_cast<double>(range.qmax())) + 0.5);
  return std::ldexp(static_cast<double>(range.qmax()), static_cast<int>(k));
}

at::Tensor choose_weight_clips(const at::Tensor& weight, QuantRange range, const RangeOptions& options) {
  check_options(range, options);
  if (weight.defined() && weight.dim() == 0) fail("weight tensor", "a tensor of rank >= 1", "a scalar");
  const at::Tensor w = checked_values(weight, "weight tensor");
  const int64_t channels = w.size(0);
  const int64_t n = w.numel() / channels;
  const float* data = w.data_ptr<float>();
  std::vector<float> clips(static_cast<size_t>(channels));
  // Channels are independent; one per task keeps a 64-channel layer on both cores.
  at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o)
      clips[static_cast<size_t>(o)] = static_cast<float>(clip_of_values(data + o * n, n, range, options));
  });
  return at::tensor(clips, at::kFloat);
}

double output_error(const at::Tensor& weight, const at::Tensor& clip, QuantRange range, const at::Tensor& hessian) {
  const int64_t channels = weight.size(0), groups = hessian.size(0);
  const at::Tensor w = weight.reshape({groups, channels / groups, -1}).to(at::kDouble);
  const at::Tensor scale = (clip.to(at::kDouble) / static_cast<double>(range.qmax())).reshape({groups, channels / groups, 1});
  const at::Tensor d = w - at::clamp(round_half_away(w / scale), range.qmin(), range.qmax()) * scale;
  return (at::bmm(d, hessian) * d).sum().item<double>();
}

namespace {

// minimize_mse for many channels at once: hi [C] (> 0), score(candidates
// [C, K]) -> errors [C, K]; the same grid and local grids per channel.
template <class Score>
at::Tensor minimize_channels(const at::Tensor& hi, const Score& score) {
  std::vector<double> fractions;
  for (int j = kGeometric; j >= 1; --j) fractions.push_back(std::ldexp(1.0 / kGrid, -j));
  for (int i = 1; i <= kGrid; ++i) fractions.push_back(static_cast<double>(i) / kGrid);
  const at::Tensor f = at::tensor(fractions, at::kDouble);
  const at::Tensor grid = hi.unsqueeze(1) * f.unsqueeze(0);  // [C, K]
  const at::Tensor best_k = score(grid).argmin(1);
  const int64_t last = static_cast<int64_t>(fractions.size()) - 1;
  at::Tensor best = grid.gather(1, best_k.unsqueeze(1)).squeeze(1);
  at::Tensor best_error = score(best.unsqueeze(1)).squeeze(1);
  at::Tensor lo = at::where(best_k > 0, grid.gather(1, (best_k - 1).clamp_min(0).unsqueeze(1)).squeeze(1), at::zeros_like(hi));
  at::Tensor up = at::where(best_k < last, grid.gather(1, (best_k + 1).clamp_max(last).unsqueeze(1)).squeeze(1), hi);
  const at::Tensor r = at::arange(1, kRefine + 1, at::kDouble).unsqueeze(0);
  for (int level = 0; level < kLevels; ++level) {
    const at::Tensor step = (up - lo) / (kRefine + 1);
    const at::Tensor local = lo.unsqueeze(1) + r * step.unsqueeze(1);
    const at::Tensor errors = score(local);
    const auto [local_best_error, local_k] = errors.min(1);
    const at::Tensor better = local_best_error < best_error;
    best = at::where(better, local.gather(1, local_k.unsqueeze(1)).squeeze(1), best);
    best_error = at::where(better, local_best_error, best_error);
    lo = at::maximum(lo, best - step);
    up = at::minimum(up, best + step);
  }
  return best;
}

}  // namespace

at::Tensor choose_weight_clips_for_output(const at::Tensor& weight, QuantRange range, const at::Tensor& hessian,
                                          bool per_channel, bool power_of_two) {
  check_bits(range.bits, "quantization bits");
  if (weight.defined() && weight.dim() < 2) fail("weight tensor", "a tensor of rank >= 2", c10::str(weight.sizes()));
  const at::Tensor w = checked_values(weight, "weight tensor");
  const int64_t channels = w.size(0), d = w.numel() / channels;
  if (!hessian.defined() || hessian.dim() != 3 || hessian.size(0) < 1 || channels % hessian.size(0) != 0 ||
      hessian.size(1) != d || hessian.size(2) != d)
    fail("layer input second moments", "[G, " + std::to_string(d) + ", " + std::to_string(d) + "] with G dividing " +
             std::to_string(channels), hessian.defined() ? c10::str(hessian.sizes()) : std::string("none"));
  const at::Tensor h = checked_values(hessian, "layer input second moments");  // float32: the search compares, it does not sum long
  const int64_t groups = h.size(0), per_group = channels / groups;
  const at::Tensor rows = w.reshape({channels, d});
  const double qmin = static_cast<double>(range.qmin()), qmax = static_cast<double>(range.qmax());
  // d_k^T H d_k of channels [begin, begin + n) at candidates [n, K], in chunks
  // of channels so the [n, K, D] residuals stay small; one GEMM per chunk.
  auto channel_errors = [&](int64_t begin, const at::Tensor& candidates) {
    const int64_t n = candidates.size(0), k = candidates.size(1);
    at::Tensor errors = at::empty({n, k}, at::kDouble);
    const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, k * d));
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t m = std::min(chunk, n - start);
      const at::Tensor x = rows.narrow(0, begin + start, m).unsqueeze(1);                               // [m, 1, D]
      const at::Tensor s = (candidates.narrow(0, start, m) / qmax).to(at::kFloat).unsqueeze(2);        // [m, K, 1]
      const at::Tensor delta = x - at::clamp(round_half_away(x / s), qmin, qmax) * s;                  // [m, K, D]
      at::Tensor hd;
      if (groups == 1) {
        hd = at::matmul(delta.reshape({m * k, d}), h[0]).reshape({m, k, d});
      } else {
        const at::Tensor group = at::arange(begin + start, begin + start + m, at::kLong).div(per_group, "floor");
        hd = at::bmm(delta, h.index_select(0, group));
      }
      errors.narrow(0, start, m).copy_((hd * delta).sum(2));
    }
    return errors;
  };
  at::Tensor clips;
  if (power_of_two) {
    // Every channel (or the tensor) scores its 21 candidates qmax * 2^k at once.
    const at::Tensor hi = per_channel ? std::get<0>(rows.abs().max(1)).to(at::kDouble).contiguous()
                                      : rows.abs().max().to(at::kDouble).reshape({1});
    const int64_t n = hi.size(0), k = kPowerOfTwoBelow + 1;
    at::Tensor candidates = at::empty({n, k}, at::kDouble);
    const double* h_hi = hi.data_ptr<double>();
    double* c = candidates.data_ptr<double>();
    for (int64_t i = 0; i < n; ++i) {
      const int top = h_hi[i] > 0 ? covering_exponent(h_hi[i], range.qmax()) : 0;
      for (int64_t j = 0; j < k; ++j) c[i * k + j] = std::ldexp(qmax, top - kPowerOfTwoBelow + static_cast<int>(j));
    }
    const at::Tensor errors = per_channel ? channel_errors(0, candidates)
                                          : channel_errors(0, candidates.expand({channels, k}).contiguous()).sum(0, true);
    const at::Tensor best = candidates.gather(1, errors.argmin(1, true)).squeeze(1);
    clips = at::where(hi > 0, best, at::full_like(hi, nearest_power_of_two_clip(kMinClip, range)));
    if (!per_channel) clips = clips.expand({channels});
  } else if (per_channel) {
    const at::Tensor hi = std::get<0>(rows.abs().max(1)).to(at::kDouble);
    const at::Tensor positive = hi > 0;
    clips = at::where(positive, minimize_channels(hi.clamp_min(kMinClip), [&](const at::Tensor& c) { return channel_errors(0, c); }),
                      at::full_like(hi, kMinClip));
  } else {
    const double hi = rows.abs().max().item<double>();
    const at::Tensor one = hi > 0 ? minimize_channels(at::full({1}, hi, at::kDouble), [&](const at::Tensor& c) {
      return channel_errors(0, c.expand({channels, c.size(1)}).contiguous()).sum(0, true);
    }) : at::full({1}, kMinClip, at::kDouble);
    clips = one.expand({channels});
  }
  return clips.to(at::kFloat).contiguous();
}

double choose_clip(const at::Tensor& values, QuantRange range, const RangeOptions& options) {
  check_options(range, options);
  const at::Tensor x = checked_values(values, "range input");
  return clip_of_values(x.data_ptr<float>(), x.numel(), range, options);
}

double quantization_mse(const at::Tensor& values, double clip, QuantRange range) {
  check_bits(range.bits, "quantization bits");
  if (!(clip > 0 && std::isfinite(clip))) fail("quantization clip", "a finite value > 0", number(clip));
  const at::Tensor x = checked_values(values, "quantization input", /*check_finite=*/false);
  const at::Tensor scale = at::scalar_tensor(clip / static_cast<double>(range.qmax()), at::kDouble);
  const at::Tensor error = x - fake_quantize(x, scale, range);
  return error.to(at::kDouble).pow(2).mean().item<double>();
}

// ---- Histogram ------------------------------------------------------------------

Histogram::Histogram(int bins) : bins_(bins) {
  if (bins < 256 || bins > (1 << 20) || (bins & (bins - 1)) != 0)
    fail("histogram bins", "a power of two from 256 to 1048576", std::to_string(bins));
  pos_.assign(static_cast<size_t>(bins), 0);
  neg_.assign(static_cast<size_t>(bins), 0);
}

double Histogram::max_abs() const { return std::max(max_pos_, max_neg_); }

void Histogram::double_upper() {
  const size_t half = static_cast<size_t>(bins_ / 2);
  for (std::vector<int64_t>* counts : {&pos_, &neg_}) {
    std::vector<int64_t>& c = *counts;
    for (size_t j = 0; j < half; ++j) c[j] = c[2 * j] + c[2 * j + 1];
    std::fill(c.begin() + static_cast<std::ptrdiff_t>(half), c.end(), 0);
  }
  upper_ *= 2;
}

void Histogram::grow_to(double value) {
  if (upper_ == 0) {
    int exponent = 0;
    std::frexp(value, &exponent);  // value = f * 2^exponent, f in [0.5, 1)
    upper_ = std::ldexp(1.0, exponent);
    return;
  }
  while (value >= upper_) double_upper();
}

void Histogram::add(const at::Tensor& x) {
  const at::Tensor values = checked_values(x, "histogram input", /*check_finite=*/false);
  add(values.data_ptr<float>(), values.numel());
}

void Histogram::add(const float* x, int64_t n) {
  if (n <= 0) fail("histogram input", "a non-empty tensor", "an empty tensor");
  // Pass 1, before anything changes (a refused batch leaves no trace): range,
  // finiteness and the sum of squares of negative values, in 8 lanes so that
  // the compiler vectorizes it (NaN fails `<=` and is caught by `bad`).
  float lo = 0, hi = 0;
  int bad = 0;
  double negative_squares = 0;
  constexpr int64_t kBlock = 4096;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    float lo8[8] = {}, hi8[8] = {}, sq8[8] = {};
    int bad8[8] = {};
    auto lane = [&](int l, float v) {
      bad8[l] |= !(std::fabs(v) <= FLT_MAX);
      lo8[l] = v < lo8[l] ? v : lo8[l];
      hi8[l] = v > hi8[l] ? v : hi8[l];
      const float negative = v < 0 ? v : 0.0f;
      sq8[l] += negative * negative;
    };
    int64_t i = start;
    for (; i + 8 <= end; i += 8)
      for (int l = 0; l < 8; ++l) lane(l, x[i + l]);
    for (; i < end; ++i) lane(0, x[i]);
    for (int l = 0; l < 8; ++l) {
      lo = std::min(lo, lo8[l]);
      hi = std::max(hi, hi8[l]);
      bad |= bad8[l];
      negative_squares += sq8[l];
    }
  }
  if (bad) fail("histogram input", "finite values", "NaN or Inf");
  const double batch_max = std::max<double>(hi, -lo);
  if (batch_max > 0) grow_to(batch_max);
  max_pos_ = std::max<double>(max_pos_, hi);
  max_neg_ = std::max<double>(max_neg_, -lo);
  neg_square_sum_ += negative_squares;

  // Pass 2: one slot per positive bin, per negative bin and for zeros, picked
  // with masks rather than branches (ReLU outputs mix zeros and positives at
  // random), counted in four interleaved copies so that runs of one slot do not
  // serialize on one counter. bins_ / upper_ is a power of two, so |v| * scale
  // is exact and the bin of a value does not depend on when upper_ doubled.
  const double scale = upper_ > 0 ? bins_ / upper_ : 0.0;
  const int64_t bins = bins_, last = bins - 1, slots = 2 * bins + 1, zero_slot = slots - 1;
  std::vector<int64_t> counts(static_cast<size_t>(4 * slots), 0);
  int64_t* c0 = counts.data();
  int64_t *c1 = c0 + slots, *c2 = c1 + slots, *c3 = c2 + slots;
  auto slot_of = [&](float v) {
    const int64_t j = std::min(last, static_cast<int64_t>(std::fabs(static_cast<double>(v)) * scale));
    const int64_t negative = -static_cast<int64_t>(v < 0), zero = -static_cast<int64_t>(v == 0);
    return (j + (negative & bins)) | (zero & zero_slot);
  };
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ++c0[slot_of(x[i])];
    ++c1[slot_of(x[i + 1])];
    ++c2[slot_of(x[i + 2])];
    ++c3[slot_of(x[i + 3])];
  }
  for (; i < n; ++i) ++c0[slot_of(x[i])];
  for (const int64_t* c : {c0, c1, c2, c3}) {
    for (int64_t j = 0; j < bins; ++j) {
      pos_[static_cast<size_t>(j)] += c[j];
      neg_[static_cast<size_t>(j)] += c[bins + j];
      negatives_ += c[bins + j];
    }
    zeros_ += c[zero_slot];
  }
  count_ += n;
}

void Histogram::merge(const Histogram& other) {
  if (other.bins_ != bins_)
    fail("histogram merge", "histograms with " + std::to_string(bins_) + " bins", std::to_string(other.bins_) + " bins");
  const std::vector<int64_t> other_pos = other.pos_, other_neg = other.neg_;  // `other` may be *this
  if (other.upper_ > 0) {
    if (upper_ == 0) upper_ = other.upper_;
    while (upper_ < other.upper_) double_upper();
    // Both uppers are powers of two: other's bin j lies inside our bin j / ratio.
    const double ratio = upper_ / other.upper_;
    const int64_t factor = ratio >= bins_ ? bins_ : static_cast<int64_t>(ratio);
    for (size_t j = 0; j < other_pos.size(); ++j) {
      pos_[j / static_cast<size_t>(factor)] += other_pos[j];
      neg_[j / static_cast<size_t>(factor)] += other_neg[j];
    }
  }
  zeros_ += other.zeros_;
  negatives_ += other.negatives_;
  count_ += other.count_;
  max_pos_ = std::max(max_pos_, other.max_pos_);
  max_neg_ = std::max(max_neg_, other.max_neg_);
  neg_square_sum_ += other.neg_square_sum_;
}

std::vector<int64_t> Histogram::magnitude_counts(bool is_signed) const {
  std::vector<int64_t> counts = pos_;
  if (is_signed)
    for (size_t j = 0; j < counts.size(); ++j) counts[j] += neg_[j];
  return counts;
}

double Histogram::clip(QuantRange range, const RangeOptions& options) const {
  check_options(range, options);
  if (count_ == 0) fail("activation histogram", "at least one value", "none");
  const double hi = range.is_signed ? max_abs() : max_pos_;
  if (!(hi > 0)) return rounded_clip(kMinClip, range, options);
  std::vector<int64_t> h = magnitude_counts(range.is_signed);
  const double w = bin_width();
  switch (options.method) {
    case RangeMethod::kMinMax:
      return options.power_of_two ? std::ldexp(static_cast<double>(range.qmax()), covering_exponent(hi, range.qmax())) : hi;
    case RangeMethod::kPercentile: {
      // Values at or below 0 come first: zeros, and the negatives of an unsigned range.
      const double target = options.percentile / 100.0 * static_cast<double>(count_);
      double cumulative = static_cast<double>(range.is_signed ? zeros_ : zeros_ + negatives_);
      if (target <= cumulative) return rounded_clip(kMinClip, range, options);
      for (size_t j = 0; j < h.size(); ++j) {
        const double n = static_cast<double>(h[j]);
        if (n > 0 && cumulative + n >= target)
          return rounded_clip(positive_or_min(std::min(hi, (static_cast<double>(j) + (target - cumulative) / n) * w)),
                              range, options);
        cumulative += n;
      }
      return rounded_clip(hi, range, options);
    }
    case RangeMethod::kKl:
      h[0] += zeros_;
      return rounded_clip(kl_clip(h, w, hi, range.qmax()), range, options);
    case RangeMethod::kMmse:
      break;
  }
  const BinnedSse sse(h, w, range.qmax());
  return options.power_of_two ? minimize_mse_power_of_two(hi, range.qmax(), sse) : minimize_mse(hi, sse);
}

double Histogram::quantization_mse(double clip, QuantRange range) const {
  check_bits(range.bits, "quantization bits");
  if (!(clip > 0 && std::isfinite(clip))) fail("quantization clip", "a finite value > 0", number(clip));
  if (count_ == 0) fail("activation histogram", "at least one value", "none");
  double sse = upper_ > 0 ? BinnedSse(magnitude_counts(range.is_signed), bin_width(), range.qmax())(clip) : 0.0;
  if (!range.is_signed) sse += neg_square_sum_;
  return sse / static_cast<double>(count_);
}

}  // namespace dfq
