// The quantization formula, quantized models, the simulated engine, the artifact.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/execute.h"
#include "core/fold_batch_norm.h"
#include "core/import_torchscript.h"
#include "quant/artifact.h"
#include "quant/integer_engine.h"
#include "quant/quantize.h"
#include "quant/quantizer.h"
#include "quant/simulate.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace dfq;
using namespace dfq::testing;

namespace {


// Round half away from zero, in double, from its definition.
double reference_quantize(double x, double scale, QuantRange r) {
  const double v = x / scale;
  const double rounded = v >= 0 ? std::floor(v + 0.5) : -std::floor(-v + 0.5);
  return std::min<double>(std::max<double>(rounded, static_cast<double>(r.qmin())), static_cast<double>(r.qmax()));
}

at::Tensor calibration_batch(int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn({n, 1, 28, 28}, gen);
}

}  // namespace

TEST(Quantizer, RangesAndRoundingMatchTheDefinition) {
  EXPECT_EQ((QuantRange{8, true}.qmin()), -127);
  EXPECT_EQ((QuantRange{8, true}.qmax()), 127);
  EXPECT_EQ((QuantRange{4, false}.qmax()), 15);
  EXPECT_EQ((QuantRange{2, true}.qmax()), 1);
  EXPECT_EQ((QuantRange{2, false}.qmin()), 0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  // Values on exact half steps as well as random ones.
  const at::Tensor x = at::cat({at::randn({5000}, gen) * 3, at::arange(-20, 21).to(at::kFloat) * 0.25});
  for (QuantRange r : {QuantRange{8, true}, QuantRange{4, true}, QuantRange{3, false}, QuantRange{2, true}}) {
    const double scale = 0.5;
    const at::Tensor q = quantize(x, at::scalar_tensor(scale), r);
    for (int64_t i = 0; i < x.numel(); ++i)
      ASSERT_EQ(q[i].item<double>(), reference_quantize(x[i].item<double>(), scale, r)) << "x = " << x[i].item<double>();
  }
  // Per-channel scales along an axis.
  const at::Tensor w = at::randn({3, 4}, gen);
  const at::Tensor scales = at::tensor({0.1f, 0.2f, 0.3f});
  const at::Tensor fq = fake_quantize(w, scales, QuantRange{4, true}, 0);
  for (int64_t o = 0; o < 3; ++o)
    for (int64_t i = 0; i < 4; ++i)
      EXPECT_NEAR(fq[o][i].item<double>(),
                  scales[o].item<double>() * reference_quantize(w[o][i].item<double>(), scales[o].item<double>(), {4, true}), 1e-7);
  EXPECT_NE(error_of([] { check_bits(9, "--wbits"); }).find("--wbits"), std::string::npos);
  EXPECT_NE(error_of([] { check_bits(1, "--abits"); }).find("--abits"), std::string::npos);
}

TEST(Quantize, ResidualTensorLowersWeightErrorByMoreThanOneExtraBit) {
  const Graph graph = import_torchscript(kModel);
  QuantizeOptions o;
  o.weight_bits = 4;
  o.activation_bits = 8;
  o.bias_correction = BiasCorrection::kNone;
  QuantizeReport plain, with_residual;
  const at::Tensor calib = calibration_batch(16, 1);
  quantize_model(graph, calib, o, plain);
  o.residual_layers = 1000;  // every layer
  const QuantizedModel q = quantize_model(graph, calib, o, with_residual);
  ASSERT_EQ(plain.layers.size(), with_residual.layers.size());
  for (size_t l = 0; l < plain.layers.size(); ++l) {
    EXPECT_TRUE(with_residual.layers[l].residual);
    // One extra bit halves the step: error power / 4, i.e. +6.02 dB.
    EXPECT_GT(with_residual.layers[l].weight_sqnr_db, plain.layers[l].weight_sqnr_db + 6.02) << plain.layers[l].name;
  }
  EXPECT_EQ(q.config.residual_layers, static_cast<int>(plain.layers.size()));
}

TEST(Quantize, ResidualSelectionFollowsErrorOrderAndBudget) {
  const Graph graph = import_torchscript(kModel);
  QuantizeOptions o;
  o.weight_bits = 3;
  o.bias_correction = BiasCorrection::kNone;
  const at::Tensor calib = calibration_batch(8, 2);
  QuantizeReport report;
  o.residual_layers = 2;
  quantize_model(graph, calib, o, report);
  std::vector<double> chosen, rest;
  for (const LayerReport& l : report.layers) (l.residual ? chosen : rest).push_back(l.normalized_error);
  ASSERT_EQ(chosen.size(), 2u);
  for (double c : chosen)
    for (double r : rest) EXPECT_GE(c, r);
  o.residual_layers = 0;
  o.residual_budget = 0.25;
  quantize_model(graph, calib, o, report);
  double total = 0, extra = 0;
  for (const LayerReport& l : report.layers) {
    total += static_cast<double>(l.parameters) * l.bits;
    if (l.residual) extra += static_cast<double>(l.parameters) * l.bits;
  }
  EXPECT_GT(extra, 0.0);
  EXPECT_LE(extra, 0.25 * total);
  o.residual_layers = 1;
  EXPECT_NE(error_of([&] { quantize_model(graph, calib, o, report); }).find("either"), std::string::npos);
}

// Bias correction: on the calibration batch, every quantized layer's per-channel
// mean output equals the float layer's (given the same input).
TEST(Quantize, BiasCorrectionRemovesTheMeanOutputShift) {
  const Graph graph = import_torchscript(kModel);
  const at::Tensor calib = calibration_batch(32, 3);
  for (bool corrected : {false, true}) {
    QuantizeOptions o;
    o.weight_bits = 3;
    o.bias_correction = corrected ? BiasCorrection::kWeights : BiasCorrection::kNone;
    QuantizeReport report;
    const QuantizedModel q = quantize_model(graph, calib, o, report);
    // Float graph with the quantized weights and the (corrected) float biases.
    Graph wq = q.graph;
    for (const auto& [id, w] : q.weights) {
      wq.nodes[static_cast<size_t>(id)].params["weight"] = w.dequantized();
      wq.nodes[static_cast<size_t>(id)].params["bias"] = w.bias;
    }
    struct ShiftMeter : Observer {
      const Graph* reference;
      std::map<int, at::Tensor> const* weights;
      double worst = 0;
      void after_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor& output) override {
        if (!weights->count(node.id)) return;
        const at::Tensor fp = run_node(reference->node(node.id), inputs);
        std::vector<int64_t> dims{0};
        for (int64_t d = 2; d < output.dim(); ++d) dims.push_back(d);
        worst = std::max(worst, (output - fp).mean(dims).abs().max().item<double>() /
                                    (fp.abs().mean().item<double>() + 1e-12));
      }
    } meter;
    std::map<int, at::Tensor> ids;
    for (const auto& [id, w] : q.weights) ids[id] = w.q;
    meter.reference = &q.graph;
    meter.weights = &ids;
    forward(wq, calib, &meter);
    if (corrected) EXPECT_LT(meter.worst, 1e-4);
    else EXPECT_GT(meter.worst, 1e-3);  // W3 does shift the means: the test can see a shift
  }
}

