// The integer forms of the ops added for torchvision's classifiers (tables,
// multiply, bilinear resampling, exact data movement) against double-precision
// references computed from the node's integer inputs and scales, on the op
// fixtures of tests/data/models with a flatten appended (so the op is not the
// graph output, which runs in float).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/import_torchscript.h"
#include "core/op.h"
#include "quant/integer_engine.h"
#include "quant/quantize.h"
#include "quant/simulate.h"
#include "test_util.h"

using namespace dfq;
using namespace dfq::testing;

namespace {

// The fixture's graph with x.flatten(1) appended after its output.
Graph with_flatten_tail(const std::string& file) {
  Graph g = import_torchscript((kFixtures / file).string());
  Node tail;
  tail.id = static_cast<int>(g.nodes.size());
  tail.name = "tail";
  tail.op = &op_by_name("flatten");
  tail.inputs = {g.output};
  tail.attrs.ints = {{"start_dim", {1}}, {"end_dim", {-1}}};
  g.nodes.push_back(tail);
  g.output = tail.id;
  validate(g);
  return g;
}

struct Quantized {
  QuantizedModel model;
  at::Tensor x;
  std::vector<at::Tensor> values;  // the integer engine's, per node
};

Quantized run(const std::string& file, at::IntArrayRef shape, int abits) {
  Quantized r;
  const Graph g = with_flatten_tail(file);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  r.x = at::randn(shape, gen);
  QuantizeOptions o;
  o.activation_bits = abits;
  QuantizeReport report;
  r.model = quantize_model(g, r.x, o, report);
  IntegerEngine(r.model, IntKernel::kReference).forward(r.x, &r.values, nullptr);
  return r;
}

const ActivationQuant& point_of(const QuantizedModel& q, int id) {
  const ActivationPoints points = activation_points(q.graph);
  return q.activations.at(points.scale_source[static_cast<size_t>(id)]);
}

// The node's value in real units (double).
at::Tensor real(const Quantized& r, int id) {
  return r.values[static_cast<size_t>(id)].to(at::kDouble) * point_of(r.model, id).scale;
}

// round(v / s_out) half away from zero, clamped to the point's range (double).
at::Tensor requantized(const at::Tensor& v, const ActivationQuant& out) {
  const at::Tensor y = v / out.scale;
  return (at::sign(y) * at::floor(y.abs() + 0.5)).clamp(out.range.qmin(), out.range.qmax());
}

int node_with_role(const QuantizedModel& q, QuantRole role) {
  for (const Node& n : q.graph.nodes)
    if (n.op->role == role) return n.id;
  return -1;
}

}  // namespace

TEST(IntegerOps, TablesEqualTheFloatOpInDoubleAtEveryLevel) {
  // ATen's own op in double on every input level: independent of the op file's f.
  for (const char* file : {"hardswish.pt", "hardsigmoid.pt", "silu.pt", "sigmoid.pt", "gelu.pt", "gelu_tanh.pt",
                           "mul_scalar.pt", "leaky_relu.pt"}) {
    SCOPED_TRACE(file);
    for (int abits : {8, 4}) {
      const Quantized r = run(file, {2, 3, 8, 8}, abits);
      const int id = node_with_role(r.model, QuantRole::kTable);
      ASSERT_GE(id, 0);
      const Node& n = r.model.graph.node(id);
      const at::Tensor input = real(r, n.inputs[0]);
      const at::Tensor expected = requantized(n.op->run(n, {input}), point_of(r.model, id));
      EXPECT_TRUE(at::equal(r.values[static_cast<size_t>(id)].to(at::kDouble), expected))
          << n.op->name << " at " << abits << " bits: max difference "
          << (r.values[static_cast<size_t>(id)].to(at::kDouble) - expected).abs().max().item<double>();
      // The table is exact: one entry per input level of the point it reads.
      const ActivationQuant& in = point_of(r.model, n.inputs[0]);
      EXPECT_EQ(static_cast<int64_t>(integer_table(n, in, point_of(r.model, id)).size()),
                in.range.qmax() - in.range.qmin() + 1);
    }
  }
}

TEST(IntegerOps, MultiplyAndBilinearWithinOneStepOfDouble) {
  // Squeeze-excite gates (N x C x 1 x 1 times N x C x H x W), a same-shape
  // product and bilinear resampling: the dyadic multiplier (and for bilinear
  // 14-bit weights) may move a value by one step, rarely.
  struct Case {
    const char* file;
    QuantRole role;
  };
  for (const Case& c : {Case{"se_hardsigmoid.pt", QuantRole::kMultiply}, Case{"se_sigmoid.pt", QuantRole::kMultiply},
                        Case{"mul.pt", QuantRole::kMultiply}, Case{"upsample_bilinear_scale2.pt", QuantRole::kResample},
                        Case{"upsample_bilinear_align_corners.pt", QuantRole::kResample}}) {
    SCOPED_TRACE(c.file);
    const Quantized r = run(c.file, {2, 3, 8, 8}, 8);
    const int id = node_with_role(r.model, c.role);
    ASSERT_GE(id, 0);
    const Node& n = r.model.graph.node(id);
    std::vector<at::Tensor> inputs;
    for (int in : n.inputs) inputs.push_back(real(r, in));
    const at::Tensor expected = requantized(n.op->run(n, inputs), point_of(r.model, id));
    const at::Tensor got = r.values[static_cast<size_t>(id)].to(at::kDouble);
    ASSERT_EQ(got.sizes(), expected.sizes());
    const at::Tensor off = (got - expected).abs();
    EXPECT_LE(off.max().item<double>(), 1.0);
    EXPECT_LE(off.gt(0).sum().item<int64_t>(), std::max<int64_t>(2, got.numel() / 100));
  }
}

TEST(IntegerOps, DataMovementIsExactOnTheIntegers) {
  // Channel shuffle, chunk/split, permute and nearest upsampling move integers
  // without changing them: the engine's value equals the float op applied to
  // its input's integers.
  for (const char* file : {"channel_shuffle.pt", "chunk_cat.pt", "split_sizes.pt", "permute_roundtrip.pt",
                           "upsample_nearest_scale2.pt", "upsample_nearest_size.pt", "shufflenet_unit.pt"}) {
    SCOPED_TRACE(file);
    const Quantized r = run(file, {2, 3, 8, 8}, 8);
    int checked = 0;
    for (const Node& n : r.model.graph.nodes) {
      if (n.op->role != QuantRole::kExact || n.id == r.model.graph.output) continue;
      std::vector<at::Tensor> inputs;
      for (int in : n.inputs) inputs.push_back(r.values[static_cast<size_t>(in)].to(at::kFloat));
      const at::Tensor expected = n.op->run(n, inputs);
      EXPECT_TRUE(at::equal(r.values[static_cast<size_t>(n.id)].to(at::kFloat), expected)) << n.name;
      ++checked;
    }
    EXPECT_GE(checked, 1);
  }
}

TEST(IntegerOps, ATableOpOfAWideInputIsRefused) {
  const Quantized r = run("hardswish.pt", {2, 3, 8, 8}, 8);
  const int id = node_with_role(r.model, QuantRole::kTable);
  const Node& n = r.model.graph.node(id);
  ActivationQuant wide = point_of(r.model, n.inputs[0]);
  wide.range.bits = 16;
  EXPECT_NE(error_of([&] { integer_table(n, wide, point_of(r.model, id)); }).find("at most 8 bits"), std::string::npos);
}
