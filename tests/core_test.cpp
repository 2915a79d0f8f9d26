// Importer and float executor, checked against TorchScript's own outputs; output files (atomic_file.h).
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/script.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "test_util.h"
#include "core/execute.h"
#include "core/passes.h"
#include "core/graph.h"
#include "core/import_torchscript.h"
#include "core/summary.h"

namespace fs = std::filesystem;
using namespace dfq;
using namespace dfq::testing;

namespace {


at::Tensor seeded_input(const std::vector<int64_t>& shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen);
}

at::Tensor torchscript_output(const std::string& path, const at::Tensor& input) {
  torch::jit::Module module = torch::jit::load(path);
  module.eval();
  torch::NoGradGuard no_grad;
  return module.forward({input}).toTensor();
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }


void expect_matches_torchscript(const std::string& path, const std::vector<int64_t>& shape, uint64_t seed = 1) {
  Graph graph = import_torchscript(path);
  at::Tensor x = seeded_input(shape, seed);
  at::Tensor expected = torchscript_output(path, x);
  at::Tensor actual;
  {
    torch::NoGradGuard no_grad;
    actual = forward(graph, x);
  }
  ASSERT_EQ(actual.sizes(), expected.sizes()) << path;
  EXPECT_LE(max_abs_diff(actual, expected), 1e-4) << path;
  // The evaluation layout (channels-last weights and input) computes the same function.
  Graph nhwc = graph;
  use_channels_last(nhwc);
  torch::NoGradGuard no_grad;
  EXPECT_LE(max_abs_diff(forward(nhwc, to_channels_last(x)), expected), 1e-4) << path << " (channels-last)";
}

nlohmann::json manifest() {
  std::ifstream in(kFixtures / "manifest.json");
  return nlohmann::json::parse(in);
}

}  // namespace

TEST(Importer, EveryFixtureMatchesTorchScript) {
  int supported = 0;
  for (const auto& entry : manifest()) {
    if (!entry["supported"].get<bool>()) continue;
    SCOPED_TRACE(entry["file"].get<std::string>());
    expect_matches_torchscript((kFixtures / entry["file"].get<std::string>()).string(),
                               entry["input_shape"].get<std::vector<int64_t>>());
    ++supported;
  }
  EXPECT_GE(supported, 20);
}

TEST(Importer, FixturesCoverEveryOp) {
  std::set<const OpDef*> seen;
  for (const auto& entry : manifest()) {
    if (!entry["supported"].get<bool>()) continue;
    Graph g = import_torchscript((kFixtures / entry["file"].get<std::string>()).string());
    for (const Node& n : g.nodes) seen.insert(n.op);
  }
  for (const OpDef* op : all_ops())  // scale is imported from aten::mul with a constant
    EXPECT_TRUE(seen.count(op)) << "no fixture exercises " << op_name(op);
}

TEST(Importer, ReshapeFollowsTheBatchSize) {
  // Fixtures were traced at batch 2; x.view(x.size(0), -1) must follow the input.
  for (const auto& entry : manifest()) {
    if (!entry["supported"].get<bool>()) continue;
    auto ops = entry["ops"].get<std::vector<std::string>>();
    if (std::find(ops.begin(), ops.end(), "aten::size") == ops.end()) continue;
    auto shape = entry["input_shape"].get<std::vector<int64_t>>();
    shape[0] = 5;
    SCOPED_TRACE(entry["file"].get<std::string>());
    expect_matches_torchscript((kFixtures / entry["file"].get<std::string>()).string(), shape, 7);
  }
}

TEST(Importer, RefusesUnsupportedOpNamingOpAndScope) {
  const std::string message = error_of([] { import_torchscript((kFixtures / "unsupported_cumsum.pt").string()); });
  EXPECT_NE(message.find("aten::cumsum"), std::string::npos) << message;
  EXPECT_NE(message.find("'head'"), std::string::npos) << message;
  const std::string norm = error_of([] { import_torchscript((kFixtures / "unsupported_layer_norm.pt").string()); });
  EXPECT_NE(norm.find("aten::layer_norm"), std::string::npos) << norm;
  EXPECT_NE(norm.find("'norm'"), std::string::npos) << norm;
}

TEST(Importer, RefusesModelsWhoseInputIsNotOneImage) {
  const std::string vector = error_of([] { import_torchscript((kFixtures / "vector_input.pt").string()); });
  EXPECT_NE(vector.find("image input N x C x H x W"), std::string::npos) << vector;
  EXPECT_NE(vector.find("vector of 16 features"), std::string::npos) << vector;
  const std::string two = error_of([] { import_torchscript((kFixtures / "two_inputs.pt").string()); });
  EXPECT_NE(two.find("one image tensor"), std::string::npos) << two;
  EXPECT_NE(two.find("taking 2 inputs"), std::string::npos) << two;
}