// Full bias correction: in the simulated model (quantized weights and
// activations upstream) every layer's per-channel mean output equals the float
// model's on the calibration batch, up to the bias's int32 grid; weights-only
// correction leaves a larger shift.
TEST(Quantize, FullBiasCorrectionMatchesFloatMeansInTheSimulatedModel) {
  const Graph graph = import_torchscript(kModel);
  const at::Tensor calib = calibration_batch(32, 6);
  struct Means : Observer {
    std::map<int, at::Tensor> means;
    const std::map<int, WeightQuant>* weights;
    FakeQuantizer* fq = nullptr;
    void after_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor& output) override {
      if (weights->count(node.id)) {
        std::vector<int64_t> dims{0};
        for (int64_t d = 2; d < output.dim(); ++d) dims.push_back(d);
        means[node.id] = output.mean(dims);
      }
      if (fq) fq->after_node(node, inputs, output);
    }
  };
  std::map<std::string, double> worst;
  for (BiasCorrection mode : {BiasCorrection::kWeights, BiasCorrection::kFull}) {
    QuantizeOptions o;
    o.weight_bits = 3;
    o.activation_bits = 3;
    o.bias_correction = mode;
    QuantizeReport report;
    const QuantizedModel q = quantize_model(graph, calib, o, report);
    EXPECT_EQ(q.config.bias_correction, to_string(mode));
    Means fp, sim;
    fp.weights = sim.weights = &q.weights;
    forward(q.graph, calib, &fp);
    FakeQuantizer fq(q);
    sim.fq = &fq;
    forward(simulated_graph(q), calib, &sim);
    const ActivationPoints points = activation_points(q.graph);
    double w = 0;
    for (const auto& [id, wq] : q.weights) {
      const double unit = (wq.scale.to(at::kDouble) * weight_input_scale(q, points, id)).max().item<double>();
      const double shift = (sim.means.at(id) - fp.means.at(id)).abs().max().item<double>();
      w = std::max(w, shift / (fp.means.at(id).abs().mean().item<double>() + unit));
      if (mode == BiasCorrection::kFull) {
        EXPECT_LE(shift, 0.5 * unit + 1e-5) << q.graph.node(id).name;
      }
    }
    worst[to_string(mode)] = w;
  }
  EXPECT_LT(worst["full"], worst["weights"]);
}

