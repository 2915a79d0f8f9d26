#include "quant/integer_engine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <map>

#include "core/error.h"
#include "core/execute.h"
#include "quant/dyadic.h"
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

// Output bounds of a point: its range, narrowed by a ReLU/Clamp applied before
// it: round(clamp(x, a, b) / s) = clamp(round(x / s), round(a / s), round(b / s)).
struct Bounds {
  int64_t lo = 0, hi = 0;
};
Bounds bounds_of(const ActivationQuant& q, const Node* activation) {
  Bounds b{q.range.qmin(), q.range.qmax()};
  if (!activation) return b;
  const double lo = activation->op == Op::ReLU ? 0.0 : activation->attrs.f("min");
  const double hi = activation->op == Op::ReLU ? INFINITY : activation->attrs.f("max");
  auto rounded = [&](double v) { return std::copysign(std::floor(std::fabs(v) / q.scale + 0.5), v); };
  if (std::isfinite(lo)) b.lo = std::max<int64_t>(b.lo, static_cast<int64_t>(std::max(rounded(lo), -1e15)));
  if (std::isfinite(hi)) b.hi = std::min<int64_t>(b.hi, static_cast<int64_t>(std::min(rounded(hi), 1e15)));
  return b;
}

// Per-channel requantization constants, repeated for `tile_rows` pixels so
// the loops run over long contiguous spans (a pixel has only 16-64 channels,
// too few iterations for vector code).
struct ChannelRequant {
  int64_t tile_rows = 1;
  std::vector<int64_t> bias, multiplier, shift, half, residual_shift;
  std::vector<int64_t> multiplier_b;  // an Add reading an accumulator: the other input's multiplier
  void tile(int64_t channels) {
    tile_rows = std::max<int64_t>(1, 512 / channels);
    for (std::vector<int64_t>* v : {&bias, &multiplier, &shift, &half, &residual_shift, &multiplier_b}) {
      if (v->empty()) continue;
      std::vector<int64_t> one = *v;
      v->clear();
      for (int64_t r = 0; r < tile_rows; ++r) v->insert(v->end(), one.begin(), one.end());
    }
  }
};

int64_t max_abs(QuantRange r) { return std::max(std::abs(r.qmin()), std::abs(r.qmax())); }

}  // namespace

struct IntegerEngine::Step {
  enum Kind { kInput, kWeight, kAdd, kActivation, kPool, kCat, kExact, kPassThrough, kFloatOutput };
  Kind kind = kExact;
  const Node* node = nullptr;
  // Output quantization (kInput, kWeight, kAdd, kActivation, kPool, kCat).
  double scale = 1.0;
  QuantRange range;
  Bounds bounds;
  bool float_output = false;  // kWeight: the graph output, acc * unit in float
  bool to_add = false;        // kWeight: read only by an Add, which requantizes the accumulator
  int accumulator_input = -1;  // kAdd: the input that is an accumulator (requant: per channel)
  int64_t worst_accumulator = 0;  // kWeight: max |acc + bias| over channels
  // kWeight
  std::unique_ptr<IntConv2d> conv, conv_residual;
  std::unique_ptr<IntLinear> linear, linear_residual;
  std::vector<int64_t> residual_shift, bias;
  ChannelRequant requant;          // kWeight: per output channel
  std::vector<Dyadic> multiplier;  // per input (kAdd, kCat), or one (kActivation)
  std::vector<double> unit;        // kWeight float output
  bool keep_4d = true;              // kPool: a Mean without keepdim returns N x C
  std::vector<double> input_scales;  // kPool, kFloatOutput
};

IntegerEngine::~IntegerEngine() = default;

