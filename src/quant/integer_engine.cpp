#include "quant/integer_engine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "core/error.h"
#include "core/execute.h"
#include "core/op.h"
#include "quant/dyadic.h"
#include "quant/requantize_avx2.h"
#include "quant/simulate.h"

namespace dfq {
namespace {


at::ScalarType storage_type(QuantRange r) { return r.is_signed ? at::kChar : at::kByte; }

// 4-D values live in channels-last order, so a pixel's channels are contiguous.
at::Tensor dense(const at::Tensor& t) {
  return t.dim() == 4 ? t.contiguous(at::MemoryFormat::ChannelsLast) : t.contiguous();
}
at::Tensor empty_like_layout(at::IntArrayRef sizes, at::ScalarType type) {
  return sizes.size() == 4 ? at::empty(sizes, at::TensorOptions(type).memory_format(at::MemoryFormat::ChannelsLast))
                           : at::empty(sizes, at::TensorOptions(type));
}

// Calls f with a null pointer of the C++ type of an int8/uint8 tensor.
template <class F>
void with_int_type(at::ScalarType type, F&& f) {
  if (type == at::kChar) f(static_cast<int8_t*>(nullptr));
  else if (type == at::kByte) f(static_cast<uint8_t*>(nullptr));
  else fail("integer engine value", "int8 or uint8", std::string(c10::toString(type)));
}

struct Bounds {
  int64_t lo = 0, hi = 0;
};

// Per-channel requantization constants, repeated for `tile_rows` pixels so
// the loops run over long contiguous spans (a pixel has only 16-64 channels,
// too few iterations for vector code).
struct ChannelRequant {
  int64_t tile_rows = 1;
  std::vector<int64_t> bias, multiplier, shift, half, residual_shift;
  std::vector<int64_t> multiplier_b;  // an Add reading an accumulator: the other input's multiplier
  // The AVX2 loops' copy (requantize_avx2.h), when its preconditions hold.
  detail::avx2::Requant32 fast;
  bool has_fast = false;
  // Repeats the constants for tile_rows pixels, then prepares `fast` for
  // |acc + bias| <= bound.
  void tile(int64_t channels, int64_t bound) {
    tile_rows = std::max<int64_t>(1, 512 / channels);
    for (std::vector<int64_t>* v : {&bias, &multiplier, &shift, &half, &residual_shift, &multiplier_b}) {
      if (v->empty()) continue;
      std::vector<int64_t> one = *v;
      v->clear();
      for (int64_t r = 0; r < tile_rows; ++r) v->insert(v->end(), one.begin(), one.end());
    }
    has_fast = detail::avx2::prepare_requant32(bias.data(), multiplier.data(),
                                               multiplier_b.empty() ? nullptr : multiplier_b.data(), shift.data(),
                                               static_cast<int64_t>(bias.size()), bound, fast);
  }
};

int64_t max_abs(QuantRange r) { return std::max(std::abs(r.qmin()), std::abs(r.qmax())); }

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define DFQ_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))  // AVX-512 with 64-bit multiplies
#define DFQ_TARGET_AVX2 __attribute__((target("avx2")))
#else
#define DFQ_TARGET_AVX512
#define DFQ_TARGET_AVX2
#endif
// name(isa, args...) runs body(args...) compiled for `isa` (int_loop_isa():
// the CPU's best, or the forced kernel path's, so the tests run every build).
// body is an always_inline template; the three builds are its instances.
#define DFQ_LOOP_VARIANTS(name, body)                                                                     \
  template <class... T>                                                                                   \
  DFQ_TARGET_AVX512 void name##_avx512(const T&... a) {                                                   \
    body(a...);                                                                                           \
  }                                                                                                       \
  template <class... T>                                                                                   \
  DFQ_TARGET_AVX2 void name##_avx2(const T&... a) {                                                       \
    body(a...);                                                                                           \
  }                                                                                                       \
  template <class... T>                                                                                   \
  void name##_baseline(const T&... a) {                                                                   \
    body(a...);                                                                                           \
  }                                                                                                       \
  template <class... T>                                                                                   \
  void name(LoopIsa isa, const T&... a) {                                                                 \
    if (isa == LoopIsa::kAvx512) name##_avx512(a...);                                                     \
    else if (isa == LoopIsa::kAvx2) name##_avx2(a...);                                                    \
    else name##_baseline(a...);                                                                           \
  }

// A span of whole pixels of a Conv2d/Linear (n <= the tiled constants'
// length): out[i] = clamp(round((acc[i] [<< k[i] + acc2[i]] + bias[i]) * m[i] /
// 2^s[i])) with the constants of i's channel; trace (may be null) gets the
// combined accumulators.
template <class Out>
inline __attribute__((always_inline)) void requantize_row_body(const int32_t* __restrict acc,
                                                               const int32_t* __restrict acc_residual, int64_t channels,
                                                               const ChannelRequant& c, int64_t lo, int64_t hi,
                                                               Out* __restrict out, int64_t* __restrict trace) {
  // __restrict: outputs never alias inputs, so the loops vectorize without runtime checks.
  const int64_t* __restrict bias = c.bias.data();
  const int64_t* __restrict m = c.multiplier.data();
  const int64_t* __restrict s = c.shift.data();
  const int64_t* __restrict half = c.half.data();
  if (acc_residual) {
    const int64_t* __restrict k = c.residual_shift.data();
    for (int64_t o = 0; o < channels; ++o) {
      const int64_t v = shift_left(acc[o], k[o]) + acc_residual[o] + bias[o];
      if (trace) trace[o] = v;
      const int64_t q = round_shift_branchless(v * m[o], s[o], half[o]);
      out[o] = static_cast<Out>(q < lo ? lo : q > hi ? hi : q);
    }
  } else if (trace) {
    for (int64_t o = 0; o < channels; ++o) {
      const int64_t v = int64_t{acc[o]} + bias[o];
      trace[o] = v;
      const int64_t q = round_shift_branchless(v * m[o], s[o], half[o]);
      out[o] = static_cast<Out>(q < lo ? lo : q > hi ? hi : q);
    }
  } else {
    for (int64_t o = 0; o < channels; ++o) {
      const int64_t q = round_shift_branchless((int64_t{acc[o]} + bias[o]) * m[o], s[o], half[o]);
      out[o] = static_cast<Out>(q < lo ? lo : q > hi ? hi : q);
    }
  }
}
DFQ_LOOP_VARIANTS(requantize_row, requantize_row_body)

