// Cross-layer equalization and bias absorption (quant/equalize.h).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/execute.h"
#include "core/passes.h"
#include "core/import_torchscript.h"
#include "quant/equalize.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace dfq;
using namespace dfq::testing;

namespace {


at::Tensor seeded(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen);
}

// max |a - reference| relative to the reference's output range.
double relative_diff(const at::Tensor& a, const at::Tensor& reference) {
  const double range = (reference.max() - reference.min()).item<double>();
  return (a - reference).abs().max().item<double>() / std::max(range, 1e-30);
}

at::Tensor run(const Graph& g, const at::Tensor& x) {
  at::NoGradGuard no_grad;
  return forward(g, x);
}

const Node& by_name(const Graph& g, const std::string& name) {
  for (const Node& n : g.nodes)
    if (n.name == name) return n;
  throw std::runtime_error("no node " + name);
}

// A copy of `g` whose equalized pairs' ReLU6 are ReLU: what relu6_to_relu must equal.
Graph with_relu6_replaced(const Graph& g, const EqualizeReport& report) {
  Graph out = g;
  for (const EqualizedPair& p : report.pairs)
    if (p.relu6_replaced) {
      Node& n = out.nodes[static_cast<size_t>(by_name(g, p.activation).id)];
      n.op = Op::ReLU;
      n.attrs = Attrs{};
    }
  return out;
}

EqualizeOptions exact_options() {
  EqualizeOptions o;
  o.relu6_to_relu = false;
  o.bias_absorption = false;
  return o;
}

// Weights with output channel ranges spread over a few orders of magnitude.
at::Tensor spread_weight(std::vector<int64_t> shape, uint64_t seed) {
  const at::Tensor w = seeded(shape, seed);
  std::vector<int64_t> per_channel(shape.size(), 1);
  per_channel[0] = shape[0];
  return (w * at::exp(2.0 * seeded(per_channel, seed + 100))).contiguous();
}

// Builds small graphs node by node.
struct Builder {
  Graph g;
  explicit Builder(int64_t channels) {
    Node input;
    input.name = "input";
    g.nodes.push_back(input);
    g.input_channels = channels;
    g.source = "handmade";
  }
  Node& add(const OpDef* op, const std::string& name, std::vector<int> inputs) {
    Node n;
    n.id = static_cast<int>(g.nodes.size());
    n.name = name;
    n.op = op;
    n.inputs = std::move(inputs);
    g.nodes.push_back(n);
    return g.nodes.back();
  }
  int conv(int in, const std::string& name, const at::Tensor& w, int64_t groups, int64_t padding) {
    Node& n = add(Op::Conv2d, name, {in});
    n.params["weight"] = w;
    n.params["bias"] = seeded({w.size(0)}, 7) * 0.1;
    n.attrs.ints = {{"stride", {1, 1}}, {"padding", {padding, padding}}, {"dilation", {1, 1}}, {"groups", {groups}}};
    return n.id;
  }
  int linear(int in, const std::string& name, const at::Tensor& w) {
    Node& n = add(Op::Linear, name, {in});
    n.params["weight"] = w;
    n.params["bias"] = seeded({w.size(0)}, 8) * 0.1;
    return n.id;
  }
  int relu(int in, const std::string& name) { return add(Op::ReLU, name, {in}).id; }
  int clamp(int in, const std::string& name, double lo, double hi) {
    Node& n = add(Op::Clamp, name, {in});
    n.attrs.reals = {{"min", lo}, {"max", hi}};
    return n.id;
  }
  Graph done(int output) {
    g.output = output;
    validate(g);
    return g;
  }
};

// Input channel ranges of a Conv2d/Linear, from the definition: input channel
// c = g * I_g + k is column k of the rows of group g.
at::Tensor input_ranges(const Node& n) {
  const at::Tensor& w = n.param("weight");
  const int64_t groups = n.op == Op::Conv2d ? n.attrs.i("groups") : 1;
  const int64_t per_group_out = w.size(0) / groups, per_group_in = w.size(1);
  std::vector<double> r;
  for (int64_t c = 0; c < per_group_in * groups; ++c) {
    const at::Tensor rows = w.narrow(0, (c / per_group_in) * per_group_out, per_group_out);
    r.push_back(rows.select(1, c % per_group_in).abs().max().item<double>());
  }
  return at::tensor(r, at::kDouble);
}