IntegerEngine::IntegerEngine(const QuantizedModel& model, IntKernel kernel) : graph_(model.graph) {
  // The engine multiplies only integers: its copy of the graph drops the float
  // weights of Conv2d/Linear nodes, so the kernels hold the only copy.
  for (Node& n : graph_.nodes)
    if (n.op == Op::Conv2d || n.op == Op::Linear) n.params.clear();
  const Graph& g = graph_;  // steps point into the engine's own copy
  output_ = g.output;
  const ActivationPoints points = activation_points(g);
  std::vector<int> readers(g.nodes.size(), 0), sole_reader(g.nodes.size(), -1);
  for (const Node& n : g.nodes)
    for (int in : n.inputs) readers[static_cast<size_t>(in)]++, sole_reader[static_cast<size_t>(in)] = n.id;
  auto point_of = [&](int id) -> const ActivationQuant& {
    const int src = points.scale_source[static_cast<size_t>(id)];
    const auto it = model.activations.find(src);
    if (src < 0 || it == model.activations.end())
      fail("integer engine: node '" + g.node(id).name + "'", "a quantized value", "no quantization point");
    return it->second;
  };
  steps_.resize(g.nodes.size());
  for (const Node& n : g.nodes) {
    auto step = std::make_unique<Step>();
    Step& s = *step;
    s.node = &n;
    const size_t id = static_cast<size_t>(n.id);
    const bool is_output = n.id == g.output;
    // A Conv2d/Linear/Add that feeds only a ReLU/Clamp point produces that point.
    const Node* fused = nullptr;
    // (When that activation is the graph output, neither is quantized: both run
    // to float, as in the simulated engine.)
    bool float_tail = false;
    if ((n.op == Op::Conv2d || n.op == Op::Linear || n.op == Op::Add) && !is_output &&
        points.scale_source[id] < 0 && sole_reader[id] >= 0 &&
        (g.node(sole_reader[id]).op == Op::ReLU || g.node(sole_reader[id]).op == Op::Clamp)) {
      fused = &g.node(sole_reader[id]);
      if (fused->id == g.output) fused = nullptr, float_tail = true;
    }
    auto set_output = [&](const ActivationQuant& q, const Node* activation) {
      s.scale = q.scale;
      s.range = q.range;
      s.bounds = bounds_of(q, activation);
    };
    const ActivationQuant* own = model.activations.count(n.id) ? &model.activations.at(n.id) : nullptr;
    switch (n.op) {
      case Op::Input:
        s.kind = Step::kInput;
        set_output(*own, nullptr);
        break;
      case Op::Conv2d:
      case Op::Linear: {
        s.kind = Step::kWeight;
        const WeightQuant& w = model.weights.at(n.id);
        const ActivationQuant& in = point_of(n.inputs[0]);
        // <= 4-bit integers stay packed in memory; a lookup table's levels span int8.
        const WeightStorage storage =
            w.range.bits <= 4 && !w.lut.defined() ? WeightStorage::kPacked4 : WeightStorage::kInt8;
        if (n.op == Op::Conv2d) {
          const auto& a = n.attrs;
          const IntConvGeometry geo{a.list("stride")[0], a.list("stride")[1], a.list("padding")[0], a.list("padding")[1],
                                    a.list("dilation")[0], a.list("dilation")[1], a.i("groups")};
          s.conv = std::make_unique<IntConv2d>(w.q, geo, kernel, storage);
          if (w.residual.defined()) s.conv_residual = std::make_unique<IntConv2d>(w.residual, geo, kernel, storage);
        } else {
          s.linear = std::make_unique<IntLinear>(w.q, kernel, storage);
          if (w.residual.defined()) s.linear_residual = std::make_unique<IntLinear>(w.residual, kernel, storage);
        }
        const at::Tensor bias = integer_bias(w, in.scale);
        const at::Tensor unit = accumulator_unit(w, in.scale);
        const int64_t channels = w.q.size(0);
        s.bias.assign(bias.data_ptr<int64_t>(), bias.data_ptr<int64_t>() + channels);
        s.unit.assign(unit.data_ptr<double>(), unit.data_ptr<double>() + channels);
        if (w.residual.defined()) {
          const at::Tensor k = w.residual_shift.to(at::kLong).contiguous();
          s.residual_shift.assign(k.data_ptr<int64_t>(), k.data_ptr<int64_t>() + channels);
        }
        // Worst-case accumulator, for the report and the multiplier's headroom.
        const at::Tensor l1 = w.q.to(at::kLong).abs().reshape({channels, -1}).sum(1);
        const at::Tensor l1_residual =
            w.residual.defined() ? w.residual.to(at::kLong).abs().reshape({channels, -1}).sum(1) : at::zeros_like(l1);
        int64_t worst = 0;
        for (int64_t o = 0; o < channels; ++o) {
          const int64_t k = s.residual_shift.empty() ? 0 : s.residual_shift[static_cast<size_t>(o)];
          const int64_t acc = ((l1[o].item<int64_t>() << k) + l1_residual[o].item<int64_t>()) * max_abs(in.range) +
                              std::abs(s.bias[static_cast<size_t>(o)]);
          worst = std::max(worst, acc);
        }
        s.worst_accumulator = worst;
        AccumulatorReport r{n.name, worst, 1, false};
        while (r.bits < 63 && (int64_t{1} << (r.bits - 1)) <= worst) ++r.bits;
        r.overflows_int16 = r.bits > 16;
        report_.push_back(r);
        if (is_output || float_tail) {
          s.float_output = true;
        } else if (points.scale_source[id] < 0 && !fused) {
          s.to_add = true;  // activation_points(): the sole reader is an Add
        } else {
          set_output(fused ? point_of(fused->id) : *own, fused);
          const int bits = multiplier_bits_for(worst);
          s.requant.bias = s.bias;
          s.requant.residual_shift = s.residual_shift;
          for (int64_t o = 0; o < channels; ++o) {
            const Dyadic d = to_dyadic(s.unit[static_cast<size_t>(o)] / s.scale, bits);
            s.requant.multiplier.push_back(d.multiplier);
            s.requant.shift.push_back(d.shift);
            s.requant.half.push_back(d.shift > 0 ? int64_t{1} << (d.shift - 1) : 0);
          }
          s.requant.tile(channels);
        }
        break;
      }
      case Op::Add: {
        if (is_output || float_tail) {
          s.kind = Step::kFloatOutput;
          break;
        }
        s.kind = Step::kAdd;
        set_output(fused ? point_of(fused->id) : *own, fused);
        const double alpha = n.attrs.f("alpha");
        s.accumulator_input = points.accumulator_input[id];
        if (s.accumulator_input < 0) {
          s.multiplier = to_dyadic_sum({point_of(n.inputs[0]).scale / s.scale, alpha * point_of(n.inputs[1]).scale / s.scale});
          break;
        }
        // One branch is a Conv2d/Linear accumulator (acc + bias in units unit[o]):
        // per channel, both branches on one shift.
        const int a = s.accumulator_input, b = 1 - a;
        const Step& producer = *steps_[static_cast<size_t>(n.inputs[static_cast<size_t>(a)])];
        const double weight_a = a == 1 ? alpha : 1.0, weight_b = b == 1 ? alpha : 1.0;
        const double ratio_b = weight_b * point_of(n.inputs[static_cast<size_t>(b)]).scale / s.scale;
        const int bits = multiplier_bits_for(std::max<int64_t>(producer.worst_accumulator, 255));
        s.requant.bias = producer.bias;
        for (size_t o = 0; o < producer.unit.size(); ++o) {
          const std::vector<Dyadic> d = to_dyadic_sum({weight_a * producer.unit[o] / s.scale, ratio_b}, bits);
          s.requant.multiplier.push_back(d[0].multiplier);
          s.requant.multiplier_b.push_back(d[1].multiplier);
          s.requant.shift.push_back(d[0].shift);
          s.requant.half.push_back(d[0].shift > 0 ? int64_t{1} << (d[0].shift - 1) : 0);
        }
        s.requant.tile(static_cast<int64_t>(producer.unit.size()));
        break;
      }
      case Op::ReLU:
      case Op::Clamp: {
        if (is_output) {
          s.kind = Step::kFloatOutput;
          break;
        }
        const int producer = n.inputs[0];
        const Node& p = g.node(producer);
        const bool produced_fused = (p.op == Op::Conv2d || p.op == Op::Linear || p.op == Op::Add) &&
                                    points.scale_source[static_cast<size_t>(producer)] < 0 && producer != g.output;
        if (produced_fused) {
          s.kind = Step::kPassThrough;
          break;
        }
        s.kind = Step::kActivation;
        set_output(*own, &n);
        s.multiplier = {to_dyadic(point_of(producer).scale / s.scale)};
        break;
      }
      case Op::AvgPool2d:
      case Op::AdaptiveAvgPool2d:
      case Op::Mean:
        s.kind = is_output ? Step::kFloatOutput : Step::kPool;
        if (!is_output) set_output(*own, nullptr);
        break;
      case Op::Cat:
        if (is_output) {
          s.kind = Step::kFloatOutput;
          break;
        }
        s.kind = Step::kCat;
        set_output(*own, nullptr);
        for (int in : n.inputs) s.multiplier.push_back(to_dyadic(point_of(in).scale / s.scale));
        break;
      case Op::Slice:
      case Op::Pad:
      case Op::MaxPool2d:
      case Op::Flatten:
      case Op::Reshape:
        s.kind = is_output ? Step::kFloatOutput : Step::kExact;
        break;
      case Op::BatchNorm:
        fail("integer engine: node '" + n.name + "'", "a BatchNorm folded into its convolution", "an unfolded one");
    }
    if (s.kind == Step::kPool) s.input_scales.push_back(point_of(n.inputs[0]).scale);
    if (s.kind == Step::kFloatOutput)  // 0: the input is already float (a float tail)
      for (int in : n.inputs)
        s.input_scales.push_back(points.scale_source[static_cast<size_t>(in)] < 0 ? 0.0 : point_of(in).scale);
    if (n.op == Op::Mean && s.kind == Step::kPool) {
      std::vector<int64_t> dims = n.attrs.list("dims");
      for (int64_t& d : dims) d = d < 0 ? d + 4 : d;
      std::sort(dims.begin(), dims.end());
      if (dims != std::vector<int64_t>{2, 3})
        fail("integer engine: node '" + n.name + "' (mean)", "a mean over the spatial dimensions 2 and 3",
             "dims " + c10::str(n.attrs.list("dims")));
      s.keep_4d = n.attrs.i("keepdim") != 0;
    }
    RequantizationReport requant{n.name, {}};
    if (s.kind == Step::kWeight && !s.float_output && !s.to_add) {
      for (size_t o = 0; o < s.unit.size(); ++o)  // the first row of the tiled constants
        requant.multipliers.push_back(Dyadic{s.requant.multiplier[o], static_cast<int>(s.requant.shift[o])});
    } else if (s.kind == Step::kAdd && s.accumulator_input >= 0) {
      const size_t channels = steps_[static_cast<size_t>(n.inputs[static_cast<size_t>(s.accumulator_input)])]->unit.size();
      for (size_t o = 0; o < channels; ++o)
        for (int64_t m : {s.requant.multiplier[o], s.requant.multiplier_b[o]})
          requant.multipliers.push_back(Dyadic{m, static_cast<int>(s.requant.shift[o])});
    } else if (s.kind == Step::kAdd || s.kind == Step::kActivation || s.kind == Step::kCat) {
      requant.multipliers = s.multiplier;
    }
    if (!requant.multipliers.empty()) requantizations_.push_back(std::move(requant));
    steps_[id] = std::move(step);
  }
}

