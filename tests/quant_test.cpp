// The quantization formula, quantized models, the simulated engine, the artifact.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <vector>

#include "core/error.h"
#include "core/execute.h"
#include "core/passes.h"
#include "core/import_torchscript.h"
#include "quant/artifact.h"
#include "quant/integer_engine.h"
#include "quant/packing.h"
#include "quant/quantize.h"
#include "quant/quantizer.h"
#include "quant/simulate.h"
#include "quant/weight_lut.h"
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

// The report's activation SQNR describes the model quantize_model returns (and
// dfq quantize saves): with full bias correction, step 6 changes biases after
// the activation ranges, and the SQNR is still that of the final biases, also
// after a round trip through the artifact.
TEST(Quantize, ActivationSqnrIsOfTheFinalModel) {
  const Graph graph = import_torchscript(kModel);
  const at::Tensor calib = calibration_batch(16, 21);
  QuantizeOptions o;
  o.bias_correction = BiasCorrection::kFull;
  QuantizeReport report;
  const QuantizedModel q = quantize_model(graph, calib, o, report);
  // The model before step 6 (steps 1-5 are the same): step 6 changed biases and the SQNR.
  o.bias_correction = BiasCorrection::kWeights;
  QuantizeReport weights_report;
  const QuantizedModel before = quantize_model(graph, calib, o, weights_report);
  int changed = 0;
  for (const auto& [id, w] : q.weights) changed += at::equal(w.bias, before.weights.at(id).bias) ? 0 : 1;
  EXPECT_GT(changed, 0);
  const std::vector<double> final_sqnr = activation_sqnr_db(q, calib), before_sqnr = activation_sqnr_db(before, calib);
  ASSERT_EQ(final_sqnr.size(), report.points.size());
  ASSERT_EQ(before_sqnr.size(), report.points.size());
  auto same = [](double a, double b) { return a == b || std::abs(a - b) <= 1e-9 * std::abs(b); };
  int differ = 0;
  for (size_t p = 0; p < final_sqnr.size(); ++p) differ += same(final_sqnr[p], before_sqnr[p]) ? 0 : 1;
  EXPECT_GT(differ, 0);
  for (size_t p = 0; p < report.points.size(); ++p)
    EXPECT_PRED2(same, report.points[p].activation_sqnr_db, final_sqnr[p]) << report.points[p].name;
  const fs::path dir = fs::temp_directory_path() / "dfq_sqnr_artifact_test";
  fs::create_directories(dir);
  const std::string path = (dir / "m.dfq").string();
  save_quantized_model(q, path);
  const std::vector<double> loaded_sqnr = activation_sqnr_db(load_quantized_model(path), calib);
  fs::remove_all(dir);
  ASSERT_EQ(loaded_sqnr.size(), report.points.size());
  for (size_t p = 0; p < report.points.size(); ++p)
    EXPECT_PRED2(same, loaded_sqnr[p], report.points[p].activation_sqnr_db) << report.points[p].name;
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

// Bit streams against a bit-by-bit reference: stream bit i * bits + k is bit k
// of value i's two's-complement field, from the low bit of byte 0.
TEST(Packing, BitStreamsMatchABitByBitReferenceAtEveryWidth) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : {0, 1, 7, 33, 1000}) {
      const int lowest = -(1 << (bits - 1)), highest = (1 << (bits - 1)) - 1;
      at::Tensor values = at::randint(lowest, highest + 1, {n}, gen, at::kChar);
      if (n >= 2) values[0] = lowest, values[1] = highest;
      const int8_t* v = values.data_ptr<int8_t>();
      std::vector<uint8_t> reference(static_cast<size_t>((n * bits + 7) / 8), 0);
      for (int64_t i = 0; i < n; ++i)
        for (int k = 0; k < bits; ++k)
          if ((static_cast<unsigned>(static_cast<uint8_t>(v[i])) >> k) & 1u)
            reference[static_cast<size_t>((i * bits + k) / 8)] |= static_cast<uint8_t>(1u << ((i * bits + k) % 8));
      const at::Tensor packed = pack_bits(values, bits);
      ASSERT_EQ(packed.numel(), static_cast<int64_t>(reference.size())) << bits << " bits, " << n;
      EXPECT_TRUE(std::equal(reference.begin(), reference.end(), packed.data_ptr<uint8_t>())) << bits << " bits, " << n;
      EXPECT_TRUE(at::equal(unpack_bits(packed, bits, {n}), values)) << bits << " bits, " << n;
      // Unsigned codes: the same fields, read back without sign extension.
      const at::Tensor codes = (values.to(at::kInt) - lowest).to(at::kByte);
      EXPECT_TRUE(at::equal(unpack_unsigned_bits(pack_unsigned_bits(codes, bits), bits, {n}), codes));
      if (bits == 4) {
        EXPECT_TRUE(at::equal(unpack_int4(packed, {n}), values));  // the engine's vectorized path
      }
    }
  }
  const at::Tensor three = at::full({5}, 4, at::kChar);  // 4 does not fit 3 signed bits
  EXPECT_NE(error_of([&] { pack_bits(three, 3); }).find("values in [-4, 3]"), std::string::npos);
  EXPECT_NE(error_of([&] { pack_bits(three, 9); }).find("1 to 8 bits"), std::string::npos);
  EXPECT_NE(error_of([&] { pack_unsigned_bits(at::full({2}, 8, at::kByte), 3); }).find("[0, 7]"), std::string::npos);
  EXPECT_NE(error_of([&] { unpack_bits(at::zeros({4}, at::kByte), 5, {4}); }).find("3 bytes"), std::string::npos);
  // A shape far beyond the bytes is refused before anything is allocated.
  EXPECT_NE(error_of([&] { unpack_bits(at::zeros({3}, at::kByte), 3, {1 << 20, 1 << 20, 1 << 20}); }).find("at most 8 elements"),
            std::string::npos);
}

