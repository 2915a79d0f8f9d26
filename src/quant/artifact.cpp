#include "quant/artifact.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <type_traits>

#include "core/atomic_file.h"
#include "core/error.h"
#include "quant/packing.h"
#include "quant/weight_lut.h"

namespace dfq {
namespace {

constexpr char kMagic[8] = {'D', 'F', 'Q', 'M', 'O', 'D', 'E', 'L'};
// 2: weights of <= 4 bits packed two per byte; 3: a Conv2d/Linear read only by
// an Add is no longer a quantization point (qmodel.h), so v2 files would run
// with a different graph of points; 4: weight lookup tables (codes + table
// instead of q) and the power_of_two_scales / weight_lut config entries; 5:
// every weight tensor (and a table's codes) as a bit stream of its own bits
// (packing.h), so 3-, 5- and 6-bit layers take the size the bit allocation
// counts. Version 4 files are still read (nibbles for <= 4 bits, else int8).
constexpr uint32_t kVersion = 5, kOldestReadable = 4;

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

// Tensors go into one data blob; the header records where.
class TensorWriter {
 public:
  nlohmann::json table = nlohmann::json::object();
  std::string data;
  void add(const std::string& name, const at::Tensor& t) {
    const at::Tensor c = t.contiguous();
    table[name] = {{"dtype", c10::toString(c.scalar_type())}, {"shape", c.sizes().vec()},
                   {"offset", data.size()}, {"bytes", c.nbytes()}};
    data.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
  }
};

at::ScalarType dtype_of(const std::string& name) {
  for (at::ScalarType t : {at::kFloat, at::kChar, at::kLong, at::kInt, at::kByte})
    if (name == c10::toString(t)) return t;
  throw std::runtime_error("unknown tensor dtype '" + name + "'");
}

const OpDef* op_of(const std::string& name) {
  for (const OpDef* op : all_ops())
    if (name == op->name) return op;
  throw std::runtime_error("unknown op '" + name + "'");
}

// JSON integers, read strictly: nlohmann's get<int>() casts a float such as
// 1e300 to the integer type, which is undefined behaviour out of range.
template <typename T>
T integer(const nlohmann::json& j) {
  if (!j.is_number_integer()) throw std::runtime_error(j.dump().substr(0, 40) + " where an integer belongs");
  const bool fits = j.is_number_unsigned()
                        ? j.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                        : std::is_signed_v<T> ? j.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                                                    j.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max())
                                              : j.get<int64_t>() >= 0;
  if (!fits) throw std::runtime_error("the integer " + j.dump() + ", out of range");
  return j.is_number_unsigned() ? static_cast<T>(j.get<uint64_t>()) : static_cast<T>(j.get<int64_t>());
}

template <typename T>
std::vector<T> integers(const nlohmann::json& j) {
  if (!j.is_array()) throw std::runtime_error(j.dump().substr(0, 40) + " where a list of integers belongs");
  std::vector<T> out;
  for (const nlohmann::json& v : j) out.push_back(integer<T>(v));
  return out;
}

// A node id used as a JSON key: canonical decimal, below `nodes`.
int node_id(const std::string& key, size_t nodes) {
  const bool decimal = !key.empty() && key.size() <= 9 && key.find_first_not_of("0123456789") == std::string::npos &&
                       (key == "0" || key[0] != '0');
  if (!decimal || std::stoul(key) >= nodes) throw std::runtime_error("entry for unknown node '" + key + "'");
  return std::stoi(key);
}

}  // namespace