TEST(Importer, EveryOpHasOneDefinitionAndRunsItsRole) {
  std::set<std::string> names, kinds;
  for (const OpDef* op : all_ops()) {
    EXPECT_TRUE(names.insert(op->name).second) << op->name;
    EXPECT_EQ(&op_by_name(op->name), op);
    EXPECT_NE(op->run, nullptr) << op->name;
    for (const char* kind : op->aten) {
      EXPECT_TRUE(kinds.insert(kind).second) << kind;
      EXPECT_EQ(op_for_aten(kind), op) << kind;
    }
    // What each role needs from its op (op.h).
    if (op->role == QuantRole::kTable) { EXPECT_NE(op->pointwise, nullptr) << op->name; }
    if (op->role == QuantRole::kAverage) { EXPECT_NE(op->pool, nullptr) << op->name; }
    if (op->role == QuantRole::kResample) { EXPECT_NE(op->resample, nullptr) << op->name; }
    if (op->role == QuantRole::kClamp) { EXPECT_NE(op->bounds, nullptr) << op->name; }
    // Every op dfq imports also exports to ONNX (the input is the graph's input).
    if (op != Op::Input) { EXPECT_NE(op->export_onnx, nullptr) << op->name; }
  }
  EXPECT_EQ(op_for_aten("aten::cumsum"), nullptr);
  EXPECT_NE(error_of([] { op_by_name("cumsum"); }).find("'cumsum'"), std::string::npos);
}

TEST(Importer, RefusesMissingAndNonTorchScriptFiles) {
  EXPECT_NE(error_of([] { import_torchscript("/nonexistent/model.pt"); }).find("no such file"), std::string::npos);
  const fs::path dir = fs::temp_directory_path() / "dfq_core_test_dir";
  fs::create_directories(dir);
  EXPECT_NE(error_of([&] { import_torchscript(dir.string()); }).find("regular file"), std::string::npos);
  const fs::path text = dir / "not_a_model.pt";
  std::ofstream(text) << "this is not a zip archive\n";
  const std::string message = error_of([&] { import_torchscript(text.string()); });
  EXPECT_NE(message.find("TorchScript"), std::string::npos) << message;
  EXPECT_NE(message.find(text.string()), std::string::npos) << message;
  fs::remove_all(dir);
}

TEST(Importer, EmbeddedModelMatchesTorchScript) {
  const fs::path model = kSource / "weights" / "fashion_cnn.pt";
  expect_matches_torchscript(model.string(), {4, 1, 28, 28});
  Graph g = import_torchscript(model.string());
  EXPECT_EQ(g.input_channels, 1);
  EXPECT_EQ(g.output_width(), 10);
  EXPECT_GE(g.batch_norm_nodes().size(), 5u);
}

class SharedModels : public ::testing::TestWithParam<std::tuple<const char*, int64_t>> {};

TEST_P(SharedModels, MatchTorchScript) {
  const fs::path model = kShared / "weights" / std::get<0>(GetParam());
  if (!fs::exists(model)) GTEST_SKIP() << "../shared not found: " << model << " is needed for this test";
  const int64_t size = std::get<1>(GetParam());
  expect_matches_torchscript(model.string(), {2, 3, size, size});
}

INSTANTIATE_TEST_SUITE_P(Weights, SharedModels,
                         ::testing::Values(std::make_tuple("cifar10-resnet20.pt", int64_t{32}),
                                           std::make_tuple("cifar10-resnet56.pt", int64_t{32}),
                                           std::make_tuple("imagenet-mobilenetv2-random.pt", int64_t{224})));

TEST(Importer, ResNet20Structure) {
  const fs::path model = kShared / "weights" / "cifar10-resnet20.pt";
  if (!fs::exists(model)) GTEST_SKIP() << "../shared not found: " << model << " is needed for this test";
  Graph g = import_torchscript(model.string());
  std::map<const OpDef*, int> counts;
  for (const Node& n : g.nodes) counts[n.op]++;
  EXPECT_EQ(counts[Op::Conv2d], 19);
  EXPECT_EQ(counts[Op::BatchNorm], 19);
  EXPECT_EQ(counts[Op::Linear], 1);
  EXPECT_EQ(counts[Op::Add], 9);
  EXPECT_EQ(counts[&op_by_name("pad")], 2);
  EXPECT_EQ(g.input_channels, 3);
  EXPECT_EQ(g.output_width(), 10);
  EXPECT_EQ(g.node(1).name, "conv1");
  EXPECT_EQ(g.node(2).name, "bn1");
  // Module scopes become unique node names.
  std::set<std::string> names;
  for (const Node& n : g.nodes) EXPECT_TRUE(names.insert(n.name).second) << "duplicate name " << n.name;
  EXPECT_TRUE(names.count("layer1.0.conv1"));
}