// The artifact stores each layer at its own bits: 3-bit weights take 3/4 of
// the 4-bit file's weight bytes, 5-bit 5/4, and every width round-trips.
TEST(Artifact, WeightsTakeTheirOwnBitsOnDisk) {
  const Graph graph = import_torchscript(kModel);
  const at::Tensor calib = calibration_batch(8, 6);
  const fs::path dir = fs::temp_directory_path() / "dfq_artifact_bits_test";
  fs::create_directories(dir);
  std::map<int, double> file_bytes;
  double parameters = 0;
  // {bits, residual layers}: a residual tensor is packed at the layer's bits too.
  for (const auto& [bits, residual_layers] : std::vector<std::pair<int, int>>{{3, 0}, {4, 0}, {5, 0}, {3, 1}}) {
    QuantizeOptions o;
    o.weight_bits = bits;
    o.residual_layers = residual_layers;
    QuantizeReport report;
    const QuantizedModel q = quantize_model(graph, calib, o, report);
    const std::string path = (dir / ("w" + std::to_string(bits) + "r" + std::to_string(residual_layers) + ".dfq")).string();
    save_quantized_model(q, path);
    const QuantizedModel back = load_quantized_model(path);
    for (const auto& [id, w] : q.weights) {
      EXPECT_TRUE(at::equal(w.q, back.weights.at(id).q)) << bits << " bits, node " << id;
      EXPECT_EQ(w.residual.defined(), back.weights.at(id).residual.defined());
      if (w.residual.defined()) {
        EXPECT_TRUE(at::equal(w.residual, back.weights.at(id).residual));
      }
    }
    if (residual_layers > 0) continue;
    file_bytes[bits] = static_cast<double>(fs::file_size(path));
    parameters = 0;
    for (const LayerReport& l : report.layers) parameters += static_cast<double>(l.parameters);
  }
  // One bit per weight is parameters / 8 bytes; headers differ by a few hundred bytes at most.
  EXPECT_NEAR(file_bytes[4] - file_bytes[3], parameters / 8, 0.02 * parameters / 8 + 300);
  EXPECT_NEAR(file_bytes[5] - file_bytes[4], parameters / 8, 0.02 * parameters / 8 + 300);
  fs::remove_all(dir);
}

