#include "quant/reconstruct.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <oneapi/dnnl/dnnl.h>

#include <cmath>

#include "core/error.h"

namespace dfq {

Reconstruction parse_reconstruction(const std::string& text, const std::string& option) {
  if (text == "none") return Reconstruction::kNone;
  if (text == "adaround") return Reconstruction::kAdaRound;
  if (text == "adaquant") return Reconstruction::kAdaQuant;
  fail(option, "one of none, adaround, adaquant", "\"" + text + "\"");
}

const char* to_string(Reconstruction method) {
  switch (method) {
    case Reconstruction::kNone: return "none";
    case Reconstruction::kAdaRound: return "adaround";
    case Reconstruction::kAdaQuant: return "adaquant";
  }
  return "?";
}

namespace {

// c[g] = a[g]^T b[g] (transpose_a) or a[g] b[g], per group, float32, by
// oneDNN's sgemm: LibTorch's matmul goes to the system BLAS, whose Debian
// OpenBLAS 0.3.21 does not recognize recent Xeons and runs SSE3 kernels.
at::Tensor batched_matmul(const at::Tensor& a_in, const at::Tensor& b_in, bool transpose_a) {
  const at::Tensor a = a_in.to(at::kFloat).contiguous(), b = b_in.to(at::kFloat).contiguous();
  const int64_t groups = a.size(0), m = transpose_a ? a.size(2) : a.size(1), k = transpose_a ? a.size(1) : a.size(2);
  const int64_t n = b.size(2);
  if (b.size(0) != groups || b.size(1) != k)
    fail("batched_matmul", "[G, " + std::to_string(k) + ", N] right operand", c10::str(b.sizes()));
  at::Tensor c = at::empty({groups, m, n}, at::kFloat);
  for (int64_t g = 0; g < groups; ++g) {
    const dnnl_status_t status =
        dnnl_sgemm(transpose_a ? 'T' : 'N', 'N', m, n, k, 1.0f, a[g].data_ptr<float>(), a.size(2), b[g].data_ptr<float>(),
                   n, 0.0f, c[g].data_ptr<float>(), n);
    if (status != dnnl_success) fail("oneDNN sgemm", "success", "status " + std::to_string(static_cast<int>(status)));
  }
  return c;
}

}  // namespace

void CovarianceAccumulator::add(const at::Tensor& patches_q, const at::Tensor& patches_f) {
  if (patches_q.sizes() != patches_f.sizes() || patches_q.dim() != 3)
    fail("reconstruction patches", "two [G, P, D] tensors of one shape",
         c10::str(patches_q.sizes()) + " and " + c10::str(patches_f.sizes()));
  const at::Tensor q = patches_q.to(at::kFloat).contiguous(), f = patches_f.to(at::kFloat).contiguous();
  if (count_ == 0) {
    sum_q_ = at::zeros({q.size(0), q.size(2)}, at::kDouble);
    sum_f_ = at::zeros_like(sum_q_);
    qq_ = at::zeros({q.size(0), q.size(2), q.size(2)}, at::kDouble);
    qf_ = at::zeros_like(qq_);
    ff_ = at::zeros_like(qq_);
  }
  sum_q_ += q.sum(1).to(at::kDouble);
  sum_f_ += f.sum(1).to(at::kDouble);
  qq_ += batched_matmul(q, q, true).to(at::kDouble);
  qf_ += batched_matmul(q, f, true).to(at::kDouble);
  ff_ += batched_matmul(f, f, true).to(at::kDouble);
  count_ += q.size(1);
}

InputCovariances CovarianceAccumulator::result() const {
  if (count_ == 0) fail("reconstruction statistics", "at least one patch", "none");
  const double n = static_cast<double>(count_);
  const at::Tensor mq = (sum_q_ / n).unsqueeze(2), mf = (sum_f_ / n).unsqueeze(2);
  return InputCovariances{qq_ / n - at::bmm(mq, mq.transpose(1, 2)), qf_ / n - at::bmm(mq, mf.transpose(1, 2)),
                          ff_ / n - at::bmm(mf, mf.transpose(1, 2))};
}

namespace {

constexpr double kZeta = 1.1, kGamma = -0.1;

// Adam (Kingma & Ba) on one tensor, with its default betas.
struct Adam {
  at::Tensor m, v;
  int64_t step = 0;
  void update(at::Tensor& parameter, const at::Tensor& gradient, double learning_rate) {
    constexpr double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    if (!m.defined()) m = at::zeros_like(parameter), v = at::zeros_like(parameter);
    ++step;
    m.mul_(b1).add_(gradient, 1 - b1);
    v.mul_(b2).addcmul_(gradient, gradient, 1 - b2);
    const double m_hat = 1.0 / (1 - std::pow(b1, static_cast<double>(step)));
    const double v_hat = 1.0 / (1 - std::pow(b2, static_cast<double>(step)));
    parameter.addcdiv_(m * m_hat, (v * v_hat).sqrt_().add_(eps), -learning_rate);
  }
};

// Coordinate descent on E(q) = sum_o w_s C w_s^T - 2 w_s t^T, w_s = b + s q:
// moving q_i by d changes E by 2 s d g_i + s^2 d^2 C_ii with g = w_s C - t (per
// row), and g by s d C_i. Sweeps until no move lowers E (at most 20 sweeps).
// A move is +-1, or +-moves_i (a lookup table's gap between two levels).
at::Tensor refine_by_single_moves(const at::Tensor& q_in, const at::Tensor& b, const at::Tensor& s, const at::Tensor& c,
                                  const at::Tensor& t, const at::Tensor& allowed_lo, const at::Tensor& allowed_hi,
                                  const at::Tensor& moves = at::Tensor()) {
  at::Tensor q = q_in.to(at::kDouble).contiguous();
  const at::Tensor sd = s.to(at::kDouble).contiguous(), cd = c.to(at::kDouble).contiguous();
  at::Tensor g = (at::bmm(b.to(at::kDouble) + sd * q, cd) - t.to(at::kDouble)).contiguous();
  const at::Tensor lo_t = allowed_lo.to(at::kDouble).contiguous(), hi_t = allowed_hi.to(at::kDouble).contiguous();
  const int64_t groups = q.size(0), rows = q.size(1), d = q.size(2);
  double* pq = q.data_ptr<double>();
  double* pg = g.data_ptr<double>();
  const double *ps = sd.data_ptr<double>(), *pc = cd.data_ptr<double>();
  const double *plo = lo_t.data_ptr<double>(), *phi = hi_t.data_ptr<double>();
  const at::Tensor moves_d = moves.defined() ? moves.to(at::kDouble).contiguous() : at::Tensor();
  const double* pm = moves_d.defined() ? moves_d.data_ptr<double>() : nullptr;
  at::parallel_for(0, groups * rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const double* cg = pc + (r / rows) * d * d;
      const double step = ps[r];
      double* qr = pq + r * d;
      double* gr = pg + r * d;
      for (int sweep = 0; sweep < 20; ++sweep) {
        bool moved = false;
        for (int64_t i = 0; i < d; ++i) {
          const double unit = pm ? pm[r * d + i] : 1.0;
          const double curvature = step * step * cg[i * d + i] * (unit * unit);
          for (double dir : {-unit, unit}) {
            const double next = qr[i] + dir;
            if (next < plo[r * d + i] || next > phi[r * d + i]) continue;
            if (2.0 * step * dir * gr[i] + curvature >= -1e-12 * curvature) continue;
            qr[i] = next;
            for (int64_t j = 0; j < d; ++j) gr[j] += step * dir * cg[i * d + j];
            moved = true;
            break;
          }
        }
        if (!moved) break;
      }
    }
  });
  return q.to(at::kFloat);
}

}  // namespace