TEST(Executor, GradientToInputMatchesTorchScript) {
  // Synthesis optimizes pixels through the graph: d(loss)/d(input) must agree.
  const std::string path = (kSource / "weights" / "fashion_cnn.pt").string();
  Graph graph = import_torchscript(path);
  const at::Tensor x = seeded_input({3, 1, 28, 28}, 3);
  const at::Tensor weights = seeded_input({3, 10}, 4);
  at::Tensor ours = x.clone().requires_grad_(true);
  (forward(graph, ours) * weights).sum().backward();
  torch::jit::Module module = torch::jit::load(path);
  module.eval();
  at::Tensor theirs = x.clone().requires_grad_(true);
  (module.forward({theirs}).toTensor() * weights).sum().backward();
  ASSERT_TRUE(ours.grad().defined());
  EXPECT_GT(ours.grad().abs().max().item<double>(), 0.0);
  EXPECT_LE(max_abs_diff(ours.grad(), theirs.grad()), 1e-4);
}

// Records every node it sees and zeroes the output of one chosen node.
class RecordingObserver : public Observer {
 public:
  explicit RecordingObserver(int zero_node) : zero_node_(zero_node) {}
  void after_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor& output) override {
    seen.push_back(node.id);
    input_counts.push_back(inputs.size());
    if (node.id == zero_node_) output = at::zeros_like(output);
  }
  std::vector<int> seen;
  std::vector<size_t> input_counts;

 private:
  int zero_node_;
};

TEST(Executor, ObserverSeesEveryNodeAndCanReplaceOutputs) {
  Graph graph = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  torch::NoGradGuard no_grad;
  const at::Tensor x = seeded_input({2, 1, 28, 28}, 5);
  RecordingObserver observer(-1);
  const at::Tensor plain = forward(graph, x, &observer);
  ASSERT_EQ(observer.seen.size(), graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    EXPECT_EQ(observer.seen[i], static_cast<int>(i));
    EXPECT_EQ(observer.input_counts[i], graph.nodes[i].inputs.size());
  }
  // Zeroing the last linear layer's output must zero the network output.
  int linear = -1;
  for (const Node& n : graph.nodes)
    if (n.op == Op::Linear) linear = n.id;
  ASSERT_GE(linear, 0);
  RecordingObserver zeroing(linear);
  EXPECT_GT(plain.abs().max().item<double>(), 0.0);
  EXPECT_EQ(forward(graph, x, &zeroing).abs().max().item<double>(), 0.0);
}

TEST(Executor, RefusesInputWithWrongChannelCount) {
  Graph graph = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const std::string message = error_of([&] { forward(graph, at::zeros({1, 3, 28, 28})); });
  EXPECT_NE(message.find("N x 1 x H x W"), std::string::npos) << message;
}

TEST(Graph, ValidateRejectsMalformedGraphs) {
  Graph g;
  g.source = "test";
  EXPECT_NE(error_of([&] { validate(g); }).find("input"), std::string::npos);
  g.nodes.resize(2);
  g.nodes[0].name = "input";
  g.nodes[1] = Node{1, "relu", Op::ReLU, {0}, {}, {}};
  g.output = 1;
  EXPECT_EQ(error_of([&] { validate(g); }), "");
  g.nodes[1].inputs = {1};  // reads itself: not topological
  EXPECT_NE(error_of([&] { validate(g); }).find("precede"), std::string::npos);
  g.nodes[1] = Node{1, "conv", Op::Conv2d, {0}, {}, {}};  // conv without weight
  EXPECT_NE(error_of([&] { validate(g); }).find("weight"), std::string::npos);
  g.nodes[1] = Node{1, "add", Op::Add, {0}, {}, {}};  // add with one input
  EXPECT_NE(error_of([&] { validate(g); }).find("2 inputs"), std::string::npos);
}

TEST(Graph, LastUsesMarkTheFinalReader) {
  Graph g;
  g.nodes = {Node{0, "input", Op::Input, {}, {}, {}}, Node{1, "a", Op::ReLU, {0}, {}, {}},
             Node{2, "b", Op::ReLU, {1}, {}, {}}, Node{3, "c", Op::Add, {1, 2}, {}, {}}};
  g.output = 3;
  EXPECT_EQ(g.last_uses(), (std::vector<int>{1, 3, 3, 4}));
}