// out[i] = clamp(round((a[i] m_a + b[i] m_b) / 2^s)), the integer residual add.
template <class A, class B, class Out>
inline __attribute__((always_inline)) void add_body(const A* __restrict a, const B* __restrict b, int64_t n, Dyadic ma,
                                                    Dyadic mb, int64_t lo, int64_t hi, Out* __restrict out) {
  const int64_t half = ma.shift > 0 ? int64_t{1} << (ma.shift - 1) : 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t q = round_shift_branchless(int64_t{a[i]} * ma.multiplier + int64_t{b[i]} * mb.multiplier, ma.shift, half);
    out[i] = static_cast<Out>(q < lo ? lo : q > hi ? hi : q);
  }
}
DFQ_LOOP_VARIANTS(add_requantize, add_body)

// Combines accumulators, adds the bias and requantizes, row by row: rows are
// pixels, channels contiguous.
template <class Out>
void finish_weight_rows(const int32_t* acc, const int32_t* acc_residual, int64_t rows, int64_t channels,
                        const ChannelRequant& c, Bounds b, Out* out, int64_t* trace) {
  const LoopIsa isa = int_loop_isa();
  // requantize_avx2.h where its preconditions hold: faster than the int64 loops on AVX-512 too.
  const bool fast = isa != LoopIsa::kBaseline && c.has_fast && !acc_residual && !trace;
  const int64_t tiles = (rows + c.tile_rows - 1) / c.tile_rows;
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t * c.tile_rows * channels;
      const int64_t n = std::min(c.tile_rows, rows - t * c.tile_rows) * channels;
      if (fast) detail::avx2::requantize32(c.fast, acc + i, n, static_cast<int32_t>(b.lo), static_cast<int32_t>(b.hi), out + i);
      else requantize_row(isa, acc + i, acc_residual ? acc_residual + i : nullptr, n, c, b.lo, b.hi, out + i,
                          trace ? trace + i : nullptr);
    }
  });
}

// combined[i] = (acc[i] << k[c]) + acc_residual[i], c the channel of i.
void combine_residual(const int32_t* acc, const int32_t* acc_residual, int64_t rows, int64_t channels,
                      const std::vector<int64_t>& shift, int64_t* combined) {
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t o = 0; o < channels; ++o) {
        const int64_t i = r * channels + o;
        combined[i] = shift_left(acc[i], shift[static_cast<size_t>(o)]) + acc_residual[i];
      }
  });
}

std::vector<int64_t> channel_shape(int64_t dims, int64_t channels) {
  std::vector<int64_t> shape(static_cast<size_t>(dims), 1);
  shape[1] = channels;
  return shape;
}

// A span of whole pixels of an Add that reads an accumulator:
// out[i] = clamp(round(((acc[i] + bias[i]) m[i] + b[i] m_b[i]) / 2^s[i])).
template <class Acc, class B, class Out>
inline __attribute__((always_inline)) void add_accumulator_body(const Acc* __restrict acc, const B* __restrict b,
                                                                int64_t n, const ChannelRequant& c, int64_t lo,
                                                                int64_t hi, Out* __restrict out) {
  const int64_t* __restrict bias = c.bias.data();
  const int64_t* __restrict m = c.multiplier.data();
  const int64_t* __restrict mb = c.multiplier_b.data();
  const int64_t* __restrict s = c.shift.data();
  const int64_t* __restrict half = c.half.data();
  for (int64_t o = 0; o < n; ++o) {
    const int64_t q = round_shift_branchless((int64_t{acc[o]} + bias[o]) * m[o] + int64_t{b[o]} * mb[o], s[o], half[o]);
    out[o] = static_cast<Out>(q < lo ? lo : q > hi ? hi : q);
  }
}
DFQ_LOOP_VARIANTS(add_accumulator_row, add_accumulator_body)

// The Add of an accumulator (int32 or int64, channels-last) and a quantized
// value of the same shape, tile by tile.
void add_accumulator(const at::Tensor& acc, const at::Tensor& other, const ChannelRequant& c, Bounds bounds,
                     at::Tensor& out) {
  const int64_t channels = acc.size(1), rows = acc.numel() / channels;
  const int64_t tiles = (rows + c.tile_rows - 1) / c.tile_rows;
  const LoopIsa isa = int_loop_isa();
  const bool fast = isa != LoopIsa::kBaseline && c.has_fast;  // int32 accumulators only
  auto run = [&](const auto* pa) {
    with_int_type(other.scalar_type(), [&](auto* tb) {
      using B = std::remove_pointer_t<decltype(tb)>;
      with_int_type(out.scalar_type(), [&](auto* to) {
        using O = std::remove_pointer_t<decltype(to)>;
        const B* pb = reinterpret_cast<const B*>(other.data_ptr());
        O* po = reinterpret_cast<O*>(out.data_ptr());
        at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
          for (int64_t t = begin; t < end; ++t) {
            const int64_t i = t * c.tile_rows * channels;
            const int64_t n = std::min(c.tile_rows, rows - t * c.tile_rows) * channels;
            if constexpr (std::is_same_v<std::remove_cv_t<std::remove_pointer_t<decltype(pa)>>, int32_t>) {
              if (fast) {
                detail::avx2::add_requantize32(c.fast, pa + i, pb + i, n, static_cast<int32_t>(bounds.lo),
                                               static_cast<int32_t>(bounds.hi), po + i);
                continue;
              }
            }
            add_accumulator_row(isa, pa + i, pb + i, n, c, bounds.lo, bounds.hi, po + i);
          }
        });
      });
    });
  };
  if (acc.scalar_type() == at::kInt) run(acc.data_ptr<int32_t>());
  else if (acc.scalar_type() == at::kLong) run(acc.data_ptr<int64_t>());
  else fail("integer engine accumulator", "int32 or int64", std::string(c10::toString(acc.scalar_type())));
}