// Version 4 files (nibbles for <= 4 bits, int8 above) are still read.
TEST(Artifact, ReadsVersionFourFiles) {
  const std::string v4 = (kSource / "tests" / "fuzz" / "corpus" / "artifact" / "fashion-mixed-v4.dfq").string();
  std::ifstream in(v4, std::ios::binary);
  char header[12] = {};
  in.read(header, sizeof header);
  ASSERT_EQ(header[8], 4) << v4 << " is not a version 4 file";
  const QuantizedModel q = load_quantized_model(v4);
  std::set<int> widths;
  for (const auto& [id, w] : q.weights) {
    widths.insert(w.range.bits);
    EXPECT_LE(w.q.abs().max().item<int>(), w.range.qmax()) << "node " << id;
  }
  EXPECT_GE(widths.size(), 2u);  // both storage forms: nibbles and int8
  const at::Tensor x = calibration_batch(4, 7);
  EXPECT_TRUE(at::equal(IntegerEngine(q, IntKernel::kReference).forward(x), IntegerEngine(q, IntKernel::kFast).forward(x)));
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

// In-context sensitivities (the rest of the model at W4A4): each layer's row is
// an excess over its best candidate, non-increasing in bits, and the ILP's
// allocation still meets the budget and runs in integers.
TEST(Quantize, InContextSensitivitiesAreExcessesNonIncreasingInBits) {
  const Graph g = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const at::Tensor calib = at::randn({32, 1, 28, 28}, at::make_generator<at::CPUGeneratorImpl>(13));
  QuantizeOptions o;
  o.activation_bits = 4;
  o.size_budget_bits_per_weight = 4.0;
  o.candidate_bits = {8, 2, 4};  // any order
  o.sensitivity = MixedSensitivity::kInContext;
  o.reconstruct.method = Reconstruction::kNone;
  EXPECT_EQ(context_weight_bits(o), 4);
  QuantizeReport report;
  const QuantizedModel q = quantize_model(g, calib, o, report);
  ASSERT_EQ(report.mixed_precision.size(), report.layers.size());
  double bits = 0, parameters = 0, positive = 0;
  for (size_t l = 0; l < report.layers.size(); ++l) {
    const MixedPrecisionLayer& row = report.mixed_precision[l];
    SCOPED_TRACE(row.name);
    ASSERT_EQ(row.candidate_bits, o.candidate_bits);
    EXPECT_EQ(*std::min_element(row.sensitivity.begin(), row.sensitivity.end()), 0.0);
    EXPECT_GE(row.sensitivity[1], row.sensitivity[2]);  // 2 bits >= 4 bits
    EXPECT_GE(row.sensitivity[2], row.sensitivity[0]);  // 4 bits >= 8 bits
    positive += row.sensitivity[1];
    bits += static_cast<double>(report.layers[l].parameters) * report.layers[l].bits;
    parameters += static_cast<double>(report.layers[l].parameters);
  }
  EXPECT_GT(positive, 0.0);  // 2-bit weights cost something measurable in context
  EXPECT_LE(bits / parameters, 4.0 + 1e-9);
  const IntegerEngine reference(q, IntKernel::kReference), fast(q, IntKernel::kFast);
  EXPECT_TRUE(at::equal(reference.forward(calib), fast.forward(calib)));
  // The context's weight bits: nearest the size budget, else the BOPs budget's W, else the middle candidate.
  o.size_budget_bits_per_weight = 5.1;
  EXPECT_EQ(context_weight_bits(o), 4);
  o.size_budget_bits_per_weight = 0, o.bops_budget_weight_bits = 8, o.bops_budget_activation_bits = 4;
  EXPECT_EQ(context_weight_bits(o), 8);
  o.bops_budget_weight_bits = o.bops_budget_activation_bits = 0, o.bops_budget = 1e9;
  EXPECT_EQ(context_weight_bits(o), 4);
  EXPECT_EQ(parse_mixed_sensitivity("in-context", "--sensitivity"), MixedSensitivity::kInContext);
  EXPECT_NE(error_of([] { parse_mixed_sensitivity("context", "--sensitivity"); }).find("isolated, reconstructed, in-context"), std::string::npos);
}

// Reconstructed sensitivities (step 5b's AdaRound applied to the one layer
// first): rounding learned on the layer's output lowers the divergence a low
// bit width costs, summed over the layers; refused without reconstruction.
TEST(Quantize, ReconstructedSensitivitiesAreBelowIsolatedAtTwoBits) {
  const Graph g = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const at::Tensor calib = at::randn({32, 1, 28, 28}, at::make_generator<at::CPUGeneratorImpl>(14));
  QuantizeOptions o;
  o.activation_bits = 8;
  o.size_budget_bits_per_weight = 4.0;
  o.candidate_bits = {2, 4, 8};
  o.reconstruct.method = Reconstruction::kAdaRound;
  o.reconstruct.iterations = 200;
  QuantizeReport isolated, reconstructed;
  quantize_model(g, calib, o, isolated);
  o.sensitivity = MixedSensitivity::kReconstructed;
  const QuantizedModel q = quantize_model(g, calib, o, reconstructed);
  ASSERT_EQ(reconstructed.mixed_precision.size(), isolated.mixed_precision.size());
  double at_two_isolated = 0, at_two_reconstructed = 0, bits = 0, parameters = 0;
  for (size_t l = 0; l < isolated.mixed_precision.size(); ++l) {
    at_two_isolated += isolated.mixed_precision[l].sensitivity[0];
    at_two_reconstructed += reconstructed.mixed_precision[l].sensitivity[0];
    bits += static_cast<double>(reconstructed.layers[l].parameters) * reconstructed.layers[l].bits;
    parameters += static_cast<double>(reconstructed.layers[l].parameters);
  }
  EXPECT_LT(at_two_reconstructed, at_two_isolated);
  EXPECT_LE(bits / parameters, 4.0 + 1e-9);
  const IntegerEngine reference(q, IntKernel::kReference), fast(q, IntKernel::kFast);
  EXPECT_TRUE(at::equal(reference.forward(calib), fast.forward(calib)));
  o.reconstruct.method = Reconstruction::kNone;
  EXPECT_NE(error_of([&] { check_quantize_options(o); }).find("--sensitivity reconstructed"), std::string::npos);
}

// Mixed activation bits (step 2a with candidate_activation_bits): within the
// BOPs of uniform W4A4, each point read by a convolution gets its chosen bits,
// the layers reading one point agree, and both engines run the result.
TEST(Quantize, MixedActivationBitsMeetTheBopsOfW4A4AndRunInIntegers) {
  const Graph g = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const at::Tensor calib = at::randn({32, 1, 28, 28}, at::make_generator<at::CPUGeneratorImpl>(12));
  QuantizeOptions o;
  o.activation_bits = 4;  // the points no convolution reads
  o.candidate_bits = {2, 4, 8};
  o.candidate_activation_bits = {4, 8};
  o.bops_budget_weight_bits = 4, o.bops_budget_activation_bits = 4;
  o.reconstruct.method = Reconstruction::kNone;
  QuantizeReport report;
  const QuantizedModel q = quantize_model(g, calib, o, report);
  const ActivationPoints points = activation_points(q.graph);

  // The budget from its definition: MACs per image x 4 x input bits (8 at the input, else 4).
  struct Macs : Observer {
    void after_node(const Node& n, const std::vector<at::Tensor>&, at::Tensor& out) override {
      if (n.op == Op::Conv2d || n.op == Op::Linear)
        macs[n.id] = double(out.numel() / out.size(0)) * double(n.param("weight").numel() / n.param("weight").size(0));
    }
    std::map<int, double> macs;
  } macs;
  forward(q.graph, calib.slice(0, 0, 1), &macs);
  double w4a4 = 0, chosen = 0;
  std::map<int, int> bits_of_point;
  std::set<int> widths;
  ASSERT_EQ(report.mixed_precision.size(), report.layers.size());
  for (size_t l = 0; l < report.layers.size(); ++l) {
    const MixedPrecisionLayer& row = report.mixed_precision[l];
    const int id = report.layers[l].node;
    const int source = points.scale_source[static_cast<size_t>(q.graph.node(id).inputs[0])];
    SCOPED_TRACE(row.name);
    EXPECT_EQ(row.input_point, q.graph.node(source).name);
    EXPECT_EQ(q.activations.at(source).range.bits, row.chosen_activation_bits);  // what the engines read
    EXPECT_EQ(q.weights.at(id).range.bits, row.chosen_bits);
    if (source == 0) {
      EXPECT_EQ(row.chosen_activation_bits, 8);
      EXPECT_EQ(row.candidate_activation_bits, std::vector<int>{8});
    } else {
      EXPECT_EQ(row.candidate_activation_bits, o.candidate_activation_bits);
      // Coarser activations never lower the point's divergence by much.
      EXPECT_GE(row.activation_sensitivity[0] + 1e-6, row.activation_sensitivity[1]);
      widths.insert(row.chosen_activation_bits);
      // One reader per point carries its sensitivity: the first.
      EXPECT_EQ(row.activation_counted, !bits_of_point.count(source));
      bits_of_point.emplace(source, row.chosen_activation_bits);
      EXPECT_EQ(bits_of_point.at(source), row.chosen_activation_bits) << "readers of one point disagree";
    }
    w4a4 += macs.macs.at(id) * 4 * (source == 0 ? 8 : 4);
    chosen += macs.macs.at(id) * row.chosen_bits * row.chosen_activation_bits;
  }
  EXPECT_NEAR(report.bops_budget, w4a4, 1e-9 * w4a4);
  EXPECT_NEAR(report.bops, chosen, 1e-9 * chosen);
  EXPECT_LE(chosen, w4a4);
  EXPECT_EQ(widths, (std::set<int>{4, 8}));  // the budget lies between the candidates: a mix
  // Points no convolution reads keep --abits; the input stays 8.
  for (const auto& [id, a] : q.activations) {
    if (id != 0 && !bits_of_point.count(id)) {
      EXPECT_EQ(a.range.bits, 4) << q.graph.node(id).name;
    }
  }
  EXPECT_EQ(q.activations.at(0).range.bits, 8);

  // Integer engine: fast kernels bit-exact with the reference ones, and close
  // to the simulated engine (the dyadic approximation moves a value by a step now and then).
  const IntegerEngine reference(q, IntKernel::kReference), fast(q, IntKernel::kFast);
  const at::Tensor integer = fast.forward(calib);
  EXPECT_TRUE(at::equal(reference.forward(calib), integer));
  const at::Tensor simulated = SimulatedModel(q).forward(calib);
  EXPECT_LE((integer - simulated).abs().max().item<double>(), 0.02 * (simulated.abs().max().item<double>() + 1e-12));
  EXPECT_GE(integer.argmax(1).eq(simulated.argmax(1)).sum().item<int64_t>(), 31);

  // Refusals: no BOPs budget, a width outside 2..8, both budget forms, kl below 8 bits.
  QuantizeOptions bad = o;
  bad.bops_budget_weight_bits = bad.bops_budget_activation_bits = 0;
  bad.size_budget_bits_per_weight = 4;
  EXPECT_NE(error_of([&] { check_quantize_options(bad); }).find("--candidate-abits: expected a BOPs budget"), std::string::npos);
  bad = o, bad.candidate_activation_bits = {4, 9};
  EXPECT_NE(error_of([&] { check_quantize_options(bad); }).find("--candidate-abits"), std::string::npos);
  bad = o, bad.bops_budget = 1e9;
  EXPECT_NE(error_of([&] { check_quantize_options(bad); }).find("either --bops-budget or --bops-budget-bits"), std::string::npos);
  bad = o, bad.activation_range.method = RangeMethod::kKl, bad.activation_bits = 8;
  EXPECT_NE(error_of([&] { check_quantize_options(bad); }).find("--act-range kl"), std::string::npos);
  bad = o, bad.candidate_activation_bits.clear();  // then A of W,A must be --abits
  bad.activation_bits = 8;
  EXPECT_NE(error_of([&] { check_quantize_options(bad); }).find("--bops-budget-bits"), std::string::npos);
}

namespace {

bool is_power_of_two(double v) {
  int exponent = 0;
  return v > 0 && std::frexp(v, &exponent) == 0.5;
}

// d_o^T H d_o summed over channels (or |d|^2 without H), computed here from the
// definition rather than by the library.
double objective(const at::Tensor& w, const at::Tensor& scale, const at::Tensor& q, const at::Tensor& h) {
  const int64_t channels = w.size(0);
  const at::Tensor d = w.to(at::kDouble).reshape({channels, -1}) -
                       scale.to(at::kDouble).unsqueeze(1) * q.to(at::kDouble).reshape({channels, -1});
  if (!h.defined()) return d.pow(2).sum().item<double>();
  double total = 0;
  const int64_t per_group = channels / h.size(0);
  for (int64_t o = 0; o < channels; ++o) total += d[o].dot(h[o / per_group].to(at::kDouble).mv(d[o])).item<double>();
  return total;
}

}  // namespace

// The table starts from the uniform grid and keeps the best iterate, so it is
// never worse than the uniform quantizer on the objective it fits; on
// Laplacian (peaked, long-tailed) weights non-uniform levels are clearly better.
// q is lut[codes], the table int8, and scales are powers of two when asked.
TEST(WeightLut, NeverWorseThanUniformAndBetterOnLaplacianWeights) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(21);
  const int64_t out = 16, d = 27;
  const at::Tensor uniform_w = (at::rand({out, 3, 3, 3}, gen) * 2 - 1) * at::linspace(0.1, 1.0, out).reshape({out, 1, 1, 1});
  const at::Tensor sign = at::randint(0, 2, {out, 3, 3, 3}, gen).to(at::kFloat) * 2 - 1;
  const at::Tensor laplace_w = at::empty({out, 3, 3, 3}).exponential_(1.0, gen) * sign * 0.1;
  // Correlated inputs: H = A A^T / d, one group.
  const at::Tensor a = at::randn({d, d}, gen, at::kDouble) + 2 * at::eye(d, at::kDouble);
  const at::Tensor h = (a.matmul(a.t()) / static_cast<double>(d)).unsqueeze(0);
  const QuantRange range{4, true};
  for (bool power_of_two : {false, true})
    for (bool output : {false, true})
      for (bool laplace : {false, true}) {
        SCOPED_TRACE(std::string(power_of_two ? "pow2 " : "") + (output ? "output objective " : "weight objective ") +
                     (laplace ? "laplace" : "uniform"));
        const at::Tensor& w = laplace ? laplace_w : uniform_w;
        const at::Tensor hessian = output ? h : at::Tensor();
        RangeOptions mmse;
        mmse.power_of_two = power_of_two;
        const at::Tensor clips = output ? choose_weight_clips_for_output(w, range, h, true, power_of_two)
                                        : choose_weight_clips(w, range, mmse);
        const at::Tensor scale = (clips / 7.0).to(at::kFloat);
        const double uniform = objective(w, scale, quantize(w, scale, range, 0), hessian);
        const WeightLut fit = fit_weight_lut(w, scale, range, hessian, power_of_two);
        ASSERT_EQ(fit.lut.scalar_type(), at::kChar);
        ASSERT_EQ(fit.lut.numel(), 16);
        EXPECT_LE(fit.lut.abs().max().item<int>(), 127);
        EXPECT_LT(fit.codes.max().item<int>(), 16);
        EXPECT_TRUE(at::equal(fit.q, decode_lut(fit.codes, fit.lut)));
        EXPECT_EQ(fit.q.sizes(), w.sizes());
        const double fitted = objective(w, fit.scale, fit.q, hessian);
        EXPECT_NEAR(fitted, fit.objective, 1e-6 * fitted);
        EXPECT_NEAR(uniform, fit.objective_uniform, 1e-6 * uniform);
        EXPECT_LE(fitted, uniform);
        if (laplace) {
          EXPECT_LT(fitted, 0.85 * uniform);
        }
        if (power_of_two) {
          for (int64_t o = 0; o < out; ++o) EXPECT_TRUE(is_power_of_two(fit.scale[o].item<double>())) << o;
        }
      }
  // No iterations: exactly the uniform weights.
  const at::Tensor scale = (choose_weight_clips(laplace_w, range, RangeOptions{}) / 7.0).to(at::kFloat);
  const WeightLut start = fit_weight_lut(laplace_w, scale, range, at::Tensor(), false, 0);
  EXPECT_TRUE(at::equal(start.scale.unsqueeze(1) * start.q.to(at::kFloat).reshape({out, -1}),
                        fake_quantize(laplace_w, scale, range, 0).reshape({out, -1})));
  EXPECT_NE(error_of([&] { fit_weight_lut(laplace_w, scale, QuantRange{8, true}, at::Tensor(), false); }).find("2 to 4 bits"),
            std::string::npos);
  EXPECT_NE(error_of([&] { lut_codes(at::full({2}, 5, at::kChar), start.lut); }).find("the value 5"), std::string::npos);
}