TEST(Summary, ShapesAndParameterCounts) {
  Graph graph = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  auto nodes = summarize(graph, {1, 1, 28, 28});
  ASSERT_EQ(nodes.size(), graph.nodes.size());
  EXPECT_EQ(nodes[0].output_shape, (std::vector<int64_t>{1, 1, 28, 28}));
  EXPECT_EQ(nodes[static_cast<size_t>(graph.output)].output_shape, (std::vector<int64_t>{1, 10}));
  int64_t total = 0;
  for (const auto& n : nodes) total += n.parameters;
  torch::jit::Module module = torch::jit::load((kSource / "weights" / "fashion_cnn.pt").string());
  int64_t expected = 0;
  for (const auto& p : module.parameters()) expected += p.numel();
  EXPECT_EQ(total, expected);
  const std::string table = format_summary(graph, nodes);
  EXPECT_NE(table.find("batch-norm layers"), std::string::npos);
}

TEST(FoldBatchNorm, PreservesOutputsAndRemovesFoldableBatchNorms) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> models = {
      {(kSource / "weights" / "fashion_cnn.pt").string(), {4, 1, 28, 28}}};
  const fs::path r20 = kShared / "weights" / "cifar10-resnet20.pt";
  if (fs::exists(r20)) models.push_back({r20.string(), {4, 3, 32, 32}});
  for (const auto& [path, shape] : models) {
    SCOPED_TRACE(path);
    Graph graph = import_torchscript(path);
    Graph folded = fold_batch_norms(graph);
    size_t convs = 0;
    for (const Node& n : graph.nodes) convs += n.op == Op::Conv2d;
    EXPECT_EQ(folded.nodes.size(), graph.nodes.size() - graph.batch_norm_nodes().size());
    EXPECT_TRUE(folded.batch_norm_nodes().empty());
    torch::NoGradGuard no_grad;
    const at::Tensor x = seeded_input(shape, 11);
    EXPECT_LE(max_abs_diff(forward(folded, x), forward(graph, x)), 1e-4);
    // The source graph is untouched.
    EXPECT_EQ(graph.batch_norm_nodes().size(), convs);
  }
}

TEST(FoldBatchNorm, BatchNormWhoseConvOutputIsSharedBecomesADepthwiseConvolution) {
  // conv -> bn, and conv -> relu: folding would change what relu sees, so the
  // BN becomes a 1x1 depthwise convolution of its own (DenseNet's BN after a cat too).
  Graph g;
  g.source = "test";
  Node input{0, "input", Op::Input, {}, {}, {}};
  Node conv{1, "conv", Op::Conv2d, {0}, {}, {}};
  conv.attrs.ints = {{"stride", {1, 1}}, {"padding", {0, 0}}, {"dilation", {1, 1}}, {"groups", {1}}};
  conv.params["weight"] = seeded_input({2, 2, 1, 1}, 1);
  Node bn{2, "bn", Op::BatchNorm, {1}, {}, {}};
  bn.attrs.reals["eps"] = 1e-5;
  bn.params = {{"weight", at::full({2}, 2.0)}, {"bias", at::ones({2})}, {"running_mean", at::ones({2})},
               {"running_var", at::full({2}, 4.0)}};
  Node relu{3, "relu", Op::ReLU, {1}, {}, {}};
  Node add{4, "add", Op::Add, {2, 3}, {}, {}};
  add.attrs.reals["alpha"] = 1.0;
  g.nodes = {input, conv, bn, relu, add};
  g.output = 4;
  validate(g);
  Graph folded = fold_batch_norms(g);
  EXPECT_EQ(folded.batch_norm_nodes().size(), 0u);
  ASSERT_EQ(folded.nodes.size(), 5u);
  EXPECT_EQ(folded.nodes[2].op, Op::Conv2d);
  EXPECT_EQ(folded.nodes[2].name, "bn");
  EXPECT_EQ(folded.nodes[2].attrs.i("groups"), 2);
  // k = 2 / sqrt(4 + 1e-5), bias = 1 - 1 * k, from the BN above.
  const double k = 2.0 / std::sqrt(4.0 + 1e-5);
  EXPECT_NEAR(folded.nodes[2].param("weight").flatten()[1].item<double>(), k, 1e-6);
  EXPECT_NEAR(folded.nodes[2].param("bias")[0].item<double>(), 1.0 - k, 1e-6);
  const at::Tensor x = seeded_input({1, 2, 3, 3}, 2);
  EXPECT_LE(max_abs_diff(forward(folded, x), forward(g, x)), 1e-6);
}