at::Tensor output_ranges(const Node& n) {
  const at::Tensor& w = n.param("weight");
  return w.abs().reshape({w.size(0), -1}).amax(1).to(at::kDouble);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> fixtures() {
  std::ifstream in(kFixtures / "manifest.json");
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& entry : nlohmann::json::parse(in))
    if (entry["supported"].get<bool>())
      out.push_back({(kFixtures / entry["file"].get<std::string>()).string(),
                     entry["input_shape"].get<std::vector<int64_t>>()});
  return out;
}

// conv1 (3 -> 8, 3x3, no padding) -> BN -> ReLU -> conv2 (8 -> 5, 3x3,
// `padding`), with BN statistics such that for inputs in [-1, 1] the
// normalized value stays within +-3: the ReLU input never falls below
// c = beta - 3 |gamma|, so absorption is exact away from conv2's padding.
Graph absorption_graph(int64_t padding) {
  Builder b(3);
  const at::Tensor w1 = seeded({8, 3, 3, 3}, 21);
  const int c1 = b.conv(0, "conv1", w1, 1, 0);
  b.g.nodes[static_cast<size_t>(c1)].params.erase("bias");
  Node& bn = b.add(Op::BatchNorm, "bn", {c1});
  const at::Tensor bound = w1.abs().reshape({8, -1}).sum(1);  // |conv1(x)| <= bound
  const at::Tensor gamma = seeded({8}, 22);
  bn.params = {{"weight", gamma},
               {"bias", 3.0 * gamma.abs() + at::arange(8).to(at::kFloat) * 0.25},  // c = 0, 0.25, ... 1.75
               {"running_mean", at::zeros({8})},
               {"running_var", (bound / 3.0).pow(2) - 1e-5}};
  bn.attrs.reals["eps"] = 1e-5;
  const int r = b.relu(bn.id, "relu");
  return b.done(b.conv(r, "conv2", seeded({5, 8, 3, 3}, 23), 1, padding));
}

at::Tensor uniform_input(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::rand(shape, gen) * 2 - 1;
}

}  // namespace

// ReLU (and no activation) is positively homogeneous: equalizing such pairs
// keeps every output, on every fixture, the embedded model and ResNet-20.
TEST(Equalize, ReluPairsPreserveOutputs) {
  auto models = fixtures();
  models.push_back({kModel, {4, 1, 28, 28}});
  const fs::path r20 = kShared / "weights" / "cifar10-resnet20.pt";
  if (fs::exists(r20)) models.push_back({r20.string(), {4, 3, 32, 32}});
  size_t pairs = 0;
  for (const auto& [path, shape] : models) {
    SCOPED_TRACE(path);
    const Graph folded = fold_batch_norms(import_torchscript(path));
    Graph equalized = folded;
    const EqualizeReport report = equalize_cross_layer(equalized, exact_options());
    const at::Tensor x = seeded(shape, 3);
    EXPECT_LE(relative_diff(run(equalized, x), run(folded, x)), 1e-4);
    EXPECT_TRUE(report.converged);
    for (const EqualizedPair& p : report.pairs) EXPECT_FALSE(p.relu6_replaced);
    pairs += report.pairs.size();
  }
  EXPECT_GE(pairs, 2u + 1u);  // the embedded model's two blocks, at least one in the fixtures
}