void save_quantized_model(const QuantizedModel& model, const std::string& path) {
  TensorWriter tensors;
  nlohmann::json nodes = nlohmann::json::array();
  for (const Node& n : model.graph.nodes) {
    nlohmann::json params = nlohmann::json::array();
    for (const auto& [key, value] : n.params) {
      if (model.weights.count(n.id) && (key == "weight" || key == "bias")) continue;  // stored as integers
      tensors.add("node" + std::to_string(n.id) + "." + key, value);
      params.push_back(key);
    }
    nodes.push_back({{"name", n.name}, {"op", op_name(n.op)}, {"inputs", n.inputs}, {"ints", n.attrs.ints},
                     {"reals", n.attrs.reals}, {"params", params}});
  }
  nlohmann::json weights = nlohmann::json::object();
  for (const auto& [id, w] : model.weights) {
    const std::string prefix = "weight" + std::to_string(id) + ".";
    const int bits = w.range.bits;  // a structured binding cannot be captured in C++17
    auto add_integers = [&](const std::string& name, const at::Tensor& q) { tensors.add(name, pack_bits(q, bits)); };
    if (w.lut.defined()) {
      tensors.add(prefix + "codes", pack_unsigned_bits(w.codes, bits));
      tensors.add(prefix + "lut", w.lut);
    } else {
      add_integers(prefix + "q", w.q);
    }
    tensors.add(prefix + "scale", w.scale);
    tensors.add(prefix + "bias", w.bias);
    if (w.residual.defined()) {
      add_integers(prefix + "residual", w.residual);
      tensors.add(prefix + "residual_shift", w.residual_shift);
    }
    weights[std::to_string(id)] = {{"bits", w.range.bits}, {"signed", w.range.is_signed}, {"zero_point", 0},
                                   {"clip_ratio", w.clip_ratio}, {"residual", w.residual.defined()},
                                   {"shape", w.q.sizes().vec()}, {"lut", w.lut.defined()}};
  }
  nlohmann::json activations = nlohmann::json::object();
  for (const auto& [id, a] : model.activations)
    activations[std::to_string(id)] = {{"bits", a.range.bits}, {"signed", a.range.is_signed}, {"scale", a.scale},
                                       {"zero_point", 0}};
  const QuantConfig& c = model.config;
  const nlohmann::json header = {
      {"graph", {{"nodes", nodes}, {"output", model.graph.output}, {"input_channels", model.graph.input_channels},
                 {"source", model.graph.source}, {"source_sha256", model.graph.source_sha256}}},
      {"config", {{"weight_bits", c.weight_bits}, {"activation_bits", c.activation_bits},
                  {"first_last_bits", c.first_last_bits}, {"per_channel", c.per_channel},
                  {"weight_range", c.weight_range}, {"activation_range", c.activation_range},
                  {"percentile", c.percentile}, {"residual_layers", c.residual_layers},
                  {"residual_budget", c.residual_budget}, {"bias_correction", c.bias_correction},
                  {"weight_objective", c.weight_objective}, {"reconstruction", c.reconstruction}, {"cross_layer_equalization", c.cross_layer_equalization},
                  {"power_of_two_scales", c.power_of_two_scales}, {"weight_lut", c.weight_lut}, {"calibration", c.calibration}, {"calibration_count", c.calibration_count}, {"input_size", c.input_size}}},
      {"weights", weights}, {"activations", activations}, {"tensors", tensors.table}};
  const std::string text = header.dump();
  std::string file(kMagic, sizeof kMagic);
  put<uint32_t>(file, kVersion);
  put<uint64_t>(file, text.size());
  file += text;
  file += tensors.data;
  put<uint32_t>(file, static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(file.data()),
                                                   static_cast<uInt>(file.size()))));
  write_file_atomic(path, file);
}