// The pipeline with --pow2-scales: every weight scale (residual tensors too)
// and every activation scale (the input's too) is an exact power of two.
TEST(Quantize, PowerOfTwoScalesEverywhere) {
  const Graph graph = import_torchscript(kModel);
  const at::Tensor calib = calibration_batch(16, 12);
  QuantizeOptions o;
  o.weight_bits = 4;
  o.activation_bits = 4;
  o.residual_layers = 2;
  o.power_of_two_scales = true;
  QuantizeReport report;
  const QuantizedModel q = quantize_model(graph, calib, o, report);
  EXPECT_TRUE(q.config.power_of_two_scales);
  int residual = 0;
  for (const auto& [id, w] : q.weights) {
    for (int64_t c = 0; c < w.scale.numel(); ++c)
      EXPECT_TRUE(is_power_of_two(w.scale[c].item<double>())) << q.graph.node(id).name << " channel " << c;
    residual += w.residual.defined();
  }
  EXPECT_EQ(residual, 2);
  for (const auto& [id, a] : q.activations) EXPECT_TRUE(is_power_of_two(a.scale)) << q.graph.node(id).name;
  // Without the option the scales are not (the test can fail).
  o.power_of_two_scales = false;
  const QuantizedModel free = quantize_model(graph, calib, o, report);
  int free_powers = 0;
  for (const auto& [id, a] : free.activations) free_powers += is_power_of_two(a.scale);
  EXPECT_LT(free_powers, static_cast<int>(free.activations.size()));
}