// The embedded model: exactly the two conv1 -> ReLU -> conv2 pairs inside the
// residual blocks. The stem's ReLU feeds a residual Add, block*.conv2 and the
// shortcut feed Adds, the last conv a pool: those layers keep their weights.
TEST(Equalize, LeavesResidualAddInputsAlone) {
  const Graph folded = fold_batch_norms(import_torchscript(kModel));
  Graph equalized = folded;
  const EqualizeReport report = equalize_cross_layer(equalized, exact_options());
  std::set<std::pair<std::string, std::string>> pairs;
  for (const EqualizedPair& p : report.pairs) pairs.insert({p.layer1, p.layer2});
  const std::set<std::pair<std::string, std::string>> expected = {{"block1.conv1", "block1.conv2"},
                                                                  {"block2.conv1", "block2.conv2"}};
  EXPECT_EQ(pairs, expected);
  ASSERT_EQ(report.skipped.size(), 1u);
  EXPECT_NE(report.skipped[0].find("block3.dw.conv -> block3.pw.conv"), std::string::npos) << report.skipped[0];
  for (const char* name : {"stem.conv", "block2.shortcut.0", "block3.dw.conv", "block3.pw.conv", "fc"}) {
    EXPECT_TRUE(at::equal(by_name(equalized, name).param("weight"), by_name(folded, name).param("weight"))) << name;
    EXPECT_TRUE(at::equal(by_name(equalized, name).param("bias"), by_name(folded, name).param("bias"))) << name;
  }

  // A conv whose activation is also read by a residual Add is no layer1.
  Builder b(4);
  const int c1 = b.conv(0, "conv1", spread_weight({4, 4, 3, 3}, 1), 1, 1);
  const int r = b.relu(c1, "relu");
  const int c2 = b.conv(r, "conv2", spread_weight({4, 4, 3, 3}, 2), 1, 1);
  Node& add = b.add(Op::Add, "add", {c2, r});
  add.attrs.reals["alpha"] = 1.0;
  Graph residual = b.done(add.id);
  const Graph before = residual;
  EXPECT_TRUE(equalize_cross_layer(residual, exact_options()).pairs.empty());
  for (int id : {c1, c2}) EXPECT_TRUE(at::equal(residual.node(id).param("weight"), before.node(id).param("weight")));
}

// relu6_to_relu: the result is the original graph with the equalized pairs'
// ReLU6 replaced by ReLU (the embedded model's dw -> ReLU6 -> pw, and a
// depthwise layer2 with channel multiplier 2).
TEST(Equalize, Relu6ToReluEqualsTheGraphWithReluInstead) {
  const std::vector<std::pair<std::string, std::vector<int64_t>>> models = {
      {kModel, {4, 1, 28, 28}}, {(kFixtures / "conv_depthwise_bn_relu6.pt").string(), {2, 4, 8, 8}}};
  for (const auto& [path, shape] : models) {
    SCOPED_TRACE(path);
    const Graph folded = fold_batch_norms(import_torchscript(path));
    Graph equalized = folded;
    EqualizeOptions o;
    o.bias_absorption = false;
    const EqualizeReport report = equalize_cross_layer(equalized, o);
    int replaced = 0;
    for (const EqualizedPair& p : report.pairs) replaced += p.relu6_replaced;
    EXPECT_EQ(replaced, 1);
    EXPECT_TRUE(report.skipped.empty());
    const at::Tensor x = seeded(shape, 4) * 4;  // large enough that some ReLU6 inputs exceed 6
    EXPECT_LE(relative_diff(run(equalized, x), run(with_relu6_replaced(folded, report), x)), 1e-4);
  }
}

// After convergence every pair's layer1 output range equals its layer2 input
// range, channel by channel, for grouped and depthwise convs (with a channel
// multiplier), a chain of three layers, Clamp(0, inf) as a ReLU, and Linear
// pairs; the function is kept and the spread drops.
TEST(Equalize, RangesMatchAcrossGroupedChainsAndLinearPairs) {
  Builder b(4);
  int x = b.conv(0, "a", spread_weight({6, 4, 3, 3}, 1), 1, 1);
  x = b.relu(x, "a.relu");
  x = b.conv(x, "b", spread_weight({6, 2, 1, 1}, 2), 3, 0);  // grouped, 3 groups of 2
  x = b.clamp(x, "b.relu", 0.0, INFINITY);
  x = b.conv(x, "c", spread_weight({12, 1, 3, 3}, 3), 6, 1);  // depthwise, multiplier 2
  Node& pool = b.add(&op_by_name("adaptive_avg_pool2d"), "pool", {x});
  pool.attrs.ints["output_size"] = {1, 1};
  Node& flatten = b.add(&op_by_name("flatten"), "flatten", {pool.id});
  flatten.attrs.ints = {{"start_dim", {1}}, {"end_dim", {-1}}};
  x = b.linear(flatten.id, "d", spread_weight({8, 12}, 4));
  x = b.relu(x, "d.relu");
  const Graph original = b.done(b.linear(x, "e", spread_weight({3, 8}, 5)));
  Graph equalized = original;
  EqualizeOptions o = exact_options();
  o.tolerance = 1e-6;
  const EqualizeReport report = equalize_cross_layer(equalized, o);
  ASSERT_EQ(report.pairs.size(), 3u);  // a-b, b-c, d-e
  EXPECT_TRUE(report.converged);
  EXPECT_GT(report.iterations, 2);  // the chain needs more than one sweep
  for (const EqualizedPair& p : report.pairs) {
    const at::Tensor r1 = output_ranges(equalized.node(p.node1)), r2 = input_ranges(equalized.node(p.node2));
    EXPECT_LE(((r1 - r2).abs() / r2).max().item<double>(), 1e-4) << p.layer1 << " -> " << p.layer2;
  }
  for (const LayerSpread& l : report.layers) EXPECT_LT(l.spread_after, l.spread_before) << l.name;
  const at::Tensor input = seeded({3, 4, 6, 6}, 9);
  EXPECT_LE(relative_diff(run(equalized, input), run(original, input)), 1e-4);
}