namespace {

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
// x86-64-v4 (AVX-512 with 64-bit multiplies) and AVX2 clones of the
// requantization loops; the default clone runs anywhere.
#define DFQ_INT_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define DFQ_INT_CLONES
#endif

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
DFQ_INT_CLONES void requantize_row(const int32_t* acc, const int32_t* acc_residual, int64_t channels,
                                   const ChannelRequant& c, int64_t lo, int64_t hi, uint8_t* out, int64_t* trace) {
  requantize_row_body(acc, acc_residual, channels, c, lo, hi, out, trace);
}
DFQ_INT_CLONES void requantize_row(const int32_t* acc, const int32_t* acc_residual, int64_t channels,
                                   const ChannelRequant& c, int64_t lo, int64_t hi, int8_t* out, int64_t* trace) {
  requantize_row_body(acc, acc_residual, channels, c, lo, hi, out, trace);
}

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
#define DFQ_ADD_VARIANT(A, B, O)                                                                                    \
  DFQ_INT_CLONES void add_requantize(const A* a, const B* b, int64_t n, Dyadic ma, Dyadic mb, int64_t lo, int64_t hi, \
                                     O* out) {                                                                      \
    add_body(a, b, n, ma, mb, lo, hi, out);                                                                         \
  }
DFQ_ADD_VARIANT(int8_t, int8_t, int8_t)
DFQ_ADD_VARIANT(int8_t, int8_t, uint8_t)
DFQ_ADD_VARIANT(int8_t, uint8_t, int8_t)
DFQ_ADD_VARIANT(int8_t, uint8_t, uint8_t)
DFQ_ADD_VARIANT(uint8_t, int8_t, int8_t)
DFQ_ADD_VARIANT(uint8_t, int8_t, uint8_t)
DFQ_ADD_VARIANT(uint8_t, uint8_t, int8_t)
DFQ_ADD_VARIANT(uint8_t, uint8_t, uint8_t)
#undef DFQ_ADD_VARIANT

// Combines accumulators, adds the bias and requantizes, row by row: rows are
// pixels, channels contiguous.
template <class Out>
void finish_weight_rows(const int32_t* acc, const int32_t* acc_residual, int64_t rows, int64_t channels,
                        const ChannelRequant& c, Bounds b, Out* out, int64_t* trace) {
  const int64_t tiles = (rows + c.tile_rows - 1) / c.tile_rows;
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t * c.tile_rows * channels;
      const int64_t n = std::min(c.tile_rows, rows - t * c.tile_rows) * channels;
      requantize_row(acc + i, acc_residual ? acc_residual + i : nullptr, n, c, b.lo, b.hi, out + i,
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
#define DFQ_ADD_ACC_VARIANT(A, B, O)                                                                           \
  DFQ_INT_CLONES void add_accumulator_row(const A* acc, const B* b, int64_t n, const ChannelRequant& c,         \
                                          int64_t lo, int64_t hi, O* out) {                                     \
    add_accumulator_body(acc, b, n, c, lo, hi, out);                                                           \
  }
DFQ_ADD_ACC_VARIANT(int32_t, int8_t, int8_t)
DFQ_ADD_ACC_VARIANT(int32_t, int8_t, uint8_t)
DFQ_ADD_ACC_VARIANT(int32_t, uint8_t, int8_t)
DFQ_ADD_ACC_VARIANT(int32_t, uint8_t, uint8_t)
DFQ_ADD_ACC_VARIANT(int64_t, int8_t, int8_t)
DFQ_ADD_ACC_VARIANT(int64_t, int8_t, uint8_t)
DFQ_ADD_ACC_VARIANT(int64_t, uint8_t, int8_t)
DFQ_ADD_ACC_VARIANT(int64_t, uint8_t, uint8_t)
#undef DFQ_ADD_ACC_VARIANT

// The Add of an accumulator (int32 or int64, channels-last) and a quantized
// value of the same shape, tile by tile.
void add_accumulator(const at::Tensor& acc, const at::Tensor& other, const ChannelRequant& c, Bounds bounds,
                     at::Tensor& out) {
  const int64_t channels = acc.size(1), rows = acc.numel() / channels;
  const int64_t tiles = (rows + c.tile_rows - 1) / c.tile_rows;
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
            add_accumulator_row(pa + i, pb + i, n, c, bounds.lo, bounds.hi, po + i);
          }
        });
      });
    });
  };
  if (acc.scalar_type() == at::kInt) run(acc.data_ptr<int32_t>());
  else if (acc.scalar_type() == at::kLong) run(acc.data_ptr<int64_t>());
  else fail("integer engine accumulator", "int32 or int64", std::string(c10::toString(acc.scalar_type())));
}

