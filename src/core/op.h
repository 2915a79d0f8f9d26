// What dfq knows about one op, held in one place: src/core/ops/<op>.cpp
// defines an OpDef and src/core/op_registry.cpp lists it (one line). Adding an
// op is that file, that line and its tests.
//
// An OpDef carries the op's TorchScript import (which aten:: kinds it takes and
// how their arguments become attributes), the validation of its attributes,
// its float semantics (differentiable, on LibTorch) and its quantization role.
// The role says how the quantizer and both quantized engines treat the op; the
// integer engine has one kernel per role (src/quant/integer_engine.cpp), which
// the op parameterizes: a pointwise function for a table, an integer run for a
// data-movement op, clamp bounds. Rules that span several ops (folding,
// fusion, which values are quantization points) live in the graph passes
// (core/passes.h, quant/qmodel.h), never here.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace dfq {

struct Node;
class ImportCall;
class OnnxCall;

// One averaging window of a kAverage op over an H x W input, and the divisor
// ATen uses for it.
struct PoolWindow {
  int64_t h0, h1, w0, w1, divisor;
};
struct PoolGeometry {
  int64_t out_h = 1, out_w = 1;
  std::vector<PoolWindow> windows;  // row-major over the output positions
  bool keep_4d = true;              // false: the output is N x C
};

// One axis of a kResample op: output position i reads input positions i0[i]
// and i1[i] with weights 1 - lambda[i] and lambda[i].
struct ResampleAxis {
  std::vector<int64_t> i0, i1;
  std::vector<double> lambda;
};

// How an op's output is quantized and computed in integers (qmodel.h,
// integer_engine.h give the formulas).
enum class QuantRole {
  kInput,     // the network input: the one float-to-integer step, an 8-bit signed point
  kWeighted,  // Conv2d/Linear: integer weights, int32 accumulator requantized to its point
  kClamp,     // ReLU/Clamp: a point; bounds(); absorbed by a producer that absorbs_clamp
  kAdd,       // a point; both inputs rescaled onto it with one rounding (one may be an accumulator)
  kConcat,    // a point; every input rescaled onto it
  kAverage,   // average pools and spatial means: window sums requantized
  kTable,     // pointwise function on a <= 8-bit input: a point; integer = one output per input level
  kMultiply,  // elementwise product with broadcasting: a point; q_a * q_b requantized
  kResample,  // bilinear interpolation: a point; fixed-point weights, sums requantized
  kExact,     // data movement, exact on integers: keeps its first input's scale
  kFolded,    // BatchNorm: folded into a convolution (core/passes.h) before quantization
};

struct OpDef {
  const char* name = "";  // stable lower-case name, stored in artifacts and shown in reports
  int min_inputs = 1;
  int max_inputs = 1;  // -1: any number
  QuantRole role = QuantRole::kExact;

  // Import: the aten:: kinds this op takes from TorchScript, and how.
  std::vector<const char*> aten;
  void (*import)(ImportCall& call) = nullptr;

  // Attributes and parameters the other hooks index or divide by (a graph read
  // from a file is data); throws dfq::Error naming the node. May be null.
  void (*validate)(const Node& node) = nullptr;
  // Float semantics on the input values; differentiable.
  at::Tensor (*run)(const Node& node, const std::vector<at::Tensor>& inputs) = nullptr;
  // One short line for `dfq info` ("3x3 s2 p1 g1 16->32"); may be null.
  std::string (*describe)(const Node& node) = nullptr;

  // Quantization. Whether the output is >= 0 by construction, given which
  // inputs are (roles kClamp, kAdd, kConcat, kAverage, kTable, kMultiply,
  // kResample); null: signed.
  bool (*output_unsigned)(const Node& node, const std::vector<bool>& inputs_unsigned) = nullptr;
  // kClamp: the real bounds (lo may be -inf, hi +inf).
  std::pair<double, double> (*bounds)(const Node& node) = nullptr;
  // kTable: the function, evaluated in double to build the table.
  double (*pointwise)(const Node& node, double x) = nullptr;
  // kExact: the op on int8/uint8 values (4-D values channels-last); null: run.
  at::Tensor (*run_integer)(const Node& node, const std::vector<at::Tensor>& inputs) = nullptr;
  // kAverage: the windows over an H x W input.
  PoolGeometry (*pool)(const Node& node, int64_t h, int64_t w) = nullptr;
  // kResample: the output size and the two taps per output row and column.
  void (*resample)(const Node& node, int64_t h, int64_t w, ResampleAxis& rows, ResampleAxis& cols) = nullptr;
  // Why this node cannot run on integers, as what was found ("value 1.5 (only
  // zero padding is exact)"); empty when it can. May be null.
  std::string (*integer_refusal)(const Node& node) = nullptr;
  // ONNX export (core/onnx_call.h): the op's float semantics as ONNX nodes;
  // the exporter adds the QuantizeLinear/DequantizeLinear pairs. Null: the op
  // cannot be exported (the exporter refuses the model, naming the node).
  void (*export_onnx)(OnnxCall& call) = nullptr;
  // kWeighted and Add: the requantization of its output can apply a following
  // kClamp's bounds (the pass of qmodel.h decides when it does).
  bool absorbs_clamp = false;
};

// Every op, in registration order.
const std::vector<const OpDef*>& all_ops();
// The op named `name`; throws dfq::Error naming it when there is none.
const OpDef& op_by_name(const std::string& name);
// The op that imports aten:: kind `kind`, or null.
const OpDef* op_for_aten(const std::string& kind);

// The ops that graph passes refer to by name (defined in their op files).
extern const OpDef kInputOp, kConv2dOp, kBatchNormOp, kReluOp, kClampOp, kAddOp, kLinearOp, kMeanOp;
namespace Op {
inline constexpr const OpDef* Input = &kInputOp;
inline constexpr const OpDef* Conv2d = &kConv2dOp;
inline constexpr const OpDef* BatchNorm = &kBatchNormOp;
inline constexpr const OpDef* ReLU = &kReluOp;
inline constexpr const OpDef* Clamp = &kClampOp;
inline constexpr const OpDef* Add = &kAddOp;
inline constexpr const OpDef* Linear = &kLinearOp;
inline constexpr const OpDef* Mean = &kMeanOp;
}  // namespace Op

}  // namespace dfq
