// Dyadic requantization against exact and double references; the integer
// engine against the simulated engine, and its fast kernels bit-exact against
// the reference kernels, on every op fixture, the embedded model and (when
// ../shared is present) ResNet-20, ResNet-56 and the random MobileNetV2.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "core/execute.h"
#include "core/import_torchscript.h"
#include "quant/dyadic.h"
#include "quant/integer_engine.h"
#include "quant/quantize.h"
#include "quant/simulate.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace dfq;
using namespace dfq::testing;

namespace {


// round(x * m / 2^s) half away from zero, from the definition in 128-bit integers.
int64_t exact_requantize(int64_t x, Dyadic d) {
  const __int128 p = static_cast<__int128>(x) * d.multiplier;
  const __int128 magnitude = p < 0 ? -p : p;
  const __int128 denominator = static_cast<__int128>(1) << d.shift;
  __int128 q = magnitude / denominator;
  if (2 * (magnitude - q * denominator) >= denominator) ++q;  // half away from zero
  return static_cast<int64_t>(p < 0 ? -q : q);
}

at::Tensor random_batch(at::IntArrayRef shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen);
}

QuantizedModel quantize(const Graph& g, const at::Tensor& calib, int wbits, int abits, int residual_layers = 0,
                        WeightObjective objective = WeightObjective::kOutput) {
  QuantizeOptions o;
  o.weight_objective = objective;
  o.weight_bits = wbits;
  o.activation_bits = abits;
  o.residual_layers = residual_layers;
  QuantizeReport report;
  return quantize_model(g, calib, o, report);
}

// Fast and reference engines: identical accumulators, values and outputs.
void expect_bit_exact(const QuantizedModel& q, const at::Tensor& x) {
  const IntegerEngine reference(q, IntKernel::kReference), fast(q, IntKernel::kFast);
  std::vector<at::Tensor> rv, ra, fv, fa;
  const at::Tensor r = reference.forward(x, &rv, &ra);
  const at::Tensor f = fast.forward(x, &fv, &fa);
  ASSERT_EQ(rv.size(), fv.size());
  for (size_t i = 0; i < rv.size(); ++i) {
    const std::string name = q.graph.nodes[i].name;
    ASSERT_EQ(rv[i].scalar_type(), fv[i].scalar_type()) << name;
    EXPECT_TRUE(at::equal(rv[i], fv[i])) << "value of " << name;
    EXPECT_EQ(ra[i].defined(), fa[i].defined()) << name;
    if (ra[i].defined()) {
      EXPECT_TRUE(at::equal(ra[i], fa[i])) << "accumulators of " << name;
    }
  }
  EXPECT_TRUE(at::equal(r, f));
}

// Integer vs simulated logits: the same up to the dyadic approximation and
// float rounding, which move a value by at most one step now and then.
void expect_close_to_simulated(const QuantizedModel& q, const at::Tensor& x, double tolerance) {
  const at::Tensor integer = IntegerEngine(q, IntKernel::kFast).forward(x);
  const at::Tensor simulated = SimulatedModel(q).forward(x);
  ASSERT_EQ(integer.sizes(), simulated.sizes());
  const double range = simulated.abs().max().item<double>() + 1e-12;
  EXPECT_LE((integer - simulated).abs().max().item<double>(), tolerance * range);
}

}  // namespace