// The simulated engine equals a hand-built fake-quant forward: every point
// quantized with its scale, weights dequantized, biases on the int32 grid.
TEST(Simulated, MatchesQuantizeDequantizeAtEveryPoint) {
  const Graph graph = import_torchscript(kModel);
  const at::Tensor calib = calibration_batch(16, 4);
  QuantizeOptions o;
  o.weight_bits = 4;
  o.activation_bits = 4;
  o.residual_layers = 2;
  QuantizeReport report;
  const QuantizedModel q = quantize_model(graph, calib, o, report);
  const ActivationPoints points = activation_points(q.graph);
  ASSERT_EQ(points.points.size(), q.activations.size());
  EXPECT_EQ(q.activations.at(0).range.bits, 8);  // the input is always 8-bit
  Graph g = q.graph;
  for (const auto& [id, w] : q.weights) {
    Node& n = g.nodes[static_cast<size_t>(id)];
    n.params["weight"] = w.dequantized();
    const double s_in = q.activations.at(points.scale_source[static_cast<size_t>(n.inputs[0])]).scale;
    n.params["bias"] = bias_on_integer_grid(w, s_in);
  }
  struct Fq : Observer {
    const QuantizedModel* q;
    void after_node(const Node& node, const std::vector<at::Tensor>&, at::Tensor& out) override {
      auto it = q->activations.find(node.id);
      if (it == q->activations.end()) return;
      const double s = it->second.scale;
      const QuantRange r = it->second.range;
      out = at::clamp(round_half_away(out / s), static_cast<double>(r.qmin()), static_cast<double>(r.qmax())) * s;
    }
  } fq;
  fq.q = &q;
  const at::Tensor expected = forward(g, calib, &fq);
  const at::Tensor got = SimulatedModel(q).forward(calib);
  EXPECT_LT((got - expected).abs().max().item<double>(), 1e-5);
  // and it is not simply the float model
  EXPECT_GT((got - forward(fold_batch_norms(graph), calib)).abs().max().item<double>(), 1e-3);
}