// Window sums (int64) requantized by ratio / divisor; x channels-last.
at::Tensor average_pool(const PoolGeometry& geo, const at::Tensor& x, double ratio, QuantRange range) {
  const int64_t batch = x.size(0), channels = x.size(1), h = x.size(2), w = x.size(3);
  std::map<int64_t, Dyadic> by_divisor;  // computed once per call, outside the loops
  std::vector<Dyadic> multiplier;
  for (const PoolWindow& win : geo.windows) {
    auto it = by_divisor.find(win.divisor);
    if (it == by_divisor.end())
      it = by_divisor.emplace(win.divisor, to_dyadic(ratio / static_cast<double>(win.divisor))).first;
    multiplier.push_back(it->second);
  }
  at::Tensor out = empty_like_layout({batch, channels, geo.out_h, geo.out_w}, storage_type(range));
  const int64_t lo = range.qmin(), hi = range.qmax();
  with_int_type(x.scalar_type(), [&](auto* tx) {
    using X = std::remove_pointer_t<decltype(tx)>;
    with_int_type(out.scalar_type(), [&](auto* ty) {
      using Y = std::remove_pointer_t<decltype(ty)>;
      const X* px = reinterpret_cast<const X*>(x.data_ptr());
      Y* py = reinterpret_cast<Y*>(out.data_ptr());
      const int64_t positions = static_cast<int64_t>(geo.windows.size());
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        std::vector<int64_t> sum(static_cast<size_t>(channels));
        for (int64_t b = begin; b < end; ++b)
          for (int64_t k = 0; k < positions; ++k) {
            const PoolWindow& win = geo.windows[static_cast<size_t>(k)];
            std::fill(sum.begin(), sum.end(), 0);
            for (int64_t i = win.h0; i < win.h1; ++i)
              for (int64_t j = win.w0; j < win.w1; ++j) {
                const X* pixel = px + ((b * h + i) * w + j) * channels;
                for (int64_t c = 0; c < channels; ++c) sum[static_cast<size_t>(c)] += pixel[c];
              }
            Y* o = py + (b * positions + k) * channels;
            const Dyadic m = multiplier[static_cast<size_t>(k)];
            for (int64_t c = 0; c < channels; ++c)
              o[c] = static_cast<Y>(clamp_to(requantize(sum[static_cast<size_t>(c)], m), lo, hi));
          }
      });
    });
  });
  return geo.keep_4d ? out : out.reshape({batch, channels});
}

// Applies y[i] = f(x[i]) elementwise over int8/uint8 tensors of one shape.
template <class F>
void map_integers(const at::Tensor& x, at::Tensor& y, F&& f) {
  with_int_type(x.scalar_type(), [&](auto* tx) {
    using X = std::remove_pointer_t<decltype(tx)>;
    with_int_type(y.scalar_type(), [&](auto* ty) {
      using Y = std::remove_pointer_t<decltype(ty)>;
      const X* px = reinterpret_cast<const X*>(x.data_ptr());
      Y* py = reinterpret_cast<Y*>(y.data_ptr());
      at::parallel_for(0, x.numel(), 4096, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) py[i] = static_cast<Y>(f(int64_t{px[i]}));
      });
    });
  });
}

}  // namespace

// ---------------------------------------------------------------------------
// Steps: one prepared object per node, by the node's quantization role (op.h).

// What a step's constructor reads.
struct IntegerEngine::Context {
  const QuantizedModel& model;
  const Graph& graph;
  const ActivationPoints& points;
  IntKernel kernel;
  const std::vector<std::unique_ptr<Step>>& steps;  // those of earlier nodes

  const ActivationQuant& point_of(int id) const {
    const int src = points.scale_source[static_cast<size_t>(id)];
    const auto it = model.activations.find(src);
    if (src < 0 || it == model.activations.end())
      fail("integer engine: node '" + graph.node(id).name + "'", "a quantized value", "no quantization point");
    return it->second;
  }
  const ActivationQuant& own_point(const Node& n) const { return point_of(n.id); }
};

class IntegerEngine::Step {
 public:
  virtual ~Step() = default;
  // The node's value from its inputs' values (`input`: the network input;
  // `trace`, when not null, receives a Conv2d/Linear's int64 accumulators).
  virtual at::Tensor run(const std::vector<at::Tensor>& in, const at::Tensor& input, at::Tensor* trace) const = 0;
  virtual int64_t weight_bytes() const { return 0; }
  std::vector<Dyadic> multipliers;  // for the report; empty when none is fixed
};

namespace {

using Step = IntegerEngine::Step;
using Context = IntegerEngine::Context;

// Output bounds of a point: its range, narrowed by a clamp applied before it:
// round(clamp(x, a, b) / s) = clamp(round(x / s), round(a / s), round(b / s)).
Bounds bounds_of(const ActivationQuant& q, const Node* clamp) {
  Bounds b{q.range.qmin(), q.range.qmax()};
  if (!clamp) return b;
  const auto [lo, hi] = clamp->op->bounds(*clamp);
  auto rounded = [&](double v) { return std::copysign(std::floor(std::fabs(v) / q.scale + 0.5), v); };
  if (std::isfinite(lo)) b.lo = std::max<int64_t>(b.lo, static_cast<int64_t>(std::max(rounded(lo), -1e15)));
  if (std::isfinite(hi)) b.hi = std::min<int64_t>(b.hi, static_cast<int64_t>(std::min(rounded(hi), 1e15)));
  return b;
}

class InputStep : public Step {
 public:
  explicit InputStep(const ActivationQuant& q) : q_(q) {}
  at::Tensor run(const std::vector<at::Tensor>&, const at::Tensor& input, at::Tensor*) const override {
    return dense(quantize(input.to(at::kFloat), at::scalar_tensor(q_.scale), q_.range).to(storage_type(q_.range)));
  }