QuantizedModel load_quantized_model(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("quantized model '" + path + "'", "a readable file", "it cannot be opened");
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string subject = "quantized model '" + path + "'";
  const size_t fixed = sizeof kMagic + sizeof(uint32_t) + sizeof(uint64_t);
  if (file.size() < sizeof kMagic || std::memcmp(file.data(), kMagic, sizeof kMagic) != 0)
    fail(subject, "a .dfq file (magic DFQMODEL)", "other content");
  if (file.size() < fixed + sizeof(uint32_t)) fail(subject, "a complete file", std::to_string(file.size()) + " bytes (truncated)");
  uint32_t version = 0;
  uint64_t header_length = 0;
  std::memcpy(&version, file.data() + sizeof kMagic, sizeof version);
  std::memcpy(&header_length, file.data() + sizeof kMagic + sizeof version, sizeof header_length);
  if (version < kOldestReadable || version > kVersion)
    fail(subject, "format version " + std::to_string(kOldestReadable) + " to " + std::to_string(kVersion),
         "version " + std::to_string(version) + (version < kOldestReadable ? " (written by an older dfq: quantize the model again)" : ""));
  if (header_length > file.size() - fixed - sizeof(uint32_t))
    fail(subject, "a complete file", "a header of " + std::to_string(header_length) + " bytes in a file of " +
                                         std::to_string(file.size()) + " (truncated)");
  uint32_t stored_crc = 0;
  std::memcpy(&stored_crc, file.data() + file.size() - sizeof stored_crc, sizeof stored_crc);
  const uint32_t crc = static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(file.data()), static_cast<uInt>(file.size() - sizeof stored_crc)));
  if (crc != stored_crc) fail(subject, "an intact file (CRC-32 match)", "a mismatch: the file is truncated or corrupted");

  const char* data = file.data() + fixed + header_length;
  const size_t data_size = file.size() - fixed - header_length - sizeof(uint32_t);
  QuantizedModel model;
  try {
    const nlohmann::json h = nlohmann::json::parse(file.begin() + fixed, file.begin() + fixed + header_length);
    const nlohmann::json& table = h.at("tensors");
    auto tensor = [&](const std::string& name) {
      const nlohmann::json& e = table.at(name);
      const std::vector<int64_t> shape = integers<int64_t>(e.at("shape"));
      const at::ScalarType dtype = dtype_of(e.at("dtype").get<std::string>());
      const uint64_t offset = integer<uint64_t>(e.at("offset")), bytes = integer<uint64_t>(e.at("bytes"));
      // Checked before allocating: a shape must not make the reader allocate more than the file holds.
      uint64_t count = 1;  // elements, compared with `bytes` before each product, so it cannot overflow
      bool fits = true;
      for (int64_t d : shape) {
        if (d < 0) throw std::runtime_error("tensor '" + name + "' has a negative dimension");
        if (d > 0 && count > bytes / static_cast<uint64_t>(d)) fits = false;
        else count *= static_cast<uint64_t>(d);
      }
      if (!fits || offset > data_size || bytes > data_size - offset || count * c10::elementSize(dtype) != bytes)
        throw std::runtime_error("tensor '" + name + "' does not fit its shape or the file");
      at::Tensor t = at::empty(shape, dtype);
      std::memcpy(t.data_ptr(), data + offset, bytes);
      return t;
    };
    const nlohmann::json& g = h.at("graph");
    for (const nlohmann::json& jn : g.at("nodes")) {
      Node n;
      n.id = static_cast<int>(model.graph.nodes.size());
      n.name = jn.at("name").get<std::string>();
      n.op = op_of(jn.at("op").get<std::string>());
      n.inputs = integers<int>(jn.at("inputs"));
      if (!jn.at("ints").is_object()) throw std::runtime_error("integer attributes are not an object");
      for (const auto& [key, values] : jn.at("ints").items()) n.attrs.ints[key] = integers<int64_t>(values);
      n.attrs.reals = jn.at("reals").get<std::map<std::string, double>>();
      for (const std::string& key : jn.at("params").get<std::vector<std::string>>())
        n.params[key] = tensor("node" + std::to_string(n.id) + "." + key);
      model.graph.nodes.push_back(std::move(n));
    }
    model.graph.output = integer<int>(g.at("output"));
    model.graph.input_channels = integer<int64_t>(g.at("input_channels"));
    model.graph.source = g.at("source").get<std::string>();
    model.graph.source_sha256 = g.value("source_sha256", std::string());  // absent before it was added
    for (const auto& [key, jw] : h.at("weights").items()) {
      const int id = node_id(key, model.graph.nodes.size());
      const OpDef* op = model.graph.nodes[static_cast<size_t>(id)].op;
      if (op->role != QuantRole::kWeighted) throw std::runtime_error("weight of node " + key + ", a " + op_name(op));
      if (integer<int>(jw.at("zero_point")) != 0) throw std::runtime_error("non-zero weight zero point");
      WeightQuant w;
      w.range = QuantRange{integer<int>(jw.at("bits")), jw.at("signed").get<bool>()};
      const std::string prefix = "weight" + key + ".";
      // Version 4: nibbles for <= 4 bits (flagged), int8 above; 5: bit streams of `bits`.
      const bool nibbles = version == 4 && jw.at("packed_int4").get<bool>();
      if (version == 4 && nibbles != (w.range.bits <= 4))
        throw std::runtime_error("packing flag of node " + key + " contradicts its bits");
      if (w.range.bits < 1 || w.range.bits > 8)
        throw std::runtime_error("weights of node " + key + " with " + std::to_string(w.range.bits) + " bits (1 to 8 expected)");
      const std::vector<int64_t> shape = integers<int64_t>(jw.at("shape"));
      if (shape.size() != (op == Op::Conv2d ? 4u : 2u))
        throw std::runtime_error("weight shape " + c10::str(shape) + " of node " + key + ", a " + op_name(op));
      auto integers = [&](const std::string& name) {
        if (version == 4) return nibbles ? unpack_int4(tensor(name), shape) : tensor(name);
        return unpack_bits(tensor(name), w.range.bits, shape);
      };
      if (jw.at("lut").get<bool>()) {
        // q = lut[codes]; codes of `bits` bits index a table of 2^bits int8 values.
        if (w.range.bits < 2 || w.range.bits > 4)
          throw std::runtime_error("lookup table of node " + key + " with codes of " + std::to_string(w.range.bits) +
                                   " bits (2 to 4 expected)");
        w.lut = tensor(prefix + "lut");
        if (w.lut.scalar_type() != at::kChar || w.lut.dim() != 1 || w.lut.numel() != (int64_t{1} << w.range.bits))
          throw std::runtime_error("lookup table of node " + key + " is not " + std::to_string(1 << w.range.bits) + " int8 values");
        w.codes = unpack_unsigned_bits(tensor(prefix + "codes"), version == 4 ? 4 : w.range.bits, shape);  // v4: nibbles
        w.q = decode_lut(w.codes, w.lut);
      } else {
        w.q = integers(prefix + "q");
      }
      w.scale = tensor(prefix + "scale");
      w.bias = tensor(prefix + "bias");
      w.clip_ratio = jw.at("clip_ratio").get<double>();
      if (jw.at("residual").get<bool>()) {
        w.residual = integers(prefix + "residual");
        w.residual_shift = tensor(prefix + "residual_shift");
      }
      if (w.scale.numel() != w.q.size(0) || w.bias.numel() != w.q.size(0) ||
          (w.residual.defined() && w.residual.sizes() != w.q.sizes()))
        throw std::runtime_error("weight tensors of node " + key + " disagree in shape");
      Node& node = model.graph.nodes[static_cast<size_t>(id)];
      node.params["weight"] = w.dequantized();
      node.params["bias"] = w.bias;
      model.weights.emplace(id, std::move(w));
    }
    for (const auto& [key, ja] : h.at("activations").items()) {
      if (integer<int>(ja.at("zero_point")) != 0) throw std::runtime_error("non-zero activation zero point");
      model.activations[node_id(key, model.graph.nodes.size())] =
          ActivationQuant{QuantRange{integer<int>(ja.at("bits")), ja.at("signed").get<bool>()}, ja.at("scale").get<double>()};
    }
    const nlohmann::json& c = h.at("config");
    QuantConfig& cfg = model.config;
    cfg.weight_bits = integer<int>(c.at("weight_bits")), cfg.activation_bits = integer<int>(c.at("activation_bits"));
    cfg.first_last_bits = integer<int>(c.at("first_last_bits")), cfg.per_channel = c.at("per_channel");
    cfg.weight_range = c.at("weight_range"), cfg.activation_range = c.at("activation_range");
    cfg.percentile = c.at("percentile"), cfg.residual_layers = integer<int>(c.at("residual_layers"));
    cfg.residual_budget = c.at("residual_budget"), cfg.bias_correction = c.at("bias_correction");
    cfg.weight_objective = c.at("weight_objective"), cfg.reconstruction = c.at("reconstruction");
    cfg.cross_layer_equalization = c.at("cross_layer_equalization");
    cfg.power_of_two_scales = c.at("power_of_two_scales"), cfg.weight_lut = c.at("weight_lut");
    cfg.calibration = c.at("calibration"), cfg.calibration_count = integer<int64_t>(c.at("calibration_count"));
    if (c.contains("input_size")) cfg.input_size = integers<int64_t>(c.at("input_size"));  // absent before it was added
  } catch (const dfq::Error& e) {
    throw Error(subject + ": " + one_line(e.what()));  // e.g. a packed tensor that does not fit its shape
  } catch (const c10::Error& e) {  // LibTorch's what() carries a multi-line backtrace
    fail(subject, "a consistent header", one_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    fail(subject, "a consistent header", one_line(e.what()));
  }
  try {
    validate(model);  // what the engines rely on: shapes, ranges, scales, points
  } catch (const dfq::Error& e) {
    throw Error(subject + ": " + one_line(e.what()));
  }
  return model;
}

}  // namespace dfq