RoundingResult reconstruct_rounding(const at::Tensor& weight, const at::Tensor& base, const at::Tensor& scale,
                                    QuantRange range, const at::Tensor& initial, const InputCovariances& cov,
                                    const ReconstructOptions& o, const at::Tensor& levels) {
  if (o.method == Reconstruction::kNone) fail("reconstruct_rounding", "adaround or adaquant", "none");
  const bool table = levels.defined();
  if (table && o.method != Reconstruction::kAdaRound)
    fail("reconstruct_rounding", "adaround with a weight lookup table (non-uniform levels)", to_string(o.method));
  if (table && (levels.dim() != 1 || levels.numel() < 2 || !(levels.diff() > 0).all().item<bool>()))
    fail("reconstruct_rounding levels", "at least two ascending distinct values", c10::str(levels.sizes()));
  const int64_t channels = weight.size(0), groups = cov.qq.size(0), d = cov.qq.size(1);
  if (weight.numel() != channels * d || channels % groups != 0 || initial.sizes() != weight.sizes() ||
      scale.numel() != channels || (base.defined() && base.sizes() != weight.sizes()))
    fail("reconstruct_rounding", "weight [O, D...] with O divisible by the " + std::to_string(groups) +
         " groups of covariances [G, " + std::to_string(d) + ", " + std::to_string(d) + "], matching scale, base and initial",
         "weight " + c10::str(weight.sizes()) + ", initial " + c10::str(initial.sizes()) + ", scale " + c10::str(scale.sizes()));
  at::NoGradGuard no_grad;  // gradients are written out below
  const std::vector<int64_t> grouped{groups, channels / groups, d};
  const at::Tensor w = weight.to(at::kFloat).reshape(grouped);
  const at::Tensor b = base.defined() ? base.to(at::kFloat).reshape(grouped) : at::zeros_like(w);
  const at::Tensor s = scale.to(at::kFloat).reshape({groups, channels / groups, 1});
  const at::Tensor cqq = cov.qq.to(at::kFloat);
  // The output error up to its constant, sum_o w_s C_qq w_s^T - 2 w_s t^T with
  // t = W C_qf^T, and its gradient 2 (W_s C_qq - t) (C_qq is symmetric).
  const at::Tensor t = batched_matmul(w, cov.qf.to(at::kFloat).transpose(1, 2), false);
  const double reference = std::max(1e-30, (batched_matmul(w, cov.ff.to(at::kFloat), false) * w).sum().item<double>());
  const at::Tensor grid = table ? levels.to(at::kFloat).contiguous() : at::Tensor();
  const double lo = table ? grid[0].item<double>() : static_cast<double>(range.qmin());
  const double hi = table ? grid[-1].item<double>() : static_cast<double>(range.qmax());
  auto relative_error = [&](const at::Tensor& q) {
    const at::Tensor ws = b + s * q;
    const double e = (batched_matmul(ws, cqq, false) * ws).sum().item<double>() - 2.0 * (t * ws).sum().item<double>();
    return (e + reference) / reference;
  };
  // dE/dq / reference, and the mask of q strictly inside the clamp.
  auto error_gradient = [&](const at::Tensor& q_unclamped) {
    const at::Tensor q = q_unclamped.clamp(lo, hi);
    const at::Tensor ws = b + s * q;
    const at::Tensor inside = (q_unclamped > lo).logical_and(q_unclamped < hi).to(at::kFloat);
    return (batched_matmul(ws, cqq, false) - t) * s * inside * (2.0 / reference);
  };

  const at::Tensor q0 = initial.to(at::kFloat).reshape(grouped);
  const at::Tensor x = (w - b) / s;
  // Rounding down and up: floor(x) and floor(x) + 1, or the table's levels
  // lower <= x <= lower + gap (the outermost pair beyond its ends).
  const at::Tensor floor_x = x.floor();
  at::Tensor lower = floor_x, gap;
  if (table) {
    const at::Tensor k = (at::searchsorted(grid, x.contiguous(), false, /*right=*/true) - 1).clamp(0, grid.size(0) - 2);
    lower = grid.index_select(0, k.reshape({-1})).reshape(x.sizes());
    gap = grid.index_select(0, (k + 1).reshape({-1})).reshape(x.sizes()) - lower;
  }
  at::Tensor parameter;
  if (o.method == Reconstruction::kAdaRound) {
    // h(V) = x - floor(x) at the start: sigmoid(V) = (frac - gamma) / (zeta - gamma).
    const at::Tensor frac = table ? ((x - lower) / gap).clamp(0.0, 1.0) : x - floor_x;
    const at::Tensor p = ((frac - kGamma) / (kZeta - kGamma)).clamp(1e-4, 1 - 1e-4);
    parameter = at::log(p / (1 - p));
  } else {
    parameter = x.clone();
  }
  Adam adam;
  const int warmup = o.iterations / 5;
  const double per_weight = o.regularization / static_cast<double>(w.numel());
  for (int step = 0; step < o.iterations; ++step) {
    at::Tensor gradient;
    if (o.method == Reconstruction::kAdaRound) {
      const at::Tensor sig = at::sigmoid(parameter);
      const at::Tensor raw = sig * (kZeta - kGamma) + kGamma;
      const at::Tensor h = raw.clamp(0.0, 1.0);
      at::Tensor dh = table ? error_gradient(lower + h * gap) * gap : error_gradient(floor_x + h);
      if (step >= warmup) {
        // d/dh of lambda * mean(1 - |2h - 1|^beta) = -lambda/N * 2 beta |2h - 1|^(beta - 1) sign(2h - 1).
        const double progress = static_cast<double>(step - warmup) / std::max(1, o.iterations - warmup);
        const double beta = 20.0 + (2.0 - 20.0) * progress;
        const at::Tensor u = 2.0 * h - 1.0;
        dh = dh - (2.0 * beta * per_weight) * u.abs().pow(beta - 1.0) * u.sign();
      }
      const at::Tensor inside = (raw > 0.0).logical_and(raw < 1.0).to(at::kFloat);
      gradient = dh * sig * (1.0 - sig) * (kZeta - kGamma) * inside;
    } else {
      gradient = error_gradient(parameter.round());  // straight-through: d round(u) / du = 1
    }
    adam.update(parameter, gradient, o.learning_rate);
  }
  const at::Tensor up = (at::sigmoid(parameter) * (kZeta - kGamma) + kGamma >= 0.5).to(at::kFloat);
  at::Tensor q = table ? lower + up * gap
                 : o.method == Reconstruction::kAdaRound ? (floor_x + up).clamp(lo, hi)
                                                         : parameter.round().clamp(lo, hi);
  // AdaRound's relaxation ends near, not at, a minimum of the integer problem:
  // exact single-integer moves finish the job (AdaRound: floor or floor + 1;
  // AdaQuant: any step of one that stays in range).
  const at::Tensor allowed_lo = table ? lower : o.method == Reconstruction::kAdaRound ? floor_x.clamp(lo, hi) : at::full_like(q, lo);
  const at::Tensor allowed_hi = table ? lower + gap
                                : o.method == Reconstruction::kAdaRound ? (floor_x + 1).clamp(lo, hi) : at::full_like(q, hi);
  q = refine_by_single_moves(q, b, s, cov.qq, t, allowed_lo, allowed_hi, gap);
  double error = relative_error(q);
  // The same moves from the starting integers sometimes end lower still (on a
  // table: the nearer of the two levels to the start).
  const at::Tensor start = table ? at::where((q0 - allowed_hi).abs() < (q0 - allowed_lo).abs(), allowed_hi, allowed_lo)
                                 : at::max(at::min(q0, allowed_hi), allowed_lo);
  const at::Tensor from_start = refine_by_single_moves(start, b, s, cov.qq, t, allowed_lo, allowed_hi, gap);
  if (const double e = relative_error(from_start); e < error) q = from_start, error = e;
  RoundingResult r;
  r.error_before = relative_error(q0);
  r.error_after = error;
  r.changed = q.ne(q0).to(at::kDouble).mean().item<double>();
  // Never worse than the start on the objective itself.
  if (r.error_after > r.error_before) {
    r.q = initial.to(at::kChar).clone();
    r.error_after = r.error_before, r.changed = 0.0;
  } else {
    r.q = q.reshape(weight.sizes()).to(at::kChar);
  }
  return r;
}

}  // namespace dfq