 private:
  ActivationQuant q_;
};

// Conv2d/Linear: acc = sum w q [+ residual], then one of: requantized to its
// point (with an absorbed clamp's bounds), handed to an Add as the
// accumulator, or (the graph output) converted to float as acc * unit.
class WeightedStep : public Step {
 public:
  enum class Output { kPoint, kToAdd, kFloat };

  WeightedStep(const Context& c, const Node& n, Output output) : output_(output) {
    const WeightQuant& w = c.model.weights.at(n.id);
    const ActivationQuant& in = c.point_of(n.inputs[0]);
    // <= 4-bit integers stay packed in memory; a lookup table's levels span int8.
    const WeightStorage storage =
        w.range.bits <= 4 && !w.lut.defined() ? WeightStorage::kPacked4 : WeightStorage::kInt8;
    if (n.op == Op::Conv2d) {
      const auto& a = n.attrs;
      const IntConvGeometry geo{a.list("stride")[0], a.list("stride")[1], a.list("padding")[0], a.list("padding")[1],
                                a.list("dilation")[0], a.list("dilation")[1], a.i("groups")};
      conv_ = std::make_unique<IntConv2d>(w.q, geo, c.kernel, storage);
      if (w.residual.defined()) conv_residual_ = std::make_unique<IntConv2d>(w.residual, geo, c.kernel, storage);
    } else {
      linear_ = std::make_unique<IntLinear>(w.q, c.kernel, storage);
      if (w.residual.defined()) linear_residual_ = std::make_unique<IntLinear>(w.residual, c.kernel, storage);
    }
    const at::Tensor bias = integer_bias(w, in.scale), unit = accumulator_unit(w, in.scale);
    const int64_t channels = w.q.size(0);
    bias_.assign(bias.data_ptr<int64_t>(), bias.data_ptr<int64_t>() + channels);
    unit_.assign(unit.data_ptr<double>(), unit.data_ptr<double>() + channels);
    if (w.residual.defined()) {
      const at::Tensor k = w.residual_shift.to(at::kLong).contiguous();
      residual_shift_.assign(k.data_ptr<int64_t>(), k.data_ptr<int64_t>() + channels);
    }
    worst_ = worst_accumulator(w, in);
    if (output_ != Output::kPoint) return;
    const int clamp = c.points.absorbed_clamp[static_cast<size_t>(n.id)];
    const ActivationQuant& out = c.point_of(clamp >= 0 ? clamp : n.id);
    range_ = out.range;
    bounds_ = bounds_of(out, clamp >= 0 ? &c.graph.node(clamp) : nullptr);
    const int bits = multiplier_bits_for(worst_);
    requant_.bias = bias_;
    requant_.residual_shift = residual_shift_;
    for (int64_t o = 0; o < channels; ++o) {
      const Dyadic d = to_dyadic(unit_[static_cast<size_t>(o)] / out.scale, bits);
      multipliers.push_back(d);
      requant_.multiplier.push_back(d.multiplier);
      requant_.shift.push_back(d.shift);
      requant_.half.push_back(d.shift > 0 ? int64_t{1} << (d.shift - 1) : 0);
    }
    requant_.tile(channels, worst_);
  }

  at::Tensor run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor* trace_out) const override;
  int64_t weight_bytes() const override {
    int64_t bytes = 0;
    for (const auto* conv : {conv_.get(), conv_residual_.get()})
      if (conv) bytes += conv->weight_bytes();
    for (const auto* linear : {linear_.get(), linear_residual_.get()})
      if (linear) bytes += linear->weight_bytes();
    return bytes;
  }

  // Max over channels of sum |w| * max|q_in| (+ the residual's, shifted) + |bias|.
  int64_t worst_accumulator(const WeightQuant& w, const ActivationQuant& in) const {
    const int64_t channels = w.q.size(0);
    const at::Tensor l1 = w.q.to(at::kLong).abs().reshape({channels, -1}).sum(1);
    const at::Tensor l1_residual =
        w.residual.defined() ? w.residual.to(at::kLong).abs().reshape({channels, -1}).sum(1) : at::zeros_like(l1);
    int64_t worst = 0;
    for (int64_t o = 0; o < channels; ++o) {
      const int64_t k = residual_shift_.empty() ? 0 : residual_shift_[static_cast<size_t>(o)];
      const int64_t acc = ((l1[o].item<int64_t>() << k) + l1_residual[o].item<int64_t>()) * max_abs(in.range) +
                          std::abs(bias_[static_cast<size_t>(o)]);
      worst = std::max(worst, acc);
    }
    return worst;
  }

  Output output_;
  std::unique_ptr<IntConv2d> conv_, conv_residual_;
  std::unique_ptr<IntLinear> linear_, linear_residual_;
  std::vector<int64_t> residual_shift_, bias_;
  std::vector<double> unit_;  // real value of one accumulator unit, per channel
  int64_t worst_ = 0;
  QuantRange range_;
  Bounds bounds_;
  ChannelRequant requant_;
};