// Equalizes MobileNetV2 without absorption, its BN gammas first multiplied by
// m = exp(sigma N(0, 1)) / rms(m) per channel (unit rms keeps activations from
// compounding over 50 layers); checks the pairs, convergence, every layer1's
// spread and utilization, and that the outputs, and the last equalized layer's
// (features.18.0, before its ReLU6), equal the graph with ReLU instead of the
// replaced ReLU6.
EqualizeReport equalize_mobilenet(const fs::path& model, double sigma) {
  Graph original = import_torchscript(model.string());
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  for (Node& n : original.nodes)
    if (n.op == Op::BatchNorm) {
      const at::Tensor m = at::exp(sigma * at::randn(n.param("weight").sizes(), gen));
      n.params["weight"] = n.param("weight") * m / m.pow(2).mean().sqrt();
    }
  const Graph folded = fold_batch_norms(original);
  Graph equalized = folded;
  EqualizeOptions o;
  o.bias_absorption = false;
  const EqualizeReport report = equalize_cross_layer(equalized, o);
  // 17 inverted-residual blocks: features.1 conv -> dw -> pw, the others pw -> dw -> pw (two
  // pairs each), plus two projection -> next expansion pairs with nothing between where
  // neither block has a residual Add (features.1 -> 2 and 17 -> 18).
  EXPECT_EQ(report.pairs.size(), 2u * 17u + 2u);
  EXPECT_TRUE(report.converged);
  for (const LayerSpread& l : report.layers)
    if (l.outputs_equalized) {
      EXPECT_LT(l.spread_after, l.spread_before) << l.name;
      EXPECT_GT(l.utilization_after, l.utilization_before) << l.name;
    }
  std::cout << "[ MobileNetV2 sigma " << sigma << " ] " << report.pairs.size() << " pairs, " << report.iterations
            << " sweeps, " << report.seconds << " s; spread of equalized layers: max " << report.max_spread_before
            << " -> " << report.max_spread_after << ", median " << report.median_spread_before << " -> "
            << report.median_spread_after << "\n";
  const at::Tensor x = seeded({2, 3, 224, 224}, 5);
  Graph reference = with_relu6_replaced(folded, report);
  EXPECT_LE(relative_diff(run(equalized, x), run(reference, x)), 1e-4);
  reference.output = equalized.output = by_name(folded, "features.18.0").id;
  EXPECT_LE(relative_diff(run(equalized, x), run(reference, x)), 1e-4);
  return report;
}

// Nagel's case: MobileNetV2's pw -> ReLU6 -> dw -> ReLU6 -> pw chains. The
// random-weight model's BN is at its initialization (gamma 1), so its channel
// ranges differ only by sampling (max spread 2.7); a trained model's BN scales
// spread its channels over decades, emulated by log-normal gammas.
TEST(Equalize, MobileNetV2SpreadDropsAndOutputsArePreserved) {
  const fs::path model = kShared / "weights" / "imagenet-mobilenetv2-random.pt";
  if (!fs::exists(model)) GTEST_SKIP() << "../shared not found: " << model << " is needed for this test";
  const EqualizeReport as_is = equalize_mobilenet(model, 0.0);
  EXPECT_LE(as_is.max_spread_after, as_is.max_spread_before / 1.4);
  const EqualizeReport spread = equalize_mobilenet(model, 1.0);
  EXPECT_LE(spread.max_spread_after, spread.max_spread_before / 10.0);
  EXPECT_LE(spread.median_spread_after, spread.median_spread_before / 10.0);
}