// Output length of a pooling window sweep (ATen's rule, ceil_mode included).
int64_t pooled_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation, bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1;
  int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;  // the last window must start inside
  return out;
}

struct Window {
  int64_t h0, h1, w0, w1, divisor;
};

// The averaging windows of AvgPool2d, AdaptiveAvgPool2d or a spatial Mean, per
// output position, with ATen's divisors.
std::vector<Window> average_windows(const Node& n, int64_t h, int64_t w, int64_t& out_h, int64_t& out_w) {
  std::vector<Window> windows;
  const Attrs& a = n.attrs;
  if (n.op == Op::Mean) {
    out_h = out_w = 1;
    windows.push_back({0, h, 0, w, h * w});
  } else if (n.op == Op::AdaptiveAvgPool2d) {
    out_h = a.list("output_size")[0], out_w = a.list("output_size")[1];
    for (int64_t i = 0; i < out_h; ++i)
      for (int64_t j = 0; j < out_w; ++j) {
        const int64_t h0 = i * h / out_h, h1 = ((i + 1) * h + out_h - 1) / out_h;
        const int64_t w0 = j * w / out_w, w1 = ((j + 1) * w + out_w - 1) / out_w;
        windows.push_back({h0, h1, w0, w1, (h1 - h0) * (w1 - w0)});
      }
  } else {
    const auto& k = a.list("kernel");
    const auto& st = a.list("stride");
    const auto& p = a.list("padding");
    const bool ceil_mode = a.i("ceil_mode") != 0, include_pad = a.i("count_include_pad") != 0;
    const int64_t divisor_override = a.i("divisor_override");
    out_h = pooled_size(h, k[0], st[0], p[0], 1, ceil_mode);
    out_w = pooled_size(w, k[1], st[1], p[1], 1, ceil_mode);
    for (int64_t i = 0; i < out_h; ++i)
      for (int64_t j = 0; j < out_w; ++j) {
        int64_t h0 = i * st[0] - p[0], w0 = j * st[1] - p[1];
        int64_t h1 = std::min(h0 + k[0], h + p[0]), w1 = std::min(w0 + k[1], w + p[1]);
        const int64_t padded = (h1 - h0) * (w1 - w0);
        h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
        h1 = std::min(h1, h), w1 = std::min(w1, w);
        const int64_t divisor = divisor_override > 0 ? divisor_override : include_pad ? padded : (h1 - h0) * (w1 - w0);
        windows.push_back({h0, h1, w0, w1, divisor});
      }
  }
  return windows;
}