TEST(Executor, InPlaceReluDoesNotTouchTheCallersInputOrSharedValues) {
  Graph graph = import_torchscript((kSource / "weights" / "fashion_cnn.pt").string());
  const at::Tensor x = seeded_input({2, 1, 28, 28}, 9);
  const at::Tensor copy = x.clone();
  at::Tensor with_grad_mode = forward(graph, x);
  at::Tensor without;
  {
    c10::InferenceMode guard;
    without = forward(graph, x);
  }
  EXPECT_TRUE(at::equal(x, copy));
  EXPECT_LE(max_abs_diff(with_grad_mode.detach(), without), 1e-6);
}

// ---------------------------------------------------------------- output files

namespace {

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

struct TempDir {
  fs::path path;
  TempDir() : path(fs::temp_directory_path() / ("dfq_core_test_out_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST(StagedOutputs, NothingAppearsWithoutCommit) {
  TempDir dir;
  {
    StagedOutputs outputs;
    const std::string file = outputs.stage((dir.path / "a.json").string());
    const std::string folder = outputs.stage((dir.path / "set").string());
    write_file(file, "{}");
    fs::create_directory(folder);
    write_file(folder + "/images.pt", "data");
    EXPECT_EQ(names_in(dir.path).size(), 2u);  // the two temporaries
  }  // an exception would unwind the same way
  EXPECT_TRUE(names_in(dir.path).empty());
}

TEST(StagedOutputs, CommitPublishesEverythingAndReplacesAnEarlierDirectory) {
  TempDir dir;
  fs::create_directory(dir.path / "set");
  write_file((dir.path / "set" / "old.txt").string(), "old");
  StagedOutputs outputs;
  const std::string file = outputs.stage((dir.path / "a.json").string());
  const std::string folder = outputs.stage((dir.path / "set/").string());  // a trailing slash names the directory
  write_file(file, "{\"x\": 1}");
  fs::create_directory(folder);
  write_file(folder + "/images.pt", "new");
  EXPECT_EQ(read_all(dir.path / "set" / "old.txt"), "old");  // untouched until commit
  outputs.commit();
  EXPECT_EQ(names_in(dir.path), (std::vector<std::string>{"a.json", "set"}));
  EXPECT_EQ(names_in(dir.path / "set"), std::vector<std::string>{"images.pt"});
  EXPECT_EQ(read_all(dir.path / "set" / "images.pt"), "new");
  EXPECT_EQ(read_all(dir.path / "a.json"), "{\"x\": 1}");
}

TEST(StagedOutputs, ErrorsNameTheFinalPath) {
  TempDir dir;
  StagedOutputs outputs;
  const std::string final_dir = (dir.path / "set").string();
  const std::string folder = outputs.stage(final_dir);
  const std::string message = error_of([&] { write_file(folder + "/missing/images.pt", "x"); });
  ASSERT_NE(message.find(folder), std::string::npos) << message;
  const std::string renamed = outputs.final_names(message);
  EXPECT_EQ(renamed.find(folder), std::string::npos) << renamed;
  EXPECT_NE(renamed.find(final_dir + "/missing/images.pt"), std::string::npos) << renamed;
}

TEST(OutputFiles, UnwritableLocationsAreRefusedUpFront) {
  TempDir dir;
  write_file((dir.path / "file").string(), "a regular file");
  const std::string message = error_of([&] { check_writable("--out", (dir.path / "file" / "q.dfq").string()); });
  EXPECT_NE(message.find("--out '" + (dir.path / "file" / "q.dfq").string() + "': expected a writable location"),
            std::string::npos) << message;
  EXPECT_NE(error_of([&] { check_writable("--json", (dir.path / "none" / "e.json").string()); }).find("no directory"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { check_writable("--json", (dir.path / "e.json").string()); }), "");
  EXPECT_EQ(names_in(dir.path), std::vector<std::string>{"file"});  // the probe is gone
}

TEST(OutputFiles, AFailedWriteLeavesNoFile) {
  // A file-size limit makes write() fail with EFBIG, as a full disk fails with ENOSPC.
  TempDir dir;
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto previous = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string big(10000, 'x');
  const std::string atomic = error_of([&] { write_file_atomic((dir.path / "q.dfq").string(), big); });
  const std::string plain = error_of([&] { write_file((dir.path / "p.png").string(), big); });
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous);
  EXPECT_NE(atomic.find("q.dfq': expected 10000 bytes written, found 4096"), std::string::npos) << atomic;
  EXPECT_NE(plain.find("p.png': expected 10000 bytes written, found 4096"), std::string::npos) << plain;
  EXPECT_TRUE(names_in(dir.path).empty());
}
