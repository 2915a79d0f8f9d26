#include "quant/export_onnx.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "core/error.h"
#include "core/execute.h"
#include "core/onnx_call.h"
#include "core/version.h"
#include "quant/simulate.h"

namespace dfq {
namespace {

using onnx::TensorProto;
// TensorProto data types that onnx 1.12 does not know yet (ONNX 1.16, IR 10).
constexpr int kUInt4 = 21, kInt4 = 22;

// Integer type of a quantized tensor: its ONNX data type and range.
struct IntType {
  int onnx = TensorProto::INT8;
  int64_t lo = -128, hi = 127;
};

IntType int_type(const QuantRange& range, int opset) {
  const bool four = opset >= 21 && range.bits <= 4;
  if (range.is_signed) return four ? IntType{kInt4, -8, 7} : IntType{TensorProto::INT8, -128, 127};
  return four ? IntType{kUInt4, 0, 15} : IntType{TensorProto::UINT8, 0, 255};
}

// Raw little-endian bytes of integer values in `type` (4-bit types packed two
// per byte, the first in the low nibble, as ONNX stores them).
std::string integer_bytes(const std::vector<int64_t>& values, int type) {
  std::string bytes;
  if (type == kInt4 || type == kUInt4) {
    bytes.assign((values.size() + 1) / 2, '\0');
    for (size_t i = 0; i < values.size(); ++i)
      bytes[i / 2] = static_cast<char>(static_cast<uint8_t>(bytes[i / 2]) | ((values[i] & 0xF) << (4 * (i % 2))));
    return bytes;
  }
  const size_t width = type == TensorProto::INT32 ? 4 : type == TensorProto::INT64 ? 8 : 1;
  bytes.resize(values.size() * width);
  for (size_t i = 0; i < values.size(); ++i)
    for (size_t k = 0; k < width; ++k) bytes[i * width + k] = static_cast<char>((values[i] >> (8 * k)) & 0xFF);
  return bytes;
}

std::vector<int64_t> to_int64(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// The GraphProto being written: unique value names, initializers, nodes.
class Builder {
 public:
  Builder(onnx::GraphProto& graph, int opset) : graph_(graph), opset_(opset) {}
  int opset() const { return opset_; }

  std::string fresh(const std::string& base) {
    std::string name = base;
    for (int k = 1; !names_.insert(name).second; ++k) name = base + "_" + std::to_string(k);
    return name;
  }
  std::string initializer(const std::string& base, int type, const std::vector<int64_t>& dims, std::string raw) {
    TensorProto* t = graph_.add_initializer();
    t->set_name(fresh(base));
    t->set_data_type(type);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(std::move(raw));
    return t->name();
  }
  std::string integers(const std::string& base, int type, const std::vector<int64_t>& dims,
                       const std::vector<int64_t>& values) {
    return initializer(base, type, dims, integer_bytes(values, type));
  }
  std::string floats(const std::string& base, const std::vector<int64_t>& dims, const std::vector<float>& values) {
    return initializer(base, TensorProto::FLOAT, dims,
                       std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  }
  // Appends a node of one output named after `base`; returns the output's name.
  std::string node(const std::string& base, const std::string& op_type, const std::vector<std::string>& inputs,
                   const std::vector<OnnxAttr>& attrs) {
    onnx::NodeProto* n = graph_.add_node();
    n->set_op_type(op_type);
    n->set_name(fresh(base + "/" + op_type + "#node"));
    for (const std::string& in : inputs) n->add_input(in);
    n->add_output(fresh(base + "/" + op_type));
    for (const OnnxAttr& a : attrs) set_attribute(*n->add_attribute(), a);
    return n->output(0);
  }

 private:
  static void set_attribute(onnx::AttributeProto& p, const OnnxAttr& a) {
    p.set_name(a.name);
    switch (a.kind) {
      case OnnxAttr::kInt:
        p.set_type(onnx::AttributeProto::INT), p.set_i(a.ints.at(0));
        break;
      case OnnxAttr::kInts:
        p.set_type(onnx::AttributeProto::INTS);
        for (int64_t v : a.ints) p.add_ints(v);
        break;
      case OnnxAttr::kFloat:
        p.set_type(onnx::AttributeProto::FLOAT), p.set_f(static_cast<float>(a.real));
        break;
      case OnnxAttr::kString:
        p.set_type(onnx::AttributeProto::STRING), p.set_s(a.text);
        break;
    }
  }

  onnx::GraphProto& graph_;
  int opset_;
  std::set<std::string> names_;
};

// QuantizeLinear -> (Clip) -> DequantizeLinear of value `x` at a point, in
// uint8/int8 at every opset (see export_onnx.h for why not 4-bit types).
std::string quantization_point(Builder& b, const std::string& base, const std::string& x, const ActivationQuant& a) {
  const IntType type = int_type(a.range, 17);
  const float scale = static_cast<float>(a.scale);
  const std::string s = b.floats(base + "/scale", {}, {scale});
  const std::string zero = b.integers(base + "/zero_point", type.onnx, {}, {0});
  const int64_t qmin = a.range.qmin(), qmax = a.range.qmax();
  std::string q = b.node(base, "QuantizeLinear", {x, s, zero}, {});
  if (qmin > type.lo || qmax < type.hi)
    q = b.node(base, "Clip", {q, b.integers(base + "/qmin", type.onnx, {}, {qmin}),
                              b.integers(base + "/qmax", type.onnx, {}, {qmax})}, {});
  return b.node(base, "DequantizeLinear", {q, s, zero}, {});
}

// DequantizeLinear of one integer weight tensor, per output channel.
std::string dequantized(Builder& b, const std::string& base, const at::Tensor& q, const QuantRange& range,
                        const std::vector<float>& scale, bool packable) {
  const IntType type = packable ? int_type(range, b.opset()) : IntType{};
  const int64_t out = q.size(0);
  const std::string values = b.integers(base, type.onnx, q.sizes().vec(), to_int64(q));
  const std::string s = b.floats(base + "_scale", {out}, scale);
  const std::string zero = b.integers(base + "_zero_point", type.onnx, {out}, std::vector<int64_t>(out, 0));
  return b.node(base, "DequantizeLinear", {values, s, zero}, {OnnxAttr::i("axis", 0)});
}

std::string weight_value(Builder& b, const Node& n, const WeightQuant& w) {
  const std::vector<float> scale(w.scale.data_ptr<float>(), w.scale.data_ptr<float>() + w.scale.numel());
  // A lookup table's values span int8 whatever the codes' bits.
  std::string value = dequantized(b, n.name + ".weight", w.q, w.range, scale, !w.lut.defined());
  if (!w.residual.defined()) return value;
  std::vector<float> residual_scale(scale);
  const std::vector<int64_t> shift = to_int64(w.residual_shift);
  for (size_t o = 0; o < scale.size(); ++o) residual_scale[o] = std::ldexp(scale[o], static_cast<int>(-shift[o]));
  QuantRange range = w.range;
  range.bits = 8;  // the residual's integers: stored as int8 (their bits are not recorded per tensor)
  const std::string residual = dequantized(b, n.name + ".weight_residual", w.residual, range, residual_scale, false);
  return b.node(n.name + ".weight", "Add", {value, residual}, {});
}

// The bias as dfq's engines add it: integers in units of s_in * s_w[o].
std::string bias_value(Builder& b, const Node& n, const WeightQuant& w, double input_scale) {
  const std::vector<int64_t> integers = to_int64(integer_bias(w, input_scale));
  for (size_t o = 0; o < integers.size(); ++o)
    if (std::llabs(integers[o]) > std::numeric_limits<int32_t>::max())
      fail("layer '" + n.name + "' bias", "integers within int32 for an int32 DequantizeLinear",
           std::to_string(integers[o]) + " units in channel " + std::to_string(o));
  const std::vector<int64_t> shift = w.residual.defined() ? to_int64(w.residual_shift) : std::vector<int64_t>();
  std::vector<float> unit(integers.size());
  for (size_t o = 0; o < unit.size(); ++o) {
    unit[o] = static_cast<float>(input_scale) * w.scale.data_ptr<float>()[o];
    if (!shift.empty()) unit[o] = std::ldexp(unit[o], static_cast<int>(-shift[o]));
  }
  const int64_t out = static_cast<int64_t>(integers.size());
  const std::string values = b.integers(n.name + ".bias", TensorProto::INT32, {out}, integers);
  const std::string s = b.floats(n.name + ".bias_scale", {out}, unit);
  const std::string zero = b.integers(n.name + ".bias_zero_point", TensorProto::INT32, {out}, std::vector<int64_t>(out, 0));
  return b.node(n.name + ".bias", "DequantizeLinear", {values, s, zero}, {OnnxAttr::i("axis", 0)});
}

// Shapes of every node's output for a batch of one at `size`.
class ShapeRecorder : public Observer {
 public:
  explicit ShapeRecorder(size_t nodes) : shapes(nodes) {}
  void after_node(const Node& node, const std::vector<at::Tensor>&, at::Tensor& output) override {
    shapes[static_cast<size_t>(node.id)] = output.sizes().vec();
  }
  std::vector<std::vector<int64_t>> shapes;
};

struct ExportState {
  const QuantizedModel& model;
  ActivationPoints points;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<std::string> values;  // node id -> its (dequantized) output value
  Builder& builder;
};

class ExportCall : public OnnxCall {
 public:
  ExportCall(ExportState& s, const Node& n) : s_(s), n_(n) {}
  const Node& node() const override { return n_; }
  int opset() const override { return s_.builder.opset(); }
  std::string input(size_t k) override { return s_.values.at(static_cast<size_t>(n_.inputs.at(k))); }
  std::vector<int64_t> input_shape(size_t k) override {
    return s_.shapes.at(static_cast<size_t>(n_.inputs.at(k)));
  }
  std::vector<int64_t> output_shape() override { return s_.shapes.at(static_cast<size_t>(n_.id)); }
  std::string param(const std::string& key) override {
    const auto w = s_.model.weights.find(n_.id);
    if (w != s_.model.weights.end() && key == "weight") return weight_value(s_.builder, n_, w->second);
    if (w != s_.model.weights.end() && key == "bias")
      return bias_value(s_.builder, n_, w->second, weight_input_scale(s_.model, s_.points, n_.id));
    if (!n_.has_param(key)) return "";
    const at::Tensor t = n_.param(key).to(at::kFloat).contiguous();
    return s_.builder.floats(n_.name + "." + key, t.sizes().vec(),
                             std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel()));
  }
  std::string ints(const std::vector<int64_t>& v) override {
    return s_.builder.integers(n_.name + "/const", TensorProto::INT64, {static_cast<int64_t>(v.size())}, v);
  }
  std::string real(double v) override { return s_.builder.floats(n_.name + "/const", {}, {static_cast<float>(v)}); }
  std::string add(const std::string& op_type, const std::vector<std::string>& inputs,
                  const std::vector<OnnxAttr>& attrs) override {
    result_ = s_.builder.node(n_.name, op_type, inputs, attrs);
    return result_;
  }
  [[noreturn]] void unsupported(const std::string& why) override {
    fail("node '" + n_.name + "' (" + op_name(n_.op) + ")", "an op ONNX can express exactly", why);
  }
  const std::string& result() const { return result_; }

 private:
  ExportState& s_;
  const Node& n_;
  std::string result_;
};

}  // namespace

namespace {

std::vector<std::vector<int64_t>> static_shapes(const QuantizedModel& model, int64_t h, int64_t w) {
  c10::InferenceMode guard;
  ShapeRecorder recorder(model.graph.nodes.size());
  try {
    forward(model.graph, at::zeros({1, model.graph.input_channels, h, w}), &recorder);
  } catch (const Error& e) {  // forward() names the node that failed
    fail("input size " + std::to_string(h) + "x" + std::to_string(w), "a size the model can take", e.what());
  }
  return recorder.shapes;
}

void set_tensor_type(onnx::ValueInfoProto& v, const std::string& name, const std::vector<int64_t>& shape) {
  v.set_name(name);
  onnx::TypeProto_Tensor* t = v.mutable_type()->mutable_tensor_type();
  t->set_elem_type(TensorProto::FLOAT);
  for (size_t i = 0; i < shape.size(); ++i) {
    onnx::TensorShapeProto_Dimension* d = t->mutable_shape()->add_dim();
    if (i == 0) d->set_dim_param("N");  // any batch size
    else d->set_dim_value(shape[i]);
  }
}

void add_metadata(onnx::ModelProto& m, const QuantizedModel& model) {
  const QuantConfig& c = model.config;
  const std::map<std::string, std::string> props = {
      {"dfq_version", dfq_version()},
      {"dfq_commit", dfq_git_commit()},
      {"source_model", model.graph.source},
      {"source_model_sha256", model.graph.source_sha256.empty() ? "unknown (artifact older than the field)"
                                                                 : model.graph.source_sha256},
      {"weight_bits", std::to_string(c.weight_bits)},
      {"activation_bits", std::to_string(c.activation_bits)},
      {"first_last_bits", std::to_string(c.first_last_bits)},
      {"per_channel_weights", c.per_channel ? "true" : "false"},
      {"weight_range", c.weight_range},
      {"activation_range", c.activation_range},
      {"residual_layers", std::to_string(c.residual_layers)},
      {"bias_correction", c.bias_correction},
      {"weight_objective", c.weight_objective},
      {"reconstruction", c.reconstruction},
      {"cross_layer_equalization", c.cross_layer_equalization ? "true" : "false"},
      {"power_of_two_scales", c.power_of_two_scales ? "true" : "false"},
      {"weight_lut", c.weight_lut ? "true" : "false"},
      {"calibration", c.calibration + " (" + std::to_string(c.calibration_count) + " images)"},
      {"rounding", "dfq rounds half away from zero; QuantizeLinear half to even (they differ on exact ties only)"},
  };
  for (const auto& [key, value] : props) {
    onnx::StringStringEntryProto* p = m.add_metadata_props();
    p->set_key(key), p->set_value(value);
  }
}

// The graph: the input and its point, each node's export and its point, the output.
void write_graph(onnx::GraphProto& g, const QuantizedModel& model, const std::vector<std::vector<int64_t>>& shapes,
                 int opset) {
  Builder builder(g, opset);
  ExportState state{model, activation_points(model.graph), shapes, {}, builder};
  state.values.resize(model.graph.nodes.size());
  for (const Node& n : model.graph.nodes) {
    std::string value;
    if (n.op == Op::Input) {
      value = builder.fresh("input");
      set_tensor_type(*g.add_input(), value, shapes[0]);
    } else {
      if (!n.op->export_onnx)
        fail("node '" + n.name + "' (" + op_name(n.op) + ")", "an op with an ONNX export", "none");
      ExportCall call(state, n);
      n.op->export_onnx(call);
      if (call.result().empty()) call.unsupported("its export wrote no node");
      value = call.result();
    }
    const auto point = model.activations.find(n.id);
    if (point != model.activations.end()) value = quantization_point(builder, n.name, value, point->second);
    state.values[static_cast<size_t>(n.id)] = value;
  }
  const std::string output = builder.fresh("logits");
  onnx::NodeProto* identity = g.add_node();
  identity->set_op_type("Identity"), identity->set_name(output + "#node");
  identity->add_input(state.values[static_cast<size_t>(model.graph.output)]), identity->add_output(output);
  set_tensor_type(*g.add_output(), output, shapes[static_cast<size_t>(model.graph.output)]);
}

}  // namespace

std::string export_onnx(const QuantizedModel& model, const OnnxExportOptions& options) {
  if (options.opset != 17 && options.opset != 21)
    fail("opset", "17 (int8/uint8 Q/DQ) or 21 (also packed INT4 weights)", std::to_string(options.opset));
  const std::vector<int64_t> size = options.input_size.empty() ? model.config.input_size : options.input_size;
  if (size.size() != 2 || size[0] < 1 || size[1] < 1)
    fail("input size", "H and W of the images the model takes (given, or recorded by dfq quantize)",
         size.empty() ? "an artifact written before dfq recorded it" : std::to_string(size.size()) + " values");
  onnx::ModelProto m;
  m.set_ir_version(options.opset >= 21 ? 10 : 8);
  m.set_producer_name("dfq");
  m.set_producer_version(dfq_version());
  m.add_opset_import()->set_version(options.opset);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name("dfq quantized " + model.graph.source);
  write_graph(*g, model, static_shapes(model, size[0], size[1]), options.opset);
  add_metadata(m, model);
  if (options.opset <= 17) {
    try {
      onnx::checker::check_model(m);
    } catch (const std::exception& e) {
      fail("exported ONNX model", "a model onnx::checker accepts", std::string(e.what()).substr(0, 300));
    }
  }
  std::string bytes;
  if (!m.SerializeToString(&bytes)) fail("exported ONNX model", "a serializable protobuf", "a serialization error");
  return bytes;
}

}  // namespace dfq