// Window sums (int64) requantized by ratio / divisor; x channels-last.
at::Tensor average_pool(const Node& n, const at::Tensor& x, double ratio, QuantRange range, bool keep_4d) {
  const int64_t batch = x.size(0), channels = x.size(1), h = x.size(2), w = x.size(3);
  int64_t out_h = 0, out_w = 0;
  const std::vector<Window> windows = average_windows(n, h, w, out_h, out_w);
  std::map<int64_t, Dyadic> by_divisor;  // computed once per call, outside the loops
  std::vector<Dyadic> multiplier;
  for (const Window& win : windows) {
    auto it = by_divisor.find(win.divisor);
    if (it == by_divisor.end()) it = by_divisor.emplace(win.divisor, to_dyadic(ratio / static_cast<double>(win.divisor))).first;
    multiplier.push_back(it->second);
  }
  at::Tensor out = empty_like_layout({batch, channels, out_h, out_w}, storage_type(range));
  const int64_t lo = range.qmin(), hi = range.qmax();
  with_int_type(x.scalar_type(), [&](auto* tx) {
    using X = std::remove_pointer_t<decltype(tx)>;
    with_int_type(out.scalar_type(), [&](auto* ty) {
      using Y = std::remove_pointer_t<decltype(ty)>;
      const X* px = reinterpret_cast<const X*>(x.data_ptr());
      Y* py = reinterpret_cast<Y*>(out.data_ptr());
      const int64_t positions = static_cast<int64_t>(windows.size());
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        std::vector<int64_t> sum(static_cast<size_t>(channels));
        for (int64_t b = begin; b < end; ++b)
          for (int64_t k = 0; k < positions; ++k) {
            const Window& win = windows[static_cast<size_t>(k)];
            std::fill(sum.begin(), sum.end(), 0);
            for (int64_t i = win.h0; i < win.h1; ++i)
              for (int64_t j = win.w0; j < win.w1; ++j) {
                const X* pixel = px + ((b * h + i) * w + j) * channels;
                for (int64_t c = 0; c < channels; ++c) sum[static_cast<size_t>(c)] += pixel[c];
              }
            Y* o = py + (b * positions + k) * channels;
            const Dyadic m = multiplier[static_cast<size_t>(k)];
            for (int64_t c = 0; c < channels; ++c) o[c] = static_cast<Y>(clamp_to(requantize(sum[static_cast<size_t>(c)], m), lo, hi));
          }
      });
    });
  });
  return keep_4d ? out : out.reshape({batch, channels});
}