at::Tensor WeightedStep::run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor* trace_out) const {
  const at::Tensor x = dense(in[0]);
  const at::Tensor acc = conv_ ? conv_->accumulate(x) : linear_->accumulate(x);
  at::Tensor acc_residual;
  if (conv_residual_) acc_residual = conv_residual_->accumulate(x);
  if (linear_residual_) acc_residual = linear_residual_->accumulate(x);
  const int64_t channels = acc.size(1), rows = acc.numel() / channels;
  const int32_t* a = acc.data_ptr<int32_t>();
  const int32_t* ar = acc_residual.defined() ? acc_residual.data_ptr<int32_t>() : nullptr;
  at::Tensor trace;
  if (trace_out || output_ == Output::kFloat) trace = empty_like_layout(acc.sizes(), at::kLong);
  at::Tensor out;
  if (output_ == Output::kToAdd) {
    // The Add requantizes; it reads acc (int32) or, with a residual tensor,
    // the combined (acc << k) + acc2 (int64).
    out = acc;
    if (ar) {
      out = empty_like_layout(acc.sizes(), at::kLong);
      combine_residual(a, ar, rows, channels, residual_shift_, out.data_ptr<int64_t>());
    }
    if (trace.defined()) {
      trace.copy_(out);
      trace += at::tensor(bias_, at::kLong).reshape(channel_shape(acc.dim(), channels));
    }
  } else if (output_ == Output::kFloat) {
    // The logits: acc * unit, the one conversion to float.
    int64_t* t = trace.data_ptr<int64_t>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < channels; ++o) {
        const int64_t i = r * channels + o;
        const size_t c = static_cast<size_t>(o);
        t[i] = (ar ? int64_t{a[i]} * (int64_t{1} << residual_shift_[c]) + ar[i] : int64_t{a[i]}) + bias_[c];
      }
    const at::Tensor unit = at::tensor(unit_, at::kDouble);
    out = (trace.to(at::kDouble) * unit.reshape(channel_shape(acc.dim(), channels))).to(at::kFloat);
  } else {
    out = empty_like_layout(acc.sizes(), storage_type(range_));
    with_int_type(out.scalar_type(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      finish_weight_rows<T>(a, ar, rows, channels, requant_, bounds_, reinterpret_cast<T*>(out.data_ptr()),
                            trace.defined() ? trace.data_ptr<int64_t>() : nullptr);
    });
  }
  if (trace_out) *trace_out = trace;
  return out;
}

// The multiplier width of y = round((x_a m_a + x_b m_b) / 2^s), |x_a| <=
// bound_a, |x_b| <= 255, the larger ratio getting the width: the widest that
// keeps sum |x_i m_i| below 2^61. The accumulator's ratio is often 1e-4 of the
// other's; with 31 bits for the larger it kept only ~17 bits, enough to round
// a value the other way now and then (ResNet-50 at 224: about 4 in 10,000 of a
// block's outputs), which deep random-weight networks amplify.
int sum_multiplier_bits(double ratio_a, int64_t bound_a, double ratio_b) {
  const double largest = std::max(std::fabs(ratio_a), std::fabs(ratio_b));
  const double total = static_cast<double>(bound_a) * std::fabs(ratio_a) + 255.0 * std::fabs(ratio_b);
  return static_cast<int>(std::clamp(std::floor(61.0 - std::log2(total / largest)), 1.0, 62.0));
}

// Add: q_out = clamp(round((q_a m_a + q_b m_b) / 2^s)); when one input is a
// Conv2d/Linear accumulator, per channel with its bias.
class AddStep : public Step {
 public:
  AddStep(const Context& c, const Node& n) : name_(n.name) {
    const int clamp = c.points.absorbed_clamp[static_cast<size_t>(n.id)];
    const ActivationQuant& out = c.point_of(clamp >= 0 ? clamp : n.id);
    range_ = out.range;
    bounds_ = bounds_of(out, clamp >= 0 ? &c.graph.node(clamp) : nullptr);
    const double alpha = n.attrs.f("alpha");
    accumulator_input_ = c.points.accumulator_input[static_cast<size_t>(n.id)];
    if (accumulator_input_ < 0) {
      multipliers = to_dyadic_sum({c.point_of(n.inputs[0]).scale / out.scale,
                                   alpha * c.point_of(n.inputs[1]).scale / out.scale});
      return;
    }
    // One branch is a Conv2d/Linear accumulator (acc + bias in units unit[o]):
    // per channel, both branches on one shift.
    const int a = accumulator_input_, b = 1 - a;
    const auto& producer = static_cast<const WeightedStep&>(*c.steps[static_cast<size_t>(n.inputs[static_cast<size_t>(a)])]);
    const double weight_a = a == 1 ? alpha : 1.0, weight_b = b == 1 ? alpha : 1.0;
    const double ratio_b = weight_b * c.point_of(n.inputs[static_cast<size_t>(b)]).scale / out.scale;
    const int safe_bits = multiplier_bits_for(std::max<int64_t>(producer.worst_, 255));  // safe for any ratios
    requant_.bias = producer.bias_;
    for (size_t o = 0; o < producer.unit_.size(); ++o) {
      const double ratio_a = weight_a * producer.unit_[o] / out.scale;
      const int bits = std::max(safe_bits, sum_multiplier_bits(ratio_a, std::max<int64_t>(producer.worst_, 1), ratio_b));
      const std::vector<Dyadic> d = to_dyadic_sum({ratio_a, ratio_b}, bits);
      multipliers.insert(multipliers.end(), d.begin(), d.end());
      requant_.multiplier.push_back(d[0].multiplier);
      requant_.multiplier_b.push_back(d[1].multiplier);
      requant_.shift.push_back(d[0].shift);
      requant_.half.push_back(d[0].shift > 0 ? int64_t{1} << (d[0].shift - 1) : 0);
    }
    requant_.tile(static_cast<int64_t>(producer.unit_.size()), producer.worst_);
  }