// The pipeline with --weight-lut (and AdaRound between table levels): every
// <= 4-bit layer has a table, q = lut[codes], the report lists it, and the
// artifact round-trips codes, table, decoded q and scales bit-exactly.
TEST(Artifact, LookupTablesRoundTripBitExact) {
  const Graph graph = import_torchscript(kModel);
  const at::Tensor calib = calibration_batch(16, 13);
  QuantizeOptions o;
  o.weight_bits = 4;
  o.first_last_bits = 8;  // the first and last layers stay uniform
  o.activation_bits = 4;
  o.power_of_two_scales = true;
  o.weight_lut = true;
  o.reconstruct.method = Reconstruction::kAdaRound;
  o.reconstruct.iterations = 100;
  QuantizeReport report;
  QuantizedModel q = quantize_model(graph, calib, o, report);
  int tables = 0;
  for (const LayerReport& l : report.layers) {
    const WeightQuant& w = q.weights.at(l.node);
    EXPECT_EQ(w.lut.defined(), l.bits <= 4) << l.name;
    EXPECT_EQ(!l.lut.empty(), l.bits <= 4) << l.name;
    if (!w.lut.defined()) continue;
    ++tables;
    EXPECT_TRUE(at::equal(w.q, decode_lut(w.codes, w.lut))) << l.name;
    EXPECT_LE(l.lut_objective_ratio, 1.0) << l.name;
    EXPECT_GT(l.reconstruction_error_before, 0.0) << l.name;
    EXPECT_LE(l.reconstruction_error_after, l.reconstruction_error_before) << l.name;
  }
  EXPECT_GE(tables, 2);
  q.config.calibration = "test";
  const fs::path dir = fs::temp_directory_path() / "dfq_lut_artifact_test";
  fs::create_directories(dir);
  const std::string path = (dir / "m.dfq").string();
  save_quantized_model(q, path);
  const QuantizedModel back = load_quantized_model(path);
  EXPECT_TRUE(back.config.weight_lut);
  EXPECT_TRUE(back.config.power_of_two_scales);
  for (const auto& [id, w] : q.weights) {
    const WeightQuant& b = back.weights.at(id);
    EXPECT_EQ(w.lut.defined(), b.lut.defined());
    if (w.lut.defined()) {
      EXPECT_TRUE(at::equal(w.lut, b.lut));
      EXPECT_TRUE(at::equal(w.codes, b.codes));
    }
    EXPECT_TRUE(at::equal(w.q, b.q));
    EXPECT_TRUE(at::equal(w.scale, b.scale));
  }
  EXPECT_TRUE(at::equal(SimulatedModel(q).forward(calib), SimulatedModel(back).forward(calib)));
  // Codes are packed at the weight bits: the file is about as large as the uniform model's.
  QuantizeOptions uniform = o;
  uniform.weight_lut = false;
  QuantizedModel u = quantize_model(graph, calib, uniform, report);
  const std::string uniform_path = (dir / "u.dfq").string();
  save_quantized_model(u, uniform_path);
  EXPECT_LE(std::llabs(static_cast<long long>(fs::file_size(path)) - static_cast<long long>(fs::file_size(uniform_path))),
            400LL * tables);
  fs::remove_all(dir);
}

// What a table cannot be combined with is refused, naming --weight-lut.
TEST(Quantize, WeightLutRefusesWhatItDoesNotSupport) {
  const Graph graph = import_torchscript(kModel);
  const at::Tensor calib = calibration_batch(4, 14);
  QuantizeReport report;
  auto refused = [&](auto&& change, const std::string& expected) {
    QuantizeOptions o;
    o.weight_bits = 4;
    o.weight_lut = true;
    change(o);
    const std::string e = error_of([&] { quantize_model(graph, calib, o, report); });
    EXPECT_NE(e.find("--weight-lut"), std::string::npos) << e;
    EXPECT_NE(e.find(expected), std::string::npos) << e;
  };
  refused([](QuantizeOptions& o) { o.weight_bits = 8; }, "--wbits 8");
  refused([](QuantizeOptions& o) { o.residual_layers = 1; }, "--residual-layers 1");
  refused([](QuantizeOptions& o) { o.size_budget_bits_per_weight = 4; o.weight_bits = 4; }, "mixed-precision");
  refused([](QuantizeOptions& o) { o.reconstruct.method = Reconstruction::kAdaQuant; }, "--reconstruct adaquant");
}