TEST(Artifact, RoundTripsAndRefusesDamagedFiles) {
  const Graph graph = import_torchscript(kModel);
  const at::Tensor calib = calibration_batch(8, 5);
  QuantizeOptions o;
  o.weight_bits = 4;
  o.residual_layers = 1;
  QuantizeReport report;
  QuantizedModel q = quantize_model(graph, calib, o, report);
  q.config.calibration = "test";
  const fs::path dir = fs::temp_directory_path() / "dfq_artifact_test";
  fs::create_directories(dir);
  const std::string path = (dir / "m.dfq").string();
  save_quantized_model(q, path);
  const QuantizedModel back = load_quantized_model(path);
  EXPECT_TRUE(at::equal(SimulatedModel(q).forward(calib), SimulatedModel(back).forward(calib)));
  EXPECT_EQ(back.config.calibration, "test");
  EXPECT_EQ(back.weights.size(), q.weights.size());
  for (const auto& [id, w] : q.weights) {
    EXPECT_TRUE(at::equal(w.q, back.weights.at(id).q));
    EXPECT_EQ(w.residual.defined(), back.weights.at(id).residual.defined());
  }
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto write = [&](const std::string& name, const std::string& content) {
    const std::string p = (dir / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  };
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  std::string version = bytes;
  version[8] = 9;
  EXPECT_NE(error_of([&] { load_quantized_model(write("trunc.dfq", bytes.substr(0, bytes.size() / 3))); }).find("truncated"), std::string::npos);
  EXPECT_NE(error_of([&] { load_quantized_model(write("flip.dfq", flipped)); }).find("CRC"), std::string::npos);
  EXPECT_NE(error_of([&] { load_quantized_model(write("ver.dfq", version)); }).find("version"), std::string::npos);
  EXPECT_NE(error_of([&] { load_quantized_model(write("other.dfq", "not a model at all")); }).find("magic"), std::string::npos);
  EXPECT_NE(error_of([&] { load_quantized_model((dir / "missing.dfq").string()); }).find("missing.dfq"), std::string::npos);
  fs::remove_all(dir);
}

// Mixed precision (step 2a): the ILP's bits respect the size budget, more
// sensitive layers never get fewer bits for free, and the integer engine runs
// the mixed model bit-exactly.
TEST(Quantize, MixedPrecisionMeetsTheSizeBudgetAndRunsInIntegers) {
  const Graph g = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const at::Tensor calib = at::randn({32, 1, 28, 28}, at::make_generator<at::CPUGeneratorImpl>(11));
  QuantizeOptions o;
  o.activation_bits = 8;
  o.size_budget_bits_per_weight = 4.0;
  o.candidate_bits = {2, 4, 8};
  QuantizeReport report;
  const QuantizedModel q = quantize_model(g, calib, o, report);
  ASSERT_EQ(report.mixed_precision.size(), report.layers.size());
  double bits = 0, parameters = 0;
  std::set<int> used;
  for (size_t l = 0; l < report.layers.size(); ++l) {
    EXPECT_EQ(report.layers[l].bits, report.mixed_precision[l].chosen_bits) << report.layers[l].name;
    EXPECT_EQ(q.weights.at(report.layers[l].node).range.bits, report.layers[l].bits);
    bits += static_cast<double>(report.layers[l].parameters) * report.layers[l].bits;
    parameters += static_cast<double>(report.layers[l].parameters);
    used.insert(report.layers[l].bits);
    // Fewer bits never lower a layer's measured sensitivity by much.
    const auto& s = report.mixed_precision[l].sensitivity;
    EXPECT_GE(s.front() + 1e-6, s.back()) << report.layers[l].name;
  }
  EXPECT_LE(bits / parameters, 4.0 + 1e-9);
  EXPECT_GE(used.size(), 2u);  // a budget between the candidates forces a mix
  const IntegerEngine reference(q, IntKernel::kReference), fast(q, IntKernel::kFast);
  EXPECT_TRUE(at::equal(reference.forward(calib), fast.forward(calib)));
  // Refusals: a negative budget, a candidate outside 2..8.
  o.size_budget_bits_per_weight = -1;
  EXPECT_NE(error_of([&] { quantize_model(g, calib, o, report); }).find("budget"), std::string::npos);
  o.size_budget_bits_per_weight = 4, o.candidate_bits = {4, 9};
  EXPECT_NE(error_of([&] { quantize_model(g, calib, o, report); }).find("--candidate-bits"), std::string::npos);
  o.candidate_bits = {8};  // 8 bits everywhere cannot fit 4 bits/weight
  EXPECT_NE(error_of([&] { quantize_model(g, calib, o, report); }).find("size_bits"), std::string::npos);
}
