#include "quant/weight_lut.h"

#include <ATen/ATen.h>

#include <array>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"

namespace dfq {
namespace {

constexpr int64_t kLutMax = 127;  // table values in [-127, 127], like every int8 weight

// The nearest entry of `lut` (double [K]) to each x (double, any shape), as
// codes (int64, x's shape); ties go to the lower value.
at::Tensor nearest_codes(const at::Tensor& x, const at::Tensor& lut) {
  const auto sorted = at::sort(lut, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor& values = std::get<0>(sorted);
  const at::Tensor& order = std::get<1>(sorted);
  const int64_t k = values.size(0);
  const at::Tensor flat = x.reshape({-1}).contiguous();
  const at::Tensor above = at::searchsorted(values, flat);  // first entry >= x
  const at::Tensor lo = (above - 1).clamp(0, k - 1), hi = above.clamp(0, k - 1);
  const at::Tensor d_lo = (flat - values.index_select(0, lo)).abs(), d_hi = (values.index_select(0, hi) - flat).abs();
  return order.index_select(0, at::where(d_hi < d_lo, hi, lo)).reshape(x.sizes());
}

}  // namespace

double weight_objective_value(const at::Tensor& weight, const at::Tensor& w_hat, const at::Tensor& hessian) {
  const int64_t channels = weight.size(0);
  const at::Tensor d = (weight.to(at::kDouble) - w_hat.to(at::kDouble)).reshape({channels, -1});
  if (!hessian.defined()) return d.pow(2).sum().item<double>();
  const int64_t groups = hessian.size(0);
  const at::Tensor dg = d.reshape({groups, channels / groups, d.size(1)});
  return (at::bmm(dg, hessian.to(at::kDouble)) * dg).sum().item<double>();
}

at::Tensor lut_codes(const at::Tensor& q, const at::Tensor& lut) {
  const at::Tensor table = lut.to(at::kLong).contiguous();
  std::array<int64_t, 2 * kLutMax + 2> code_of;  // value + 128 -> first code, -1 if none
  code_of.fill(-1);
  const int64_t* t = table.data_ptr<int64_t>();
  for (int64_t c = table.numel() - 1; c >= 0; --c)
    if (t[c] >= -128 && t[c] <= kLutMax) code_of[static_cast<size_t>(t[c] + 128)] = c;
  const at::Tensor values = q.to(at::kLong).contiguous();
  at::Tensor codes = at::empty(q.sizes(), at::kByte);
  const int64_t* v = values.data_ptr<int64_t>();
  uint8_t* out = codes.data_ptr<uint8_t>();
  for (int64_t i = 0; i < values.numel(); ++i) {
    const int64_t c = v[i] >= -128 && v[i] <= kLutMax ? code_of[static_cast<size_t>(v[i] + 128)] : -1;
    if (c < 0) fail("weight lookup table", "every integer weight among its " + std::to_string(table.numel()) + " entries",
                    "the value " + std::to_string(v[i]));
    out[i] = static_cast<uint8_t>(c);
  }
  return codes;
}

at::Tensor decode_lut(const at::Tensor& codes, const at::Tensor& lut) {
  const at::Tensor c = codes.to(at::kLong).reshape({-1});
  if (c.numel() > 0 && (c.min().item<int64_t>() < 0 || c.max().item<int64_t>() >= lut.numel()))
    fail("weight codes", "values below the table's " + std::to_string(lut.numel()) + " entries",
         "codes in [" + std::to_string(c.min().item<int64_t>()) + ", " + std::to_string(c.max().item<int64_t>()) + "]");
  return lut.to(at::kChar).index_select(0, c).reshape(codes.sizes());
}

WeightLut fit_weight_lut(const at::Tensor& weight, const at::Tensor& uniform_scale, QuantRange range,
                         const at::Tensor& hessian, bool power_of_two, int iterations) {
  check_bits(range.bits, "weight lookup table bits");
  if (!range.is_signed || range.bits > 4)
    fail("weight lookup table", "signed weights of 2 to 4 bits", range.describe());
  if (!weight.defined() || weight.dim() < 1 || weight.numel() == 0 || !at::isFloatingType(weight.scalar_type()))
    fail("weight lookup table", "a non-empty floating weight tensor", weight.defined() ? c10::str(weight.sizes()) : "none");
  const int64_t channels = weight.size(0), d = weight.numel() / channels;
  if (!uniform_scale.defined() || uniform_scale.numel() != channels)
    fail("weight lookup table", std::to_string(channels) + " uniform scales",
         uniform_scale.defined() ? std::to_string(uniform_scale.numel()) : "none");
  if (hessian.defined() && (hessian.dim() != 3 || hessian.size(0) < 1 || channels % hessian.size(0) != 0 ||
                            hessian.size(1) != d || hessian.size(2) != d))
    fail("weight lookup table", "input second moments [G, " + std::to_string(d) + ", " + std::to_string(d) + "]",
         c10::str(hessian.sizes()));
  at::NoGradGuard no_grad;
  const at::Tensor w = weight.detach().to(at::kDouble).reshape({channels, d});
  const at::Tensor h = hessian.defined() ? hessian.to(at::kDouble) : at::Tensor();
  // Per-weight importance: the second moment of the input it multiplies.
  const at::Tensor importance = h.defined() ? h.diagonal(0, 1, 2).repeat_interleave(channels / h.size(0), 0).contiguous()
                                            : at::ones({channels, d}, at::kDouble);
  const int64_t entries = int64_t{1} << range.bits, qmax = range.qmax();
  int64_t gain = 1;
  while (2 * gain * qmax <= kLutMax) gain *= 2;

  // The uniform start: the integers of quantize() in float, as the uniform quantizer has them.
  const at::Tensor scale_uniform = uniform_scale.to(at::kFloat).contiguous();
  const at::Tensor q_uniform = quantize(weight.detach().to(at::kFloat), scale_uniform, range, 0).to(at::kDouble).reshape({channels, d});
  std::vector<double> start(static_cast<size_t>(entries), 0.0);
  for (int64_t k = 0; k <= 2 * qmax; ++k) start[static_cast<size_t>(k)] = static_cast<double>(gain * (k - qmax));
  at::Tensor lut = at::tensor(start, at::kDouble);
  at::Tensor scale = scale_uniform.to(at::kDouble) / static_cast<double>(gain);
  at::Tensor codes = (q_uniform + static_cast<double>(qmax)).to(at::kLong);

  auto objective = [&](const at::Tensor& s, const at::Tensor& q) {
    return weight_objective_value(w, s.unsqueeze(1) * q, h);
  };
  WeightLut best;
  best.objective_uniform = best.objective = objective(scale, q_uniform * static_cast<double>(gain));
  at::Tensor best_lut = lut, best_codes = codes, best_scale = scale;
  auto consider = [&](const at::Tensor& s, const at::Tensor& table, const at::Tensor& c) {
    const double e = objective(s, table.index_select(0, c.reshape({-1})).reshape({channels, d}));
    if (e < best.objective) best.objective = e, best_lut = table, best_codes = c, best_scale = s;
  };

  for (int it = 0; it < iterations; ++it) {
    const at::Tensor x = w / scale.unsqueeze(1);
    const at::Tensor weights = importance * scale.pow(2).unsqueeze(1);
    codes = nearest_codes(x, lut);
    // Table: weighted means, rounded; empty entries move to the worst-served value.
    const at::Tensor flat_codes = codes.reshape({-1});
    const at::Tensor mass = at::zeros({entries}, at::kDouble).index_add_(0, flat_codes, weights.reshape({-1}));
    const at::Tensor moment = at::zeros({entries}, at::kDouble).index_add_(0, flat_codes, (weights * x).reshape({-1}));
    at::Tensor table = at::where(mass > 0, round_half_away(moment / mass.clamp_min(1e-300)).clamp(-kLutMax, kLutMax), lut);
    at::Tensor error = (weights * (x - table.index_select(0, flat_codes).reshape({channels, d})).pow(2)).reshape({-1}).clone();
    const at::Tensor flat_x = x.reshape({-1});
    for (int64_t k = 0; k < entries; ++k) {
      if (mass[k].item<double>() > 0) continue;
      const int64_t worst = error.argmax().item<int64_t>();
      if (!(error[worst].item<double>() > 0)) break;
      table[k] = std::min<double>(kLutMax, std::max<double>(-kLutMax, std::round(flat_x[worst].item<double>())));
      error[worst] = 0.0;
    }
    codes = nearest_codes(x, table);
    const at::Tensor q = table.index_select(0, codes.reshape({-1})).reshape({channels, d});
    consider(scale, table, codes);
    // Scales: per channel argmin_s sum a (w - s q)^2 = b / c, b = sum a w q, c = sum a q^2.
    const at::Tensor b = (importance * w * q).sum(1), c = (importance * q * q).sum(1);
    at::Tensor next = at::where((b > 0).logical_and(c > 0), b / c.clamp_min(1e-300), scale);
    if (power_of_two) {
      // The error c s^2 - 2 b s is a parabola: the best power of two is one of the two around its minimum.
      const at::Tensor lo = at::exp2(at::floor(at::log2(next))), hi = lo * 2;
      next = at::where(c * lo * lo - 2 * b * lo <= c * hi * hi - 2 * b * hi, lo, hi);
    }
    next = next.to(at::kFloat).to(at::kDouble);  // what the artifact stores
    consider(next, table, codes);
    ++best.iterations;
    const bool converged = at::equal(table, lut) && at::equal(next, scale);
    lut = table;
    scale = next;
    if (converged) break;
  }
  best.lut = best_lut.to(at::kChar);
  best.scale = best_scale.to(at::kFloat).contiguous();
  best.q = best_lut.index_select(0, best_codes.reshape({-1})).to(at::kChar).reshape(weight.sizes());
  best.codes = lut_codes(best.q, best.lut);
  return best;
}

}  // namespace dfq