  at::Tensor run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor*) const override {
    const at::Tensor a = dense(in[0]), b = dense(in[1]);
    if (a.sizes() != b.sizes()) fail("integer engine: add '" + name_ + "'", c10::str(a.sizes()), c10::str(b.sizes()));
    at::Tensor out = empty_like_layout(a.sizes(), storage_type(range_));
    if (accumulator_input_ >= 0) {
      add_accumulator(accumulator_input_ == 0 ? a : b, accumulator_input_ == 0 ? b : a, requant_, bounds_, out);
      return out;
    }
    const Dyadic ma = multipliers[0], mb = multipliers[1];
    const Bounds bounds = bounds_;
    const LoopIsa isa = int_loop_isa();
    with_int_type(a.scalar_type(), [&](auto* ta) {
      using A = std::remove_pointer_t<decltype(ta)>;
      with_int_type(b.scalar_type(), [&](auto* tb) {
        using B = std::remove_pointer_t<decltype(tb)>;
        with_int_type(out.scalar_type(), [&](auto* to) {
          using O = std::remove_pointer_t<decltype(to)>;
          const A* pa = reinterpret_cast<const A*>(a.data_ptr());
          const B* pb = reinterpret_cast<const B*>(b.data_ptr());
          O* po = reinterpret_cast<O*>(out.data_ptr());
          at::parallel_for(0, a.numel(), 4096, [&](int64_t begin, int64_t end) {
            add_requantize(isa, pa + begin, pb + begin, end - begin, ma, mb, bounds.lo, bounds.hi, po + begin);
          });
        });
      });
    });
    return out;
  }

 private:
  std::string name_;
  QuantRange range_;
  Bounds bounds_;
  int accumulator_input_ = -1;
  ChannelRequant requant_;
};

// A standalone clamp (one input) or a concatenation: each input requantized
// onto the output scale, clamped to the output's bounds.
class RescaleStep : public Step {
 public:
  RescaleStep(const Context& c, const Node& n) : dim_(n.op->role == QuantRole::kConcat ? n.attrs.i("dim") : -1) {
    const ActivationQuant& out = c.own_point(n);
    range_ = out.range;
    bounds_ = bounds_of(out, n.op->role == QuantRole::kClamp ? &n : nullptr);
    for (int in : n.inputs) multipliers.push_back(to_dyadic(c.point_of(in).scale / out.scale));
  }
  at::Tensor run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor*) const override {
    std::vector<at::Tensor> parts;
    for (size_t k = 0; k < in.size(); ++k) {
      const at::Tensor x = dense(in[k]);
      at::Tensor y = empty_like_layout(x.sizes(), storage_type(range_));
      const Dyadic m = multipliers[k];
      map_integers(x, y, [&](int64_t v) { return clamp_to(requantize(v, m), bounds_.lo, bounds_.hi); });
      parts.push_back(y);
    }
    return dim_ == -1 && parts.size() == 1 ? parts[0] : dense(at::cat(parts, dim_));
  }

 private:
  int64_t dim_;
  QuantRange range_;
  Bounds bounds_;
};

// Average pools and spatial means: window sums requantized per divisor.
class AverageStep : public Step {
 public:
  AverageStep(const Context& c, const Node& n) : node_(n), range_(c.own_point(n).range) {
    ratio_ = c.point_of(n.inputs[0]).scale / c.own_point(n).scale;
  }
  at::Tensor run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor*) const override {
    const at::Tensor x = dense(in[0]);
    return average_pool(node_.op->pool(node_, x.size(2), x.size(3)), x, ratio_, range_);
  }

 private:
  const Node& node_;
  QuantRange range_;
  double ratio_ = 1.0;
};

// A pointwise function on a <= 8-bit input: out = table[q - qmin], the table
// built in double: clamp(round(f(q s_in) / s_out)), rounding half away from zero.
class TableStep : public Step {
 public:
  TableStep(const Context& c, const Node& n) : range_(c.own_point(n).range) {
    const ActivationQuant& in = c.point_of(n.inputs[0]);
    lo_ = in.range.qmin();
    table_ = integer_table(n, in, c.own_point(n));
  }
  at::Tensor run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor*) const override {
    const at::Tensor x = dense(in[0]);
    at::Tensor y = empty_like_layout(x.sizes(), storage_type(range_));
    const int64_t* table = table_.data();
    const int64_t lo = lo_;
    map_integers(x, y, [&](int64_t v) { return table[v - lo]; });
    return y;
  }

 private:
  QuantRange range_;
  int64_t lo_ = 0;
  std::vector<int64_t> table_;
};

// Elementwise product with broadcasting: clamp(round(q_a q_b m / 2^s)), the
// product exact in int32 (|q| <= 255).
class MultiplyStep : public Step {
 public:
  MultiplyStep(const Context& c, const Node& n) : range_(c.own_point(n).range) {
    multipliers = {to_dyadic(c.point_of(n.inputs[0]).scale * c.point_of(n.inputs[1]).scale / c.own_point(n).scale)};
  }
  at::Tensor run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor*) const override {
    const at::Tensor product = dense(at::mul(in[0].to(at::kInt), in[1].to(at::kInt)));
    at::Tensor y = empty_like_layout(product.sizes(), storage_type(range_));
    const int32_t* p = product.data_ptr<int32_t>();
    const Dyadic m = multipliers[0];
    const int64_t lo = range_.qmin(), hi = range_.qmax();
    with_int_type(y.scalar_type(), [&](auto* ty) {
      using Y = std::remove_pointer_t<decltype(ty)>;
      Y* py = reinterpret_cast<Y*>(y.data_ptr());
      at::parallel_for(0, product.numel(), 4096, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) py[i] = static_cast<Y>(clamp_to(requantize(p[i], m), lo, hi));
      });
    });
    return y;
  }

 private:
  QuantRange range_;
};

