#include "synth/bn_with_stats.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "core/error.h"

namespace dfq {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// x viewed as N images of C channels x L positions, stored either NCHW
// (channel-major: each (image, channel) row of L values is contiguous) or
// channels-last (each position's C channel values are contiguous).
struct Layout {
  int64_t images, channels, positions;
  bool channels_last;
  int64_t image_size() const { return channels * positions; }
};

Layout layout_of(const at::Tensor& x) {
  return Layout{x.size(0), x.size(1), x.dim() == 4 ? x.size(2) * x.size(3) : 1,
                x.dim() == 4 && x.size(1) > 1 && x.is_contiguous(at::MemoryFormat::ChannelsLast) &&
                    !x.is_contiguous()};
}

at::Tensor contiguous_as(const at::Tensor& t, const Layout& s) {
  return t.contiguous(s.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define DFQ_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define DFQ_ALWAYS_INLINE __attribute__((always_inline))
#else
#define DFQ_VECTOR_CLONES
#define DFQ_ALWAYS_INLINE
#endif

// Float partial sums cover few values before they are added in double, which
// bounds their rounding error whatever the image size.
constexpr int64_t kChunk = 1024;

// Per-channel values laid out as one image's memory: constant runs of L
// (NCHW) or repeated every C values (channels-last). A channels-last image is
// walked in chunks of `period` floats (a multiple of C), so that every kernel
// below is a flat loop over contiguous floats with matching coefficients.
struct Pattern {
  int64_t period;
  std::vector<float> values;
};

int64_t pattern_period(const Layout& s) { return std::max<int64_t>(1, kChunk / s.channels) * s.channels; }

Pattern repeat_channels(const float* per_channel, const Layout& s) {
  Pattern p{pattern_period(s), {}};
  p.values.reserve(static_cast<size_t>(p.period));
  while (static_cast<int64_t>(p.values.size()) < p.period)
    p.values.insert(p.values.end(), per_channel, per_channel + s.channels);
  return p;
}

struct Clamp {
  float lo, hi;
};

// One image: y = clamp(k * x + t [+ r]) and the per-channel sum and sum of
// squares of x, added to sum[c] and sum_squares[c]. For channels-last input, k
// and t are Patterns of period pattern_period(s).
template <bool kChannelsLast, bool kResidual>
DFQ_ALWAYS_INLINE inline void forward_image_impl(const float* __restrict x, const float* __restrict r,
                                                 float* __restrict y, const float* __restrict k,
                                                 const float* __restrict t, const Layout& s, Clamp clamp,
                                                 double* sum, double* sum_squares) {
  const int64_t C = s.channels, L = s.positions;
  if (!kChannelsLast) {
    for (int64_t c = 0; c < C; ++c) {
      const float kc = k[c], tc = t[c];
      for (int64_t i0 = 0; i0 < L; i0 += kChunk) {
        const int64_t offset = c * L + i0, n = std::min(kChunk, L - i0);
        const float* __restrict row = x + offset;
        float* __restrict out = y + offset;
        float total = 0, total_squares = 0;
#pragma omp simd reduction(+ : total, total_squares)
        for (int64_t i = 0; i < n; ++i) {
          total += row[i];
          total_squares += row[i] * row[i];
          const float z = kc * row[i] + tc + (kResidual ? r[offset + i] : 0.f);
          out[i] = std::min(std::max(z, clamp.lo), clamp.hi);
        }
        sum[c] += total;
        sum_squares[c] += total_squares;
      }
    }
    return;
  }
  const int64_t period = pattern_period(s), size = s.image_size();
  std::vector<float> partial_sum(static_cast<size_t>(period)), partial_squares(static_cast<size_t>(period));
  float* __restrict ps = partial_sum.data();
  float* __restrict pq = partial_squares.data();
  // Each partial sees one value per chunk: at most L values.
  for (int64_t j0 = 0; j0 < size; j0 += period) {
    const float* __restrict px = x + j0;
    float* __restrict py = y + j0;
    const int64_t n = std::min(period, size - j0);
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      ps[j] += px[j];
      pq[j] += px[j] * px[j];
      const float z = k[j] * px[j] + t[j] + (kResidual ? r[j0 + j] : 0.f);
      py[j] = std::min(std::max(z, clamp.lo), clamp.hi);
    }
  }
  for (int64_t j0 = 0; j0 < period; j0 += C)
    for (int64_t c = 0; c < C; ++c) {
      sum[c] += ps[j0 + c];
      sum_squares[c] += pq[j0 + c];
    }
}

// One image: with m = [lo < y < hi] (y the clamped output),
//   dx = k * dy * m + a + b * x,   dr = dy * m.
// For channels-last input, k, a and b are Patterns of period pattern_period(s).
template <bool kChannelsLast, bool kResidual>
DFQ_ALWAYS_INLINE inline void backward_image_impl(const float* __restrict x, const float* __restrict y,
                                                  const float* __restrict dy, float* __restrict dx,
                                                  float* __restrict dr, const float* __restrict k,
                                                  const float* __restrict a, const float* __restrict b,
                                                  const Layout& s, Clamp clamp) {
  const int64_t C = s.channels, L = s.positions;
  const int64_t period = kChannelsLast ? pattern_period(s) : L;
  const int64_t segments = kChannelsLast ? (s.image_size() + period - 1) / period : C;
  for (int64_t g = 0; g < segments; ++g) {
    const int64_t j0 = g * period, n = std::min(period, s.image_size() - j0);
    const float* __restrict px = x + j0;
    const float* __restrict py = y + j0;
    const float* __restrict pg = dy + j0;
    float* __restrict pd = dx + j0;
    // NCHW: segment g is channel g with constant coefficients.
    const float* __restrict kv = kChannelsLast ? k : k + g;
    const float* __restrict av = kChannelsLast ? a : a + g;
    const float* __restrict bv = kChannelsLast ? b : b + g;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      const int64_t coefficient = kChannelsLast ? j : 0;
      const bool inside = (py[j] > clamp.lo) & (py[j] < clamp.hi);  // no branch: vectorizes
      const float passed = inside ? pg[j] : 0.f;
      pd[j] = kv[coefficient] * passed + av[coefficient] + bv[coefficient] * px[j];
      if (kResidual) dr[j0 + j] = passed;
    }
  }
}

DFQ_VECTOR_CLONES void forward_image(const float* x, const float* r, float* y, const float* k, const float* t,
                                     const Layout& s, Clamp clamp, double* sum, double* sum_squares) {
  if (s.channels_last) {
    if (r) forward_image_impl<true, true>(x, r, y, k, t, s, clamp, sum, sum_squares);
    else forward_image_impl<true, false>(x, r, y, k, t, s, clamp, sum, sum_squares);
  } else {
    if (r) forward_image_impl<false, true>(x, r, y, k, t, s, clamp, sum, sum_squares);
    else forward_image_impl<false, false>(x, r, y, k, t, s, clamp, sum, sum_squares);
  }
}

DFQ_VECTOR_CLONES void backward_image(const float* x, const float* y, const float* dy, float* dx, float* dr,
                                      const float* k, const float* a, const float* b, const Layout& s,
                                      Clamp clamp) {
  if (s.channels_last) {
    if (dr) backward_image_impl<true, true>(x, y, dy, dx, dr, k, a, b, s, clamp);
    else backward_image_impl<true, false>(x, y, dy, dx, dr, k, a, b, s, clamp);
  } else {
    if (dr) backward_image_impl<false, true>(x, y, dy, dx, dr, k, a, b, s, clamp);
    else backward_image_impl<false, false>(x, y, dy, dx, dr, k, a, b, s, clamp);
  }
}

class BnWithStatsFunction : public torch::autograd::Function<BnWithStatsFunction> {
 public:
  // An empty residual (numel 0) means no residual add; LibTorch's custom
  // functions cannot take undefined tensors.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& residual,
                               const at::Tensor& scale, const at::Tensor& shift, bool per_image, double lo,
                               double hi) {
    const Layout s = layout_of(input);
    const at::Tensor x = contiguous_as(input, s);
    const bool has_residual = residual.numel() > 0;
    const at::Tensor r = has_residual ? contiguous_as(residual, s) : at::Tensor();
    const at::Tensor k = scale.to(at::kFloat).contiguous(), t = shift.to(at::kFloat).contiguous();
    const Clamp clamp{static_cast<float>(lo), static_cast<float>(hi)};
    at::Tensor output = at::empty_like(x);
    // Every image is reduced by one thread, whatever the thread count.
    std::vector<double> sums(static_cast<size_t>(s.images * s.channels)), squares(sums.size());
    const Pattern kp = repeat_channels(k.data_ptr<float>(), s), tp = repeat_channels(t.data_ptr<float>(), s);
    const float* kv = s.channels_last ? kp.values.data() : k.data_ptr<float>();
    const float* tv = s.channels_last ? tp.values.data() : t.data_ptr<float>();
    at::parallel_for(0, s.images, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const int64_t offset = n * s.image_size();
        forward_image(x.data_ptr<float>() + offset, r.defined() ? r.data_ptr<float>() + offset : nullptr,
                      output.data_ptr<float>() + offset, kv, tv, s, clamp,
                      &sums[static_cast<size_t>(n * s.channels)], &squares[static_cast<size_t>(n * s.channels)]);
      }
    });
    const int64_t groups = per_image ? s.images : 1;
    const int64_t images_per_group = per_image ? 1 : s.images;
    const double count = static_cast<double>(images_per_group * s.positions);
    at::Tensor mean = at::empty({groups, s.channels}, at::kFloat), var = at::empty_like(mean);
    float* mp = mean.data_ptr<float>();
    float* vp = var.data_ptr<float>();
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t c = 0; c < s.channels; ++c) {
        double sum = 0, sum_squares = 0;
        for (int64_t n = g * images_per_group; n < (g + 1) * images_per_group; ++n) {
          sum += sums[static_cast<size_t>(n * s.channels + c)];
          sum_squares += squares[static_cast<size_t>(n * s.channels + c)];
        }
        const double m = sum / count;
        mp[g * s.channels + c] = static_cast<float>(m);
        vp[g * s.channels + c] = static_cast<float>(std::max(0.0, sum_squares / count - m * m));
      }
    if (!per_image) {
      mean = mean.reshape({s.channels});
      var = var.reshape({s.channels});
    }
    ctx->save_for_backward({x, output, k, mean});
    ctx->saved_data["count"] = count;
    ctx->saved_data["per_image"] = per_image;
    ctx->saved_data["residual"] = has_residual;
    ctx->saved_data["lo"] = lo;
    ctx->saved_data["hi"] = hi;
    return {output, mean, var};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &y = saved[1];
    at::Tensor k = saved[2];
    const Layout s = layout_of(x);
    const double count = ctx->saved_data["count"].toDouble();
    const bool per_image = ctx->saved_data["per_image"].toBool();
    const Clamp clamp{static_cast<float>(ctx->saved_data["lo"].toDouble()),
                      static_cast<float>(ctx->saved_data["hi"].toDouble())};
    const at::Tensor mean = saved[3].reshape({-1}).to(at::kDouble);
    // Per-statistic coefficients of dx = k * dy * m + a + b * x.
    at::Tensor a = at::zeros_like(mean), b = at::zeros_like(mean);
    if (grads[1].defined()) a = a + grads[1].reshape({-1}).to(at::kDouble) / count;
    if (grads[2].defined()) {
      const at::Tensor gv = grads[2].reshape({-1}).to(at::kDouble);
      a = a - 2.0 * gv * mean / count;
      b = 2.0 * gv / count;
    }
    // One row of coefficients per image (per-image statistics) or one shared row.
    a = a.to(at::kFloat).reshape({-1, s.channels}).contiguous();
    b = b.to(at::kFloat).reshape({-1, s.channels}).contiguous();
    if (s.channels_last) {
      // Coefficient rows repeated to the kernel's period.
      auto repeat_rows = [&](const at::Tensor& rows) {
        at::Tensor out = at::empty({rows.size(0), pattern_period(s)}, at::kFloat);
        for (int64_t row = 0; row < rows.size(0); ++row) {
          const Pattern p = repeat_channels(rows.data_ptr<float>() + row * s.channels, s);
          std::copy(p.values.begin(), p.values.end(), out.data_ptr<float>() + row * p.period);
        }
        return out;
      };
      k = repeat_rows(k.reshape({1, -1}));
      a = repeat_rows(a);
      b = repeat_rows(b);
    }
    const at::Tensor dy = grads[0].defined() ? contiguous_as(grads[0], s) : at::zeros_like(x);
    at::Tensor dx = at::empty_like(x);
    at::Tensor dr = ctx->saved_data["residual"].toBool() ? at::empty_like(x) : at::Tensor();
    const int64_t row_length = a.size(1);
    at::parallel_for(0, s.images, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const int64_t row = per_image ? n * row_length : 0;
        const int64_t offset = n * s.image_size();
        backward_image(x.data_ptr<float>() + offset, y.data_ptr<float>() + offset, dy.data_ptr<float>() + offset,
                       dx.data_ptr<float>() + offset, dr.defined() ? dr.data_ptr<float>() + offset : nullptr,
                       k.data_ptr<float>(), a.data_ptr<float>() + row, b.data_ptr<float>() + row, s, clamp);
      }
    });
    return {dx, dr, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

BnWithStats batch_norm_with_stats(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                                  bool per_image, double clamp_min, double clamp_max, const at::Tensor& residual) {
  if (x.scalar_type() != at::kFloat || (x.dim() != 4 && x.dim() != 2))
    fail("batch_norm_with_stats input", "float N x C x H x W or N x C",
         std::string(x.toString()) + " of rank " + std::to_string(x.dim()));
  if (per_image && x.dim() != 4) fail("per-image BN statistics", "spatial BN inputs (N x C x H x W)", "rank 2");
  if (scale.numel() != x.size(1) || shift.numel() != x.size(1))
    fail("batch_norm_with_stats", std::to_string(x.size(1)) + " scales and shifts",
         std::to_string(scale.numel()) + " and " + std::to_string(shift.numel()));
  if (!(clamp_min < clamp_max)) fail("batch_norm_with_stats clamp", "min < max", std::to_string(clamp_min) + ", " + std::to_string(clamp_max));
  if (residual.defined() && (residual.sizes() != x.sizes() || residual.scalar_type() != at::kFloat))
    fail("batch_norm_with_stats residual", "a float tensor shaped like the input",
         residual.toString() + " " + c10::str(residual.sizes()));
  const variable_list out =
      BnWithStatsFunction::apply(x, residual.defined() ? residual : at::empty({0}), scale, shift, per_image,
                                 clamp_min, clamp_max);
  return BnWithStats{out[0], out[1], out[2]};
}

}  // namespace dfq