// Where the ReLU input stays above c, absorption keeps the outputs and lowers
// layer1's biases by c.
TEST(Equalize, BiasAbsorptionIsExactWithoutPaddingAndLowersLayer1Biases) {
  const Graph original = absorption_graph(0);
  const Graph folded = fold_batch_norms(original);
  Graph plain = folded, absorbed = folded;
  EqualizeOptions off;
  off.bias_absorption = false;
  equalize_cross_layer(plain, off);
  const EqualizeReport report = equalize_cross_layer(absorbed, EqualizeOptions{}, folded_batch_norm_statistics(original));
  ASSERT_EQ(report.pairs.size(), 1u);
  const EqualizedPair& p = report.pairs[0];
  EXPECT_EQ(p.absorption, "absorbed");
  EXPECT_EQ(p.absorbed_channels, 7);  // c = 0 for channel 0
  const at::Tensor b_plain = plain.node(p.node1).param("bias"), b_absorbed = absorbed.node(p.node1).param("bias");
  EXPECT_TRUE((b_absorbed <= b_plain).all().item<bool>());
  EXPECT_LT(b_absorbed.sum().item<double>(), b_plain.sum().item<double>() - 1.0);
  const at::Tensor x = uniform_input({4, 3, 10, 10}, 6);
  EXPECT_LE(relative_diff(run(absorbed, x), run(folded, x)), 1e-4);
}

// Zero padding of layer2 is not shifted by c: skipped by default; allowed, the
// interior is kept and the border is not.
TEST(Equalize, BiasAbsorptionSkipsPaddedLayer2UnlessAllowed) {
  const Graph original = absorption_graph(1);
  const Graph folded = fold_batch_norms(original);
  const auto statistics = folded_batch_norm_statistics(original);
  Graph skipped = folded, allowed = folded;
  EXPECT_EQ(equalize_cross_layer(skipped, EqualizeOptions{}, statistics).pairs.at(0).absorption, "padding");
  EqualizeOptions o;
  o.absorb_through_padding = true;
  EXPECT_EQ(equalize_cross_layer(allowed, o, statistics).pairs.at(0).absorption, "absorbed");
  const at::Tensor x = uniform_input({4, 3, 10, 10}, 7);
  const at::Tensor reference = run(folded, x);
  EXPECT_LE(relative_diff(run(skipped, x), reference), 1e-4);
  const at::Tensor out = run(allowed, x);
  const auto interior = [](const at::Tensor& t) { return t.narrow(2, 1, t.size(2) - 2).narrow(3, 1, t.size(3) - 2); };
  EXPECT_LE(relative_diff(interior(out), interior(reference)), 1e-4);
  EXPECT_GT(relative_diff(out, reference), 1e-2);
}

TEST(Equalize, RefusesBadOptionsAndStatistics) {
  Graph g = fold_batch_norms(absorption_graph(0));
  EqualizeOptions o;
  o.max_iterations = 0;
  EXPECT_NE(error_of([&] { equalize_cross_layer(g, o); }).find("max_iterations"), std::string::npos);
  o = EqualizeOptions{};
  o.tolerance = 0;
  EXPECT_NE(error_of([&] { equalize_cross_layer(g, o); }).find("tolerance"), std::string::npos);
  const std::map<std::string, ChannelStatistics> wrong = {{"conv1", {at::zeros({3}), at::ones({3})}}};
  EXPECT_NE(error_of([&] { equalize_cross_layer(g, EqualizeOptions{}, wrong); }).find("statistics of conv1"),
            std::string::npos);
}

// The pipeline hook: quantize_model equalizes after folding and reports it.
TEST(Equalize, QuantizePipelineEqualizesAfterFolding) {
  const Graph graph = import_torchscript(kModel);
  QuantizeOptions o;
  o.bias_correction = BiasCorrection::kNone;
  o.cross_layer_equalization = true;
  QuantizeReport report;
  const QuantizedModel q = quantize_model(graph, seeded({8, 1, 28, 28}, 1), o, report);
  EXPECT_EQ(report.equalization.pairs.size(), 3u);
  EXPECT_EQ(by_name(q.graph, "block3.dw.act.clamp").op, Op::ReLU);
  o.cross_layer_equalization = false;
  quantize_model(graph, seeded({8, 1, 28, 28}, 1), o, report);
  EXPECT_TRUE(report.equalization.pairs.empty());
}