TEST(Dyadic, RequantizationRoundsExactlyAndApproximatesTheRatio) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> exponent(-30.0, 20.0);
  std::uniform_int_distribution<int64_t> value(-(int64_t{1} << 31) + 1, (int64_t{1} << 31) - 1);
  for (int t = 0; t < 20000; ++t) {
    const double real = std::pow(2.0, exponent(rng)) * (t % 7 == 0 ? -1 : 1);
    const Dyadic d = to_dyadic(real);
    ASSERT_LE(std::fabs(d.value() - real), std::ldexp(std::fabs(real), -30)) << real;
    ASSERT_GE(std::llabs(d.multiplier), int64_t{1} << 30);
    ASSERT_LT(std::llabs(d.multiplier), int64_t{1} << 31);
    const int64_t x = value(rng);
    ASSERT_EQ(requantize(x, d), exact_requantize(x, d)) << x << " * " << real;
    const int64_t half = d.shift > 0 ? int64_t{1} << (d.shift - 1) : 0;
    ASSERT_EQ(round_shift_branchless(x * d.multiplier, d.shift, half), requantize(x, d)) << x << " * " << real;
    // Against the real ratio in double: equal unless x * real is within the
    // approximation error of a rounding tie.
    const double ideal = x * real;
    const double reference = std::copysign(std::floor(std::fabs(ideal) + 0.5), ideal);
    if (std::fabs(std::fabs(ideal) - std::floor(std::fabs(ideal)) - 0.5) > 1e-6 * std::max(1.0, std::fabs(ideal))) {
      ASSERT_EQ(static_cast<double>(requantize(x, d)), reference) << x << " * " << real;
    }
  }
  // Ties round away from zero: 3 * 0.5 = 1.5 -> 2, -3 * 0.5 -> -2.
  EXPECT_EQ(requantize(3, to_dyadic(0.5)), 2);
  EXPECT_EQ(requantize(-3, to_dyadic(0.5)), -2);
  EXPECT_EQ(requantize(12345, to_dyadic(1.0)), 12345);
  EXPECT_EQ(to_dyadic(0.0).multiplier, 0);
  EXPECT_NE(error_of([] { to_dyadic(NAN); }).find("finite"), std::string::npos);
  EXPECT_NE(error_of([] { to_dyadic(std::ldexp(1.0, 40)); }).find("below 2^30"), std::string::npos);
}

// A power-of-two ratio: the multiplier is 2^(b-1) and multiply-and-shift is
// exactly a rounding shift (right for 2^-k, left for 2^k).
TEST(Dyadic, PowerOfTwoRatiosAreExactShifts) {
  std::mt19937_64 rng(6);
  std::uniform_int_distribution<int64_t> value(-(int64_t{1} << 31) + 1, (int64_t{1} << 31) - 1);
  for (int e = -30; e <= 20; ++e)
    for (int bits : {31, 24, 12}) {
      if (e >= bits - 1) continue;  // to_dyadic refuses ratios >= 2^(bits - 1)
      const Dyadic d = to_dyadic(std::ldexp(e % 3 == 0 ? -1.0 : 1.0, e), bits);
      ASSERT_EQ(std::llabs(d.multiplier), int64_t{1} << (bits - 1)) << e;
      ASSERT_EQ(d.shift, bits - 1 - e) << e;
      for (int t = 0; t < 200; ++t) {
        const int64_t x = value(rng) >> (bits < 31 ? 31 - bits + 10 : 10);  // |x * m| < 2^62
        const int64_t sign = d.multiplier < 0 ? -1 : 1;
        const int64_t shifted = e <= 0 ? round_shift(x, -e) : x * (int64_t{1} << e);
        ASSERT_EQ(requantize(x, d), sign * shifted) << x << " * 2^" << e;
        ASSERT_EQ(requantize(x, d), exact_requantize(x, d));
      }
    }
}

TEST(Dyadic, SumsShareOneShiftAndRoundOnce) {
  const std::vector<Dyadic> d = to_dyadic_sum({0.75, -0.004});
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].shift, d[1].shift);
  EXPECT_NEAR(d[0].value(), 0.75, 1e-9);
  EXPECT_NEAR(d[1].value(), -0.004, 1e-9);
  for (int64_t a = -127; a <= 127; a += 3)
    for (int64_t b = -127; b <= 127; b += 5) {
      const int64_t y = round_shift(a * d[0].multiplier + b * d[1].multiplier, d[0].shift);
      const double ideal = a * d[0].value() + b * d[1].value();
      EXPECT_LE(std::fabs(y - ideal), 0.5 + 1e-9);
    }
  // Headroom: bounds of the int64 product.
  EXPECT_EQ(multiplier_bits_for(1000), 31);
  EXPECT_LT(multiplier_bits_for(int64_t{1} << 40), 31);
  EXPECT_LE(int64_t{1} << 40, max_operand(multiplier_bits_for(int64_t{1} << 40)));
}