// Bilinear resampling: each output the sum of its four inputs weighted by
// (2^F - l) and l per axis, l = round(lambda 2^F), requantized by
// s_in / (s_out 2^2F). F = 14: |sum| <= 255 * 2^28, so the multiplier keeps
// 26 bits (multiplier_bits_for).
class ResampleStep : public Step {
 public:
  static constexpr int kFractionBits = 14;
  ResampleStep(const Context& c, const Node& n) : node_(n), range_(c.own_point(n).range) {
    multipliers = {to_dyadic(c.point_of(n.inputs[0]).scale / c.own_point(n).scale / std::ldexp(1.0, 2 * kFractionBits),
                             multiplier_bits_for(int64_t{255} << (2 * kFractionBits)))};
  }
  at::Tensor run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor*) const override;

 private:
  const Node& node_;
  QuantRange range_;
};

at::Tensor ResampleStep::run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor*) const {
  const at::Tensor x = dense(in[0]);
  const int64_t batch = x.size(0), channels = x.size(1), h = x.size(2), w = x.size(3);
  ResampleAxis rows, cols;
  node_.op->resample(node_, h, w, rows, cols);
  auto fixed = [](const ResampleAxis& a) {
    std::vector<int64_t> l;
    for (double v : a.lambda) l.push_back(static_cast<int64_t>(std::lround(v * (1 << kFractionBits))));
    return l;
  };
  const std::vector<int64_t> lr = fixed(rows), lc = fixed(cols);
  const int64_t out_h = static_cast<int64_t>(rows.i0.size()), out_w = static_cast<int64_t>(cols.i0.size());
  at::Tensor out = empty_like_layout({batch, channels, out_h, out_w}, storage_type(range_));
  const Dyadic m = multipliers[0];
  const int64_t lo = range_.qmin(), hi = range_.qmax(), one = int64_t{1} << kFractionBits;
  with_int_type(x.scalar_type(), [&](auto* tx) {
    using X = std::remove_pointer_t<decltype(tx)>;
    with_int_type(out.scalar_type(), [&](auto* ty) {
      using Y = std::remove_pointer_t<decltype(ty)>;
      const X* px = reinterpret_cast<const X*>(x.data_ptr());
      Y* py = reinterpret_cast<Y*>(out.data_ptr());
      at::parallel_for(0, batch * out_h, 1, [&](int64_t begin, int64_t end) {
        for (int64_t bi = begin; bi < end; ++bi) {
          const int64_t b = bi / out_h, i = bi % out_h;
          const int64_t wr1 = lr[static_cast<size_t>(i)], wr0 = one - wr1;
          const X* r0 = px + (b * h + rows.i0[static_cast<size_t>(i)]) * w * channels;
          const X* r1 = px + (b * h + rows.i1[static_cast<size_t>(i)]) * w * channels;
          for (int64_t j = 0; j < out_w; ++j) {
            const int64_t wc1 = lc[static_cast<size_t>(j)], wc0 = one - wc1;
            const int64_t c0 = cols.i0[static_cast<size_t>(j)] * channels, c1 = cols.i1[static_cast<size_t>(j)] * channels;
            Y* o = py + ((b * out_h + i) * out_w + j) * channels;
            for (int64_t c = 0; c < channels; ++c) {
              const int64_t sum = wr0 * (wc0 * r0[c0 + c] + wc1 * r0[c1 + c]) + wr1 * (wc0 * r1[c0 + c] + wc1 * r1[c1 + c]);
              o[c] = static_cast<Y>(clamp_to(requantize(sum, m), lo, hi));
            }
          }
        }
      });
    });
  });
  return out;
}

// Data movement, exact on the integers (op.h kExact).
class ExactStep : public Step {
 public:
  explicit ExactStep(const Node& n) : node_(n) {}
  at::Tensor run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor*) const override {
    return node_.op->run_integer ? node_.op->run_integer(node_, in) : node_.op->run(node_, in);
  }

 private:
  const Node& node_;
};

// A clamp that the layer before it applied: its input is already the point.
class PassThroughStep : public Step {
 public:
  at::Tensor run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor*) const override { return in[0]; }
};

// The graph output (and a float tail before it) in float from the dequantized
// inputs: the one place the engine leaves integers.
class FloatStep : public Step {
 public:
  FloatStep(const Context& c, const Node& n) : node_(n) {
    for (int in : n.inputs)  // 0: the input is already float (a float tail)
      scales_.push_back(c.points.scale_source[static_cast<size_t>(in)] < 0 ? 0.0 : c.point_of(in).scale);
  }
  at::Tensor run(const std::vector<at::Tensor>& in, const at::Tensor&, at::Tensor*) const override {
    std::vector<at::Tensor> real;
    for (size_t k = 0; k < in.size(); ++k)
      real.push_back(scales_[k] == 0.0 ? in[k] : in[k].to(at::kFloat) * scales_[k]);
    return run_node(node_, real);
  }

 private:
  const Node& node_;
  std::vector<double> scales_;
};

// The step of one node: by its role, its place (the graph output, a float tail)
// and the passes' decisions (absorbed clamps, accumulators into adds).
std::unique_ptr<Step> make_step(const Context& c, const Node& n) {
  const Graph& g = c.graph;
  const size_t id = static_cast<size_t>(n.id);
  const int clamp = c.points.absorbed_clamp[id];
  // A layer whose clamp is the graph output runs to float with it.
  const bool to_float = n.id == g.output || (clamp >= 0 && clamp == g.output);
  if (n.op->integer_refusal) {
    const std::string refusal = n.op->integer_refusal(n);
    if (!refusal.empty()) fail("integer engine: node '" + n.name + "' (" + n.op->name + ")", "an op it can run on integers", refusal);
  }
  switch (n.op->role) {
    case QuantRole::kInput: return std::make_unique<InputStep>(c.own_point(n));
    case QuantRole::kWeighted: {
      using Output = WeightedStep::Output;
      const Output output = to_float ? Output::kFloat : c.points.scale_source[id] < 0 && clamp < 0 ? Output::kToAdd : Output::kPoint;
      return std::make_unique<WeightedStep>(c, n, output);
    }
    case QuantRole::kFolded:
      fail("integer engine: node '" + n.name + "'", "a BatchNorm folded into its convolution", "an unfolded one");
    default: break;
  }
  if (to_float) return std::make_unique<FloatStep>(c, n);
  switch (n.op->role) {
    case QuantRole::kAdd: return std::make_unique<AddStep>(c, n);
    case QuantRole::kClamp:
      if (n.inputs.size() == 1 && c.points.absorbed_clamp[static_cast<size_t>(n.inputs[0])] == n.id)
        return std::make_unique<PassThroughStep>();
      return std::make_unique<RescaleStep>(c, n);
    case QuantRole::kConcat: return std::make_unique<RescaleStep>(c, n);
    case QuantRole::kAverage: return std::make_unique<AverageStep>(c, n);
    case QuantRole::kTable: return std::make_unique<TableStep>(c, n);
    case QuantRole::kMultiply: return std::make_unique<MultiplyStep>(c, n);
    case QuantRole::kResample: return std::make_unique<ResampleStep>(c, n);
    default: return std::make_unique<ExactStep>(n);
  }
}

}  // namespace