// MaxPool2d on integers (ATen's max_pool2d has no integer kernels); padding
// never wins (the implicit -inf of ATen).
at::Tensor max_pool(const Node& n, const at::Tensor& x) {
  const Attrs& a = n.attrs;
  const auto& k = a.list("kernel");
  const auto& st = a.list("stride");
  const auto& p = a.list("padding");
  const auto& d = a.list("dilation");
  const bool ceil_mode = a.i("ceil_mode") != 0;
  const int64_t batch = x.size(0), channels = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t out_h = pooled_size(h, k[0], st[0], p[0], d[0], ceil_mode);
  const int64_t out_w = pooled_size(w, k[1], st[1], p[1], d[1], ceil_mode);
  at::Tensor out = empty_like_layout({batch, channels, out_h, out_w}, x.scalar_type());
  with_int_type(x.scalar_type(), [&](auto* tx) {
    using X = std::remove_pointer_t<decltype(tx)>;
    const X* px = reinterpret_cast<const X*>(x.data_ptr());
    X* py = reinterpret_cast<X*>(out.data_ptr());
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        for (int64_t i = 0; i < out_h; ++i)
          for (int64_t j = 0; j < out_w; ++j) {
            X* o = py + ((b * out_h + i) * out_w + j) * channels;
            std::fill(o, o + channels, std::numeric_limits<X>::lowest());
            for (int64_t u = 0; u < k[0]; ++u) {
              const int64_t y = i * st[0] - p[0] + u * d[0];
              if (y < 0 || y >= h) continue;
              for (int64_t v = 0; v < k[1]; ++v) {
                const int64_t xw = j * st[1] - p[1] + v * d[1];
                if (xw < 0 || xw >= w) continue;
                const X* pixel = px + ((b * h + y) * w + xw) * channels;
                for (int64_t c = 0; c < channels; ++c) o[c] = std::max(o[c], pixel[c]);
              }
            }
          }
    });
  });
  return out;
}

}  // namespace

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
  for (const auto& s : steps_) {
    for (const auto* conv : {s->conv.get(), s->conv_residual.get()})
      if (conv) bytes += conv->weight_bytes();
    for (const auto* linear : {s->linear.get(), s->linear_residual.get()})
      if (linear) bytes += linear->weight_bytes();
  }
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
  // Release values after their last reader (as core/execute.cpp does).
  std::vector<int> last_use(steps_.size(), -1);
  for (const auto& s : steps_)
    for (int in : s->node->inputs) last_use[static_cast<size_t>(in)] = s->node->id;
  at::Tensor result;
  for (const auto& sp : steps_) {
    const Step& s = *sp;
    const Node& n = *s.node;
    std::vector<at::Tensor> in;
    for (int id : n.inputs) in.push_back(values[static_cast<size_t>(id)]);
    at::Tensor out;
    switch (s.kind) {
      case Step::kInput:
        out = dense(quantize(input.to(at::kFloat), at::scalar_tensor(s.scale), s.range).to(storage_type(s.range)));
        break;
      case Step::kWeight: {
        const at::Tensor x = dense(in[0]);
        const at::Tensor acc = s.conv ? s.conv->accumulate(x) : s.linear->accumulate(x);
        at::Tensor acc_residual;
        if (s.conv_residual) acc_residual = s.conv_residual->accumulate(x);
        if (s.linear_residual) acc_residual = s.linear_residual->accumulate(x);
        const int64_t channels = acc.size(1), rows = acc.numel() / channels;
        const int32_t* a = acc.data_ptr<int32_t>();
        const int32_t* ar = acc_residual.defined() ? acc_residual.data_ptr<int32_t>() : nullptr;
        at::Tensor trace;
        if (accumulators || s.float_output) trace = empty_like_layout(acc.sizes(), at::kLong);
        if (s.to_add) {
          // The Add requantizes; it reads acc (int32) or, with a residual tensor,
          // the combined (acc << k) + acc2 (int64).
          out = acc;
          if (ar) {
            out = empty_like_layout(acc.sizes(), at::kLong);
            combine_residual(a, ar, rows, channels, s.residual_shift, out.data_ptr<int64_t>());
          }
          if (trace.defined()) {
            trace.copy_(out);
            trace += at::tensor(s.bias, at::kLong).reshape(channel_shape(acc.dim(), channels));
          }
        } else if (s.float_output) {
          // The logits: acc * unit, the one conversion to float.
          int64_t* t = trace.data_ptr<int64_t>();
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t o = 0; o < channels; ++o) {
              const int64_t i = r * channels + o;
              const size_t c = static_cast<size_t>(o);
              t[i] = (ar ? int64_t{a[i]} * (int64_t{1} << s.residual_shift[c]) + ar[i] : int64_t{a[i]}) + s.bias[c];
            }
          at::Tensor unit = at::tensor(s.unit, at::kDouble);
          out = (trace.to(at::kDouble) * unit.reshape(channel_shape(acc.dim(), channels))).to(at::kFloat);
        } else {
          out = empty_like_layout(acc.sizes(), storage_type(s.range));
          with_int_type(out.scalar_type(), [&](auto* tag) {
            using T = std::remove_pointer_t<decltype(tag)>;
            finish_weight_rows<T>(a, ar, rows, channels, s.requant, s.bounds, reinterpret_cast<T*>(out.data_ptr()),
                                  trace.defined() ? trace.data_ptr<int64_t>() : nullptr);
          });
        }
        if (accumulators) (*accumulators)[static_cast<size_t>(n.id)] = trace;
        break;
      }
      case Step::kAdd: {
        const at::Tensor a = dense(in[0]), b = dense(in[1]);
        if (a.sizes() != b.sizes()) fail("integer engine: add '" + n.name + "'", c10::str(a.sizes()), c10::str(b.sizes()));
        out = empty_like_layout(a.sizes(), storage_type(s.range));
        if (s.accumulator_input >= 0) {
          const at::Tensor& acc = s.accumulator_input == 0 ? a : b;
          const at::Tensor& other = s.accumulator_input == 0 ? b : a;
          add_accumulator(acc, other, s.requant, s.bounds, out);
          break;
        }
        const Dyadic ma = s.multiplier[0], mb = s.multiplier[1];
        const Bounds bounds = s.bounds;
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
                add_requantize(pa + begin, pb + begin, end - begin, ma, mb, bounds.lo, bounds.hi, po + begin);
              });
            });
          });
        });
        break;
      }
      case Step::kActivation:
      case Step::kCat: {
        // Each input requantized to the output scale (one input for an activation).
        std::vector<at::Tensor> parts;
        for (size_t k = 0; k < in.size(); ++k) {
          const at::Tensor x = dense(in[k]);
          at::Tensor y = empty_like_layout(x.sizes(), storage_type(s.range));
          const Dyadic m = s.multiplier[k];
          const Bounds bounds = s.bounds;
          with_int_type(x.scalar_type(), [&](auto* tx) {
            using X = std::remove_pointer_t<decltype(tx)>;
            with_int_type(y.scalar_type(), [&](auto* ty) {
              using Y = std::remove_pointer_t<decltype(ty)>;
              const X* px = reinterpret_cast<const X*>(x.data_ptr());
              Y* py = reinterpret_cast<Y*>(y.data_ptr());
              at::parallel_for(0, x.numel(), 4096, [&](int64_t begin, int64_t end) {
                for (int64_t i = begin; i < end; ++i)
                  py[i] = static_cast<Y>(clamp_to(requantize(px[i], m), bounds.lo, bounds.hi));
              });
            });
          });
          parts.push_back(y);
        }
        out = s.kind == Step::kCat ? dense(at::cat(parts, n.attrs.i("dim"))) : parts[0];
        break;
      }
      case Step::kPool:
        out = average_pool(n, dense(in[0]), s.input_scales[0] / s.scale, s.range, s.keep_4d);
        break;
      case Step::kExact:
        out = n.op == Op::MaxPool2d ? max_pool(n, dense(in[0])) : run_node(n, in);
        break;
      case Step::kPassThrough:
        out = in[0];
        break;
      case Step::kFloatOutput: {
        // The graph output computed in float from the dequantized inputs.
        std::vector<at::Tensor> real;
        for (size_t k = 0; k < in.size(); ++k)
          real.push_back(s.input_scales[k] == 0.0 ? in[k] : in[k].to(at::kFloat) * s.input_scales[k]);
        out = run_node(n, real);
        break;
      }
    }
    values[static_cast<size_t>(n.id)] = out;
    if (n.id == output_) result = out;
    if (!values_out)
      for (int id : n.inputs)
        if (last_use[static_cast<size_t>(id)] == n.id) values[static_cast<size_t>(id)] = at::Tensor();
  }
  if (values_out) *values_out = std::move(values);
  return result.contiguous();
}

}  // namespace dfq
