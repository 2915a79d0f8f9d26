// dfq export (quant/export_onnx.h): the ONNX file read back with onnx's own
// protobuf classes and checked against the quantized model it came from.
// Running the files is tests/ort_export_test.sh's job (ONNX Runtime).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/content_hash.h"
#include "core/import_torchscript.h"
#include "quant/export_onnx.h"
#include "quant/quantize.h"
#include "quant/simulate.h"
#include "test_util.h"

namespace dfq {
namespace {

using testing::error_of;
using testing::kFixtures;
using testing::kModel;

at::Tensor random_batch(at::IntArrayRef shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen);
}

QuantizedModel quantize(const Graph& g, const at::Tensor& calib, int wbits, int abits, int residual_layers = 0) {
  QuantizeOptions o;
  o.weight_objective = WeightObjective::kWeight;
  o.weight_bits = wbits;
  o.activation_bits = abits;
  o.residual_layers = residual_layers;
  QuantizeReport report;
  return quantize_model(g, calib, o, report);
}

onnx::ModelProto parse(const std::string& bytes) {
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

const onnx::TensorProto& initializer(const onnx::ModelProto& m, const std::string& name) {
  for (const onnx::TensorProto& t : m.graph().initializer())
    if (t.name() == name) return t;
  throw std::runtime_error("no initializer " + name);
}

// Integer values of an initializer, unpacking 4-bit types (low nibble first)
// independently of the writer.
std::vector<int64_t> values(const onnx::TensorProto& t) {
  const std::string& raw = t.raw_data();
  int64_t count = 1;
  for (int64_t d : t.dims()) count *= d;
  std::vector<int64_t> v;
  for (int64_t i = 0; i < count; ++i) {
    switch (t.data_type()) {
      case onnx::TensorProto::INT8: v.push_back(static_cast<int8_t>(raw.at(i))); break;
      case onnx::TensorProto::UINT8: v.push_back(static_cast<uint8_t>(raw.at(i))); break;
      case onnx::TensorProto::INT32: {
        int32_t x;
        std::memcpy(&x, raw.data() + 4 * i, 4);
        v.push_back(x);
        break;
      }
      case 21:  // UINT4
      case 22: {  // INT4
        const int nibble = (static_cast<uint8_t>(raw.at(i / 2)) >> (4 * (i % 2))) & 0xF;
        v.push_back(t.data_type() == 22 && nibble >= 8 ? nibble - 16 : nibble);
        break;
      }
      default: throw std::runtime_error("unexpected type " + std::to_string(t.data_type()));
    }
  }
  return v;
}

std::vector<int64_t> longs(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

std::map<std::string, int> op_counts(const onnx::ModelProto& m) {
  std::map<std::string, int> counts;
  for (const onnx::NodeProto& n : m.graph().node()) ++counts[n.op_type()];
  return counts;
}

// The node whose output is `value`.
const onnx::NodeProto& producer(const onnx::ModelProto& m, const std::string& value) {
  for (const onnx::NodeProto& n : m.graph().node())
    for (const std::string& o : n.output())
      if (o == value) return n;
  throw std::runtime_error("no producer of " + value);
}

// Checks every Conv/Gemm of the file against the model's weights and biases:
// weight integers, per-channel scales, bias integers (dfq's integer_bias).
void expect_layers_match(const onnx::ModelProto& m, const QuantizedModel& q, int opset) {
  const ActivationPoints points = activation_points(q.graph);
  int layers = 0;
  for (const onnx::NodeProto& n : m.graph().node()) {
    if (n.op_type() != "Conv" && n.op_type() != "Gemm") continue;
    const std::string layer = n.name().substr(0, n.name().find('/'));
    const Node* node = nullptr;
    for (const Node& g : q.graph.nodes)
      if (g.name == layer) node = &g;
    ASSERT_NE(node, nullptr) << layer;
    const WeightQuant& w = q.weights.at(node->id);
    SCOPED_TRACE(layer);
    const onnx::NodeProto& wdq = producer(m, n.input(1));
    ASSERT_EQ(wdq.op_type(), "DequantizeLinear");
    const onnx::TensorProto& wq = initializer(m, wdq.input(0));
    EXPECT_EQ(wq.data_type(), opset >= 21 && w.range.bits <= 4 && !w.lut.defined() ? 22 : onnx::TensorProto::INT8);
    EXPECT_EQ(values(wq), longs(w.q));
    const onnx::TensorProto& ws = initializer(m, wdq.input(1));
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(w.scale.data_ptr<float>()), 4 * w.scale.numel()),
              ws.raw_data());
    const onnx::NodeProto& bdq = producer(m, n.input(2));
    const onnx::TensorProto& bq = initializer(m, bdq.input(0));
    EXPECT_EQ(bq.data_type(), onnx::TensorProto::INT32);
    EXPECT_EQ(values(bq), longs(integer_bias(w, weight_input_scale(q, points, node->id))));
    ++layers;
  }
  EXPECT_EQ(layers, static_cast<int>(q.weights.size()));
}

// One QuantizeLinear per point; the integer Clip keeps exactly dfq's levels
// where the type is wider.
void expect_points_match(const onnx::ModelProto& m, const QuantizedModel& q, int opset) {
  int points = 0;
  for (const onnx::NodeProto& n : m.graph().node()) {
    if (n.op_type() != "QuantizeLinear") continue;
    const std::string base = n.name().substr(0, n.name().find('/'));
    const Node* node = nullptr;
    for (const Node& g : q.graph.nodes)
      if (g.name == base) node = &g;
    ASSERT_NE(node, nullptr) << base;
    const ActivationQuant& a = q.activations.at(node->id);
    SCOPED_TRACE(base + " " + a.range.describe());
    const onnx::TensorProto& zero = initializer(m, n.input(2));
    // uint8/int8 at every opset (export_onnx.h: ONNX Runtime mis-runs 4-bit points).
    EXPECT_EQ(zero.data_type(), a.range.is_signed ? onnx::TensorProto::INT8 : onnx::TensorProto::UINT8);
    float scale;
    std::memcpy(&scale, initializer(m, n.input(1)).raw_data().data(), 4);
    EXPECT_EQ(scale, static_cast<float>(a.scale));
    const int64_t type_max = a.range.is_signed ? 127 : 255;
    const bool narrower = a.range.is_signed || a.range.qmax() < type_max;
    bool clipped = false;
    for (const onnx::NodeProto& c : m.graph().node())
      if (c.op_type() == "Clip" && c.input(0) == n.output(0)) {
        clipped = true;
        EXPECT_EQ(values(initializer(m, c.input(1))), std::vector<int64_t>{a.range.qmin()});
        EXPECT_EQ(values(initializer(m, c.input(2))), std::vector<int64_t>{a.range.qmax()});
      }
    EXPECT_EQ(clipped, narrower);
    ++points;
  }
  EXPECT_EQ(points, static_cast<int>(q.activations.size()));
}

TEST(ExportOnnx, EmbeddedModelLayersPointsAndMetadata) {
  const Graph g = import_torchscript(kModel);
  const QuantizedModel q = quantize(g, random_batch({32, 1, 28, 28}, 4), 4, 4);
  for (int opset : {17, 21}) {
    SCOPED_TRACE("opset " + std::to_string(opset));
    OnnxExportOptions o;
    o.opset = opset;
    const onnx::ModelProto m = parse(export_onnx(q, o));
    EXPECT_EQ(m.opset_import(0).version(), opset);
    EXPECT_EQ(m.ir_version(), opset >= 21 ? 10 : 8);
    expect_layers_match(m, q, opset);
    expect_points_match(m, q, opset);
    EXPECT_EQ(m.graph().input(0).type().tensor_type().shape().dim(0).dim_param(), "N");
    EXPECT_EQ(m.graph().input(0).type().tensor_type().shape().dim(2).dim_value(), 28);
    std::map<std::string, std::string> meta;
    for (const auto& p : m.metadata_props()) meta[p.key()] = p.value();
    EXPECT_EQ(meta["source_model_sha256"], sha256_of_file(kModel));
    EXPECT_EQ(meta["weight_bits"], "4");
    EXPECT_EQ(meta["activation_bits"], "4");
  }
}

TEST(ExportOnnx, W8A8HasNoClipOnUnsignedPointsAndPowerOfTwoScalesStayExact) {
  const Graph g = import_torchscript(kModel);
  QuantizeOptions o;
  o.weight_objective = WeightObjective::kWeight;
  o.weight_range.power_of_two = o.activation_range.power_of_two = true;
  QuantizeReport report;
  const QuantizedModel q = quantize_model(g, random_batch({32, 1, 28, 28}, 4), o, report);
  const onnx::ModelProto m = parse(export_onnx(q, {}));
  expect_points_match(m, q, 17);
  for (const auto& [id, a] : q.activations) {
    int exponent;
    EXPECT_EQ(std::frexp(static_cast<float>(a.scale), &exponent), 0.5f) << a.scale;
  }
}

// Two tensors: two DequantizeLinear added, the second's scale scale * 2^-shift.
TEST(ExportOnnx, ResidualWeightsAreASumOfTwoDequantizations) {
  const Graph g = import_torchscript(kModel);
  const QuantizedModel q = quantize(g, random_batch({32, 1, 28, 28}, 4), 4, 8, 2);
  const onnx::ModelProto m = parse(export_onnx(q, {}));
  int residual = 0;
  for (const auto& [id, w] : q.weights) {
    if (!w.residual.defined()) continue;
    ++residual;
    const std::string name = q.graph.node(id).name;
    const onnx::TensorProto& r = initializer(m, name + ".weight_residual");
    EXPECT_EQ(values(r), longs(w.residual));
    const onnx::TensorProto& rs = initializer(m, name + ".weight_residual_scale");
    std::vector<float> s(static_cast<size_t>(w.scale.numel()));
    std::memcpy(s.data(), rs.raw_data().data(), 4 * s.size());
    for (size_t o = 0; o < s.size(); ++o)
      EXPECT_EQ(s[o], std::ldexp(w.scale.data_ptr<float>()[o], -static_cast<int>(w.residual_shift[o].item<int64_t>())));
  }
  EXPECT_EQ(residual, 2);
  EXPECT_GE(op_counts(m)["DequantizeLinear"], static_cast<int>(2 * q.weights.size() + 2));
}

// A lookup-table layer exports the table's values, lut[codes], as int8 weights.
TEST(ExportOnnx, WeightLookupTablesExportTheirValues) {
  const Graph g = import_torchscript(kModel);
  QuantizeOptions o;
  o.weight_objective = WeightObjective::kWeight;
  o.weight_bits = 4;
  o.weight_lut = true;
  QuantizeReport report;
  const QuantizedModel q = quantize_model(g, random_batch({32, 1, 28, 28}, 4), o, report);
  int tables = 0;
  for (const auto& [id, w] : q.weights) tables += w.lut.defined();
  ASSERT_GT(tables, 0);
  for (int opset : {17, 21}) {
    OnnxExportOptions e;
    e.opset = opset;
    expect_layers_match(parse(export_onnx(q, e)), q, opset);
  }
  for (const auto& [id, w] : q.weights)  // and lut[codes] is what the engines multiply with
    if (w.lut.defined()) { EXPECT_TRUE(at::equal(w.lut.index({w.codes.to(at::kLong)}), w.q)); }
}

// Every op dfq imports also exports: each supported fixture at W8A8 passes onnx::checker.
TEST(ExportOnnx, EveryOpFixtureExportsAndPassesTheChecker) {
  std::ifstream in(kFixtures / "manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(in);
  int exported = 0;
  for (const auto& entry : manifest) {
    if (!entry["supported"].get<bool>()) continue;
    const std::string file = entry["file"].get<std::string>();
    SCOPED_TRACE(file);
    const Graph g = import_torchscript((kFixtures / file).string());
    const at::Tensor x = random_batch(entry["input_shape"].get<std::vector<int64_t>>(), 3);
    const QuantizedModel q = quantize(g, x, 8, 8);
    std::string bytes;
    EXPECT_EQ(error_of([&] { bytes = export_onnx(q, {}); }), "");
    if (!bytes.empty()) ++exported;
  }
  EXPECT_GE(exported, 60);
}

TEST(ExportOnnx, RefusesWhatItCannotWriteExactly) {
  const Graph g = import_torchscript(kModel);
  QuantizedModel q = quantize(g, random_batch({16, 1, 28, 28}, 4), 8, 8);
  OnnxExportOptions o;
  o.opset = 18;
  EXPECT_NE(error_of([&] { export_onnx(q, o); }).find("opset: expected 17"), std::string::npos);
  // A linear layer on flattened 8x8 maps takes no other size.
  const Graph fixed = import_torchscript((kFixtures / "fixed_size_linear.pt").string());
  const QuantizedModel f = quantize(fixed, random_batch({8, 3, 8, 8}, 4), 8, 8);
  o.opset = 17;
  o.input_size = {10, 10};
  EXPECT_NE(error_of([&] { export_onnx(f, o); }).find("input size 10x10: expected a size the model can take"),
            std::string::npos);
  o.input_size = {8, 8};
  EXPECT_EQ(error_of([&] { export_onnx(f, o); }), "");
  QuantizedModel old = q;
  old.config.input_size.clear();
  EXPECT_NE(error_of([&] { export_onnx(old, {}); }).find("written before dfq recorded it"), std::string::npos);
  // A bias of 2^40 accumulator units has no int32 DequantizeLinear.
  WeightQuant& w = q.weights.begin()->second;
  w.bias = w.bias + 1e12f;
  const std::string error = error_of([&] { export_onnx(q, {}); });
  EXPECT_NE(error.find("layer '" + q.graph.node(q.weights.begin()->first).name + "' bias"), std::string::npos) << error;
  EXPECT_NE(error.find("within int32"), std::string::npos) << error;
}

}  // namespace
}  // namespace dfq
