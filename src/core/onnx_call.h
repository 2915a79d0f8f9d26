// One graph node being exported to ONNX, as an op file's export hook sees it
// (op.h): the names of its input values, its parameters as values, static
// shapes, and the way to append ONNX nodes. The exporter (quant/export_onnx.cpp)
// implements it and places the QuantizeLinear/DequantizeLinear pairs itself, so
// an op writes only its float semantics; op files include no ONNX headers.
//
// Values are named by strings as in ONNX. Inputs are float32 (dequantized
// where dfq quantizes them); the batch dimension is symbolic, so an op whose
// ONNX form needs a size that follows the batch computes it with Shape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/graph.h"

namespace dfq {

// One ONNX attribute: an int, a list of ints, a float or a string.
struct OnnxAttr {
  enum Kind { kInt, kInts, kFloat, kString } kind = kInt;
  std::string name;
  std::vector<int64_t> ints;
  double real = 0.0;
  std::string text;

  static OnnxAttr i(const std::string& name, int64_t v) { return {kInt, name, {v}, 0.0, {}}; }
  static OnnxAttr list(const std::string& name, std::vector<int64_t> v) { return {kInts, name, std::move(v), 0.0, {}}; }
  static OnnxAttr f(const std::string& name, double v) { return {kFloat, name, {}, v, {}}; }
  static OnnxAttr s(const std::string& name, std::string v) { return {kString, name, {}, 0.0, std::move(v)}; }
};

class OnnxCall {
 public:
  virtual ~OnnxCall() = default;

  virtual const Node& node() const = 0;
  virtual int opset() const = 0;  // of the file being written
  virtual std::string input(size_t k) = 0;
  // Shape of input k (and of the node's output) for a batch of one, at the
  // input size the model is exported for.
  virtual std::vector<int64_t> input_shape(size_t k) = 0;
  virtual std::vector<int64_t> output_shape() = 0;
  // A parameter as a float value (a quantized weight: its DequantizeLinear; a
  // quantized layer's bias: its int32 DequantizeLinear); "" when the node has
  // none by that name (ONNX's empty name for an omitted optional input).
  virtual std::string param(const std::string& key) = 0;
  // Constant initializers.
  virtual std::string ints(const std::vector<int64_t>& values) = 0;  // int64 1-D
  virtual std::string real(double value) = 0;                        // float32 scalar

  // Appends a node of one output and returns its name; the last node
  // appended is the dfq node's result.
  virtual std::string add(const std::string& op_type, const std::vector<std::string>& inputs,
                          const std::vector<OnnxAttr>& attrs = {}) = 0;

  // Throws dfq::Error naming the node and op: "expected an op ONNX can express, found <why>".
  [[noreturn]] virtual void unsupported(const std::string& why) = 0;
};

}  // namespace dfq