std::vector<int64_t> integer_table(const Node& n, const ActivationQuant& in, const ActivationQuant& out) {
  if (in.range.bits > 8) fail("table of node '" + n.name + "'", "an input of at most 8 bits", std::to_string(in.range.bits) + " bits");
  std::vector<int64_t> table;
  for (int64_t q = in.range.qmin(); q <= in.range.qmax(); ++q) {
    const double y = n.op->pointwise(n, static_cast<double>(q) * in.scale) / out.scale;
    const double r = std::isfinite(y) ? std::copysign(std::floor(std::fabs(y) + 0.5), y) : 0.0;
    table.push_back(clamp_to(static_cast<int64_t>(std::max(std::min(r, 1e15), -1e15)), out.range.qmin(), out.range.qmax()));
  }
  return table;
}

IntegerEngine::~IntegerEngine() = default;

IntegerEngine::IntegerEngine(const QuantizedModel& model, IntKernel kernel) : graph_(model.graph) {
  // The engine multiplies only integers: its copy of the graph drops the float
  // weights of Conv2d/Linear nodes, so the kernels hold the only copy.
  for (Node& n : graph_.nodes)
    if (n.op->role == QuantRole::kWeighted) n.params.clear();
  output_ = graph_.output;
  const ActivationPoints points = activation_points(graph_);
  const Context context{model, graph_, points, kernel, steps_};
  for (const Node& n : graph_.nodes) {
    steps_.push_back(make_step(context, n));
    const Step& s = *steps_.back();
    if (n.op->role == QuantRole::kWeighted) {
      AccumulatorReport r{n.name, static_cast<const WeightedStep&>(s).worst_, 1, false};
      while (r.bits < 63 && (int64_t{1} << (r.bits - 1)) <= r.worst_case) ++r.bits;
      r.overflows_int16 = r.bits > 16;
      report_.push_back(r);
    }
    if (!s.multipliers.empty()) requantizations_.push_back({n.name, s.multipliers});
  }
}

at::Tensor IntegerEngine::forward(const at::Tensor& input) const {
  // Integer results do not depend on which images share a batch, so the batch
  // is cut into slices that each run the whole graph on one thread: a slice's
  // int32 accumulators stay in the core's cache between a convolution and its
  // requantization, and no op waits for the others at a parallel barrier.
  // (Inside the slices every at::parallel_for and oneDNN primitive runs serially.)
  const int threads = at::get_num_threads();
  const int64_t n = input.dim() == 4 ? input.size(0) : 0;
  if (threads <= 1 || n < 2 || at::in_parallel_region()) return run(input, nullptr, nullptr);
  const int64_t slice = std::min<int64_t>(kImagesPerSlice, (n + threads - 1) / threads);
  const int64_t slices = (n + slice - 1) / slice;
  std::vector<at::Tensor> logits(static_cast<size_t>(slices));
  at::parallel_for(0, slices, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k)
      logits[static_cast<size_t>(k)] = run(input.narrow(0, k * slice, std::min(slice, n - k * slice)), nullptr, nullptr);
  });
  return at::cat(logits, 0);
}

int64_t IntegerEngine::weight_bytes() const {
  int64_t bytes = 0;
  for (const auto& s : steps_) bytes += s->weight_bytes();
  return bytes;
}

at::Tensor IntegerEngine::forward(const at::Tensor& input, std::vector<at::Tensor>* values,
                                  std::vector<at::Tensor>* accumulators) const {
  return run(input, values, accumulators);
}

at::Tensor IntegerEngine::run(const at::Tensor& input, std::vector<at::Tensor>* values_out,
                              std::vector<at::Tensor>* accumulators) const {
  if (input.dim() != 4) fail("integer engine input", "N x C x H x W", c10::str(input.sizes()));
  std::vector<at::Tensor> values(steps_.size());
  if (accumulators) accumulators->assign(steps_.size(), at::Tensor());
  const std::vector<int> last_use = graph_.last_uses();  // values are released after their last reader
  std::vector<at::Tensor> in;
  for (const Node& n : graph_.nodes) {
    in.clear();
    for (int id : n.inputs) in.push_back(values[static_cast<size_t>(id)]);
    const size_t id = static_cast<size_t>(n.id);
    try {
      values[id] = steps_[id]->run(in, input, accumulators ? &(*accumulators)[id] : nullptr);
    } catch (const c10::Error& e) {
      fail("integer engine: node '" + n.name + "' (" + n.op->name + ")", "inputs it can compute on",
           std::string(e.what_without_backtrace()).substr(0, 200));
    }
    if (!values_out)
      for (int k : n.inputs)
        if (last_use[static_cast<size_t>(k)] == n.id) values[static_cast<size_t>(k)] = at::Tensor();
  }
  at::Tensor result = values[static_cast<size_t>(output_)];
  if (values_out) *values_out = std::move(values);
  return result.contiguous();
}

}  // namespace dfq