// Every supported op fixture the quantizer accepts runs in integers: bit-exact
// fast vs reference, close to the simulated engine.
TEST(IntegerEngine, EveryOpFixtureBitExactAndCloseToSimulated) {
  std::ifstream in(kFixtures / "manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(in);
  int ran = 0;
  for (const auto& entry : manifest) {
    if (!entry["supported"].get<bool>()) continue;
    const std::string file = entry["file"].get<std::string>();
    SCOPED_TRACE(file);
    const Graph g = import_torchscript((kFixtures / file).string());
    const at::Tensor x = random_batch(entry["input_shape"].get<std::vector<int64_t>>(), 3);
    for (int wbits : {8, 4}) {
      const QuantizedModel q = quantize(g, x, wbits, 8);
      expect_bit_exact(q, x);
      expect_close_to_simulated(q, x, wbits == 8 ? 0.02 : 0.05);
    }
    ++ran;
  }
  EXPECT_GE(ran, 60);
}

// Forcing a kernel path also forces the instruction set of the engine's
// other loops (int_loop_isa()), so every build of the requantization and add
// loops runs here: each path gives the portable path's integers at every point.
TEST(IntegerEngine, EveryKernelPathAndLoopBuildGiveTheSameIntegers) {
  std::ifstream in(kFixtures / "manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(in);
  struct Case {
    std::string name;
    QuantizedModel q;
    at::Tensor x;
  };
  std::vector<Case> models;
  for (const auto& entry : manifest) {
    if (!entry["supported"].get<bool>()) continue;
    const std::string file = entry["file"].get<std::string>();
    const at::Tensor x = random_batch(entry["input_shape"].get<std::vector<int64_t>>(), 3);
    models.push_back({file, quantize(import_torchscript((kFixtures / file).string()), x, 4, 8), random_batch(x.sizes(), 5)});
  }
  const Graph fashion = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  models.push_back({"fashion_cnn.pt W4A4 residual", quantize(fashion, random_batch({32, 1, 28, 28}, 4), 4, 4, 2),
                    random_batch({8, 1, 28, 28}, 5)});
  for (const auto& [name, q, x] : models) {
    SCOPED_TRACE(name);
    std::vector<at::Tensor> expected, values;
    {
      const ScopedIntKernelPath use(IntKernelPath::kPortable);
      ASSERT_EQ(int_loop_isa(), LoopIsa::kBaseline);
      IntegerEngine(q, IntKernel::kFast).forward(x, &expected, nullptr);
    }
    for (IntKernelPath path : supported_int_kernel_paths()) {
      const ScopedIntKernelPath use(path);
      SCOPED_TRACE(int_kernel_path());
      IntegerEngine(q, IntKernel::kFast).forward(x, &values, nullptr);
      ASSERT_EQ(values.size(), expected.size());
      for (size_t i = 0; i < values.size(); ++i)
        EXPECT_TRUE(at::equal(values[i], expected[i])) << q.graph.nodes[i].name;
    }
  }
}

TEST(IntegerEngine, EmbeddedModelAtW8A8W4A4AndResidual) {
  const Graph g = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const at::Tensor calib = random_batch({32, 1, 28, 28}, 4);
  const at::Tensor x = random_batch({8, 1, 28, 28}, 5);
  for (auto [w, a, residual] : {std::tuple{8, 8, 0}, std::tuple{4, 4, 0}, std::tuple{4, 4, 2}}) {
    SCOPED_TRACE("W" + std::to_string(w) + "A" + std::to_string(a) + " residual " + std::to_string(residual));
    const QuantizedModel q = quantize(g, calib, w, a, residual);
    expect_bit_exact(q, x);
    expect_close_to_simulated(q, x, 0.02);
    // The predicted class agrees with the simulated engine on all but rare near-ties
    // (the engine owns what it needs: built from a temporary model).
    const IntegerEngine engine(QuantizedModel(q), IntKernel::kFast);
    const at::Tensor i = engine.forward(calib).argmax(1);
    const at::Tensor s = SimulatedModel(q).forward(calib).argmax(1);
    EXPECT_GE(i.eq(s).sum().item<int64_t>(), 31);
  }
}

// <= 4-bit weights stay packed two per byte in the engine's memory (residual
// tensors too), 8-bit ones take a byte (plus oneDNN's reordered copy in the
// fast kernels), and the engine keeps no float weights.
TEST(IntegerEngine, FourBitWeightsStayPackedInMemory) {
  const Graph g = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const at::Tensor calib = random_batch({16, 1, 28, 28}, 4);
  for (auto [w, residual] : {std::pair{8, 0}, std::pair{4, 0}, std::pair{4, 100}, std::pair{3, 0}}) {
    SCOPED_TRACE("W" + std::to_string(w) + " residual " + std::to_string(residual));
    const QuantizedModel q = quantize(g, calib, w, 8, residual);
    int64_t expected = 0;
    for (const auto& [id, wq] : q.weights)
      for (const at::Tensor& t : {wq.q, wq.residual})
        if (t.defined()) expected += w <= 4 ? (t.numel() + 1) / 2 : t.numel();
    const IntegerEngine reference(q, IntKernel::kReference), fast(q, IntKernel::kFast);
    const at::Tensor r = reference.forward(calib.slice(0, 0, 4));
    EXPECT_TRUE(at::equal(r, fast.forward(calib.slice(0, 0, 4))));
    EXPECT_EQ(reference.weight_bytes(), expected);
    // The avx2 and avx_vnni paths keep their own layout of packed weights too (int_kernels.h).
    const std::string path = int_kernel_path();
    if (w <= 4 && path != "avx2" && path != "avx_vnni") EXPECT_EQ(fast.weight_bytes(), expected);
    else EXPECT_GE(fast.weight_bytes(), expected);
  }
}

// forward() cuts a batch into slices run on separate threads; the logits are
// those of one pass over the whole batch (images are independent in integers),
// for both kernels and a batch that leaves a partial slice.
TEST(IntegerEngine, SlicedBatchEqualsOnePass) {
  const int saved = at::get_num_threads();
  at::set_num_threads(2);
  const Graph g = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const at::Tensor calib = random_batch({16, 1, 28, 28}, 4);
  const at::Tensor x = random_batch({2 * IntegerEngine::kImagesPerSlice + 3, 1, 28, 28}, 5);
  for (int w : {8, 4}) {
    const QuantizedModel q = quantize(g, calib, w, w);
    for (IntKernel kernel : {IntKernel::kReference, IntKernel::kFast}) {
      const IntegerEngine engine(q, kernel);
      std::vector<at::Tensor> values, acc;
      const at::Tensor one_pass = engine.forward(x, &values, &acc);  // traced: never sliced
      EXPECT_TRUE(at::equal(engine.forward(x), one_pass)) << "W" << w << (kernel == IntKernel::kFast ? " fast" : " reference");
      EXPECT_TRUE(at::equal(engine.forward(x.slice(0, 0, 1)), one_pass.slice(0, 0, 1))) << "W" << w;
      // Slices of slices: a batch of 8 at 2 threads runs as two slices of 4.
      EXPECT_TRUE(at::equal(engine.forward(x.slice(0, 0, 8)), one_pass.slice(0, 0, 8))) << "W" << w;
    }
  }
  at::set_num_threads(saved);
}

// The last convolution of a residual branch is no quantization point: the add
// reads its accumulator (int32, or int64 with a residual tensor) and rounds
// once. Checked on the embedded model (an identity and a convolution shortcut)
// against the real-valued sum in double, then fast vs reference.
TEST(IntegerEngine, AddReadsTheBranchAccumulatorAndRoundsOnce) {
  const Graph g = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const at::Tensor calib = random_batch({16, 1, 28, 28}, 9);
  for (int residual : {0, 100}) {
    SCOPED_TRACE("residual tensors on " + std::to_string(residual) + " layers");
    const QuantizedModel q = quantize(g, calib, 4, 4, residual);
    const ActivationPoints points = activation_points(q.graph);
    const IntegerEngine engine(q, IntKernel::kReference);
    std::vector<at::Tensor> values, acc;
    engine.forward(calib, &values, &acc);
    int adds = 0;
    for (const Node& n : q.graph.nodes) {
      const int k = points.accumulator_input[static_cast<size_t>(n.id)];
      if (n.op != Op::Add) continue;
      ASSERT_GE(k, 0) << n.name;
      const int conv = n.inputs[static_cast<size_t>(k)], other = n.inputs[static_cast<size_t>(1 - k)];
      EXPECT_EQ(points.scale_source[static_cast<size_t>(conv)], -1) << n.name;
      EXPECT_FALSE(q.activations.count(conv)) << n.name;
      EXPECT_EQ(values[static_cast<size_t>(conv)].scalar_type(), residual ? at::kLong : at::kInt) << n.name;
      // Output point: the ReLU the add is fused into.
      const int point = points.scale_source[static_cast<size_t>(n.id + 1)];
      ASSERT_GE(point, 0);
      const ActivationQuant& out = q.activations.at(point);
      const double input_scale = weight_input_scale(q, points, conv);
      const at::Tensor unit = accumulator_unit(q.weights.at(conv), input_scale).reshape({1, -1, 1, 1});
      const double other_scale = q.activations.at(points.scale_source[static_cast<size_t>(other)]).scale;
      const at::Tensor real = acc[static_cast<size_t>(conv)].to(at::kDouble) * unit +
                              values[static_cast<size_t>(other)].to(at::kDouble) * other_scale;
      const at::Tensor ideal = round_half_away(real / out.scale).clamp(0, out.range.qmax());
      const at::Tensor got = values[static_cast<size_t>(n.id)].to(at::kDouble);
      EXPECT_LE((got - ideal).abs().max().item<double>(), 1.0) << n.name;
      EXPECT_GE(got.eq(ideal).to(at::kDouble).mean().item<double>(), 0.999) << n.name;
      ++adds;
    }
    EXPECT_EQ(adds, 2);
    expect_bit_exact(q, calib.slice(0, 0, 4));
    expect_close_to_simulated(q, calib, 0.02);
  }
}

// The accumulator report bounds every accumulator the engine computes.
TEST(IntegerEngine, AccumulatorReportBoundsTheRealAccumulators) {
  const Graph g = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const at::Tensor calib = random_batch({16, 1, 28, 28}, 6);
  const QuantizedModel q = quantize(g, calib, 8, 8, 1);
  const IntegerEngine engine(q, IntKernel::kReference);
  std::vector<at::Tensor> values, acc;
  engine.forward(calib * 3, &values, &acc);
  size_t k = 0;
  for (const Node& n : q.graph.nodes) {
    if (!acc[static_cast<size_t>(n.id)].defined()) continue;
    ASSERT_LT(k, engine.accumulators().size());
    const AccumulatorReport& r = engine.accumulators()[k++];
    EXPECT_EQ(r.name, n.name);
    EXPECT_LE(acc[static_cast<size_t>(n.id)].abs().max().item<int64_t>(), r.worst_case) << n.name;
    EXPECT_LT(r.worst_case, int64_t{1} << (r.bits - 1));
    EXPECT_EQ(r.overflows_int16, r.bits > 16);
  }
  EXPECT_EQ(k, engine.accumulators().size());
}

// ../shared models: fast vs reference bit-exact at W8A8, W4A4 and with residual tensors.
TEST(IntegerEngine, SharedModelsBitExact) {
  struct Case {
    std::string file;
    std::vector<int64_t> shape;
  };
  const std::vector<Case> cases = {{"cifar10-resnet20.pt", {2, 3, 32, 32}},
                                   {"cifar10-resnet56.pt", {2, 3, 32, 32}},
                                   {"imagenet-mobilenetv2-random.pt", {1, 3, 64, 64}}};
  int ran = 0;
  for (const Case& c : cases) {
    const fs::path file = kShared / "weights" / c.file;
    if (!fs::exists(file)) continue;
    SCOPED_TRACE(c.file);
    const Graph g = import_torchscript(file.string());
    std::vector<int64_t> calib_shape = c.shape;
    calib_shape[0] = 8;
    const at::Tensor calib = random_batch(calib_shape, 7);
    const at::Tensor x = random_batch(c.shape, 8);
    // The weight objective: the output one costs minutes on MobileNetV2's 1280 x 1000
    // classifier, and bit-exactness does not depend on how clips were chosen.
    for (auto [w, a, residual] : {std::tuple{8, 8, 0}, std::tuple{4, 4, 0}, std::tuple{4, 4, 3}})
      expect_bit_exact(quantize(g, calib, w, a, residual, WeightObjective::kWeight), x);
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << "../shared not found: ResNet-20/56 and MobileNetV2 not checked";
}

namespace {

bool power_of_two_multiplier(const Dyadic& d) {
  const int64_t m = std::llabs(d.multiplier);
  return m > 0 && (m & (m - 1)) == 0;
}

}  // namespace

// With power-of-two scales every requantization ratio s_in s_w / s_out (and
// s_a / s_out, s_b / s_out of an add) is a power of two, so every dyadic
// multiplier is one: the requantization is a rounding shift. Checked on every
// multiplier the engine prepared (residual adds reading an accumulator
// included), with residual tensors, and with lookup tables; the engines stay
// bit-exact and close to the simulated one. Without the option some multiplier
// is not a power of two (the check can fail).
TEST(IntegerEngine, PowerOfTwoScalesMakeEveryMultiplierAPowerOfTwo) {
  const Graph g = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const at::Tensor calib = random_batch({32, 1, 28, 28}, 14);
  const at::Tensor x = random_batch({8, 1, 28, 28}, 15);
  struct Case {
    const char* name;
    bool pow2, lut;
    int wbits, abits, residual;
  };
  for (const Case& c : {Case{"W4A4 pow2", true, false, 4, 4, 0}, Case{"W4A4 pow2 + residual", true, false, 4, 4, 2},
                        Case{"W8A8 pow2", true, false, 8, 8, 0}, Case{"W4A4 pow2 + lut", true, true, 4, 4, 0},
                        Case{"W4A8 pow2 + lut", true, true, 4, 8, 0}, Case{"W4A4", false, false, 4, 4, 0}}) {
    SCOPED_TRACE(c.name);
    QuantizeOptions o;
    o.weight_bits = c.wbits, o.activation_bits = c.abits, o.residual_layers = c.residual;
    o.power_of_two_scales = c.pow2, o.weight_lut = c.lut;
    QuantizeReport report;
    const QuantizedModel q = quantize_model(g, calib, o, report);
    const IntegerEngine engine(q, IntKernel::kReference);
    int multipliers = 0, powers = 0;
    bool add_seen = false;
    std::map<std::string, const OpDef*> op_of;
    for (const Node& n : q.graph.nodes) op_of[n.name] = n.op;
    for (const RequantizationReport& r : engine.requantizations()) {
      add_seen = add_seen || op_of.at(r.name) == Op::Add;
      for (const Dyadic& d : r.multipliers) {
        ++multipliers;
        powers += power_of_two_multiplier(d);
        if (c.pow2) {
          EXPECT_TRUE(power_of_two_multiplier(d)) << r.name << ": " << d.multiplier << " * 2^-" << d.shift;
        }
      }
    }
    EXPECT_TRUE(add_seen);
    EXPECT_GT(multipliers, 50);
    if (!c.pow2) {
      EXPECT_LT(powers, multipliers);
    }
    // Average pools: s_in / s_out a power of two too (the window count is the model's).
    const ActivationPoints points = activation_points(q.graph);
    int pools = 0;
    for (const Node& n : q.graph.nodes) {
      if (n.op->role != QuantRole::kAverage || !q.activations.count(n.id)) continue;
      ++pools;
      const double ratio = q.activations.at(points.scale_source[static_cast<size_t>(n.inputs[0])]).scale / q.activations.at(n.id).scale;
      if (c.pow2) {
        EXPECT_TRUE(power_of_two_multiplier(to_dyadic(ratio))) << n.name;
      }
    }
    EXPECT_GE(pools, 1);
    expect_bit_exact(q, x);
    expect_close_to_simulated(q, x, 0.02);
    if (c.lut) {
      for (const auto& [id, w] : q.weights) EXPECT_EQ(w.lut.defined(), w.range.bits <= 4);
    }
  }
}

namespace {

// Records the simulated engine's value at every node (after fake quantization).
class Recorder : public Observer {
 public:
  explicit Recorder(const QuantizedModel& q) : fake_(q), values(q.graph.nodes.size()) {}
  void after_node(const Node& n, const std::vector<at::Tensor>& in, at::Tensor& out) override {
    fake_.after_node(n, in, out);
    values[static_cast<size_t>(n.id)] = out;
  }
  FakeQuantizer fake_;
  std::vector<at::Tensor> values;
};

}  // namespace

TEST(IntegerEngine, EqualsTheFloat64SimulationAtEveryPoint) {
  // The simulated engine in float64 differs from the integer engine only by the
  // dyadic approximation of each ratio; with multipliers as wide as the
  // operands allow (residual adds included), no point's integer differs. Deep
  // networks amplify every single flip, so this is checked on the deepest
  // models at hand, at every point, not on the logits.
  int ran = 0;
  for (const char* file : {"cifar10-resnet56.pt", "imagenet-mobilenetv2-random.pt"}) {
    const fs::path path = kShared / "weights" / file;
    if (!fs::exists(path)) continue;
    SCOPED_TRACE(file);
    const Graph g = import_torchscript(path.string());
    const int64_t size = std::string(file).find("imagenet") != std::string::npos ? 96 : 32;
    const at::Tensor calib = random_batch({8, 3, size, size}, 7), x = random_batch({2, 3, size, size}, 8);
    const QuantizedModel q = quantize(g, calib, 8, 8, 0, WeightObjective::kWeight);
    std::vector<at::Tensor> integer;
    IntegerEngine(q, IntKernel::kReference).forward(x, &integer, nullptr);
    Recorder recorder(q);
    forward(simulated_graph(q, at::kDouble), x.to(at::kDouble), &recorder);
    const ActivationPoints points = activation_points(q.graph);
    int64_t values = 0, differing = 0;
    for (size_t p = 0; p < points.points.size(); ++p) {
      const int id = points.points[p];
      if (id == q.graph.output) continue;
      const at::Tensor steps = recorder.values[static_cast<size_t>(id)] / q.activations.at(id).scale;
      const at::Tensor off = (integer[static_cast<size_t>(id)].to(at::kDouble) - steps).abs();
      EXPECT_LE(off.max().item<double>(), 1.0) << q.graph.node(id).name;
      values += off.numel();
      differing += off.gt(0.5).sum().item<int64_t>();
    }
    EXPECT_EQ(differing, 0) << differing << " of " << values << " point values";
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << "../shared not found";
}
