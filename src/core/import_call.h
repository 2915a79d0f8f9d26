// One TorchScript call being imported, as an op file's import hook sees it
// (op.h): typed access to the arguments, and the way to emit graph nodes. The
// importer (import_torchscript.cpp) implements it; op files never include
// TorchScript headers.
//
// Arguments are positional as in the aten:: schema. A "tensor" argument is a
// value computed from the network input (a graph node); a "param" is a
// constant tensor (weights). Every accessor throws dfq::Error through
// unsupported() when the argument has another kind, naming the op and scope.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/graph.h"

namespace dfq {

// A reshape target entry: a constant, or dimension `dim` of the reshaped
// tensor floor-divided by `divisor` (sizes read at run time follow the batch).
struct ShapeEntry {
  int64_t value = -1;     // the constant (-1: inferred), when dim < 0
  int64_t dim = -1;       // >= 0: the reshaped tensor's dimension
  int64_t divisor = 1;
};

class ImportCall {
 public:
  virtual ~ImportCall() = default;

  virtual const std::string& kind() const = 0;  // e.g. "aten::hardswish_"
  virtual size_t arg_count() const = 0;

  virtual bool is_none(size_t i) = 0;
  virtual bool is_tensor(size_t i) = 0;  // a computed tensor (not a constant)
  virtual int tensor(size_t i) = 0;      // the graph node that computes argument i
  virtual std::vector<int> tensor_list(size_t i) = 0;
  virtual at::Tensor param(size_t i) = 0;  // float32 contiguous copy; undefined for None
  virtual int64_t int_arg(size_t i) = 0;
  virtual double real_arg(size_t i) = 0;
  virtual bool bool_arg(size_t i) = 0;
  virtual std::string string_arg(size_t i) = 0;
  virtual std::vector<int64_t> ints_arg(size_t i) = 0;  // constant int list (or one int)
  virtual std::vector<double> reals_arg(size_t i) = 0;  // constant float list
  // Entries of a shape list for reshaping node `reshaped` (aten::view/reshape).
  virtual std::vector<ShapeEntry> shape_arg(size_t i, int reshaped) = 0;

  // Appends a node of `op` reading `inputs`; it becomes the call's output.
  virtual Node& add(const OpDef& op, std::vector<int> inputs) = 0;
  // The op whose import hook is running (the one that lists kind()).
  virtual const OpDef& op() const = 0;
  // Appends a node that is not the call's output (multi-output ops).
  virtual Node& add_part(const OpDef& op, std::vector<int> inputs) = 0;
  // The call's output is a list of these nodes (unpacked by prim::ListUnpack).
  virtual void output_list(const std::vector<int>& nodes) = 0;
  // The call's output is argument i itself (an identity at inference).
  virtual void alias(size_t i) = 0;
  // Symbolic shape tracking, so that a later reshape can name the sizes a
  // model read before it reordered dimensions (ShuffleNet's view after a
  // transpose): the output's dimensions are the input's, reordered.
  virtual void output_dims_transposed(int input, int64_t dim0, int64_t dim1) = 0;
  virtual void output_dims_permuted(int input, const std::vector<int64_t>& dims) = 0;
  // Number of values a following prim::ListUnpack takes from the output (0: none).
  virtual size_t unpacked_count() = 0;
  [[noreturn]] virtual void unsupported(const std::string& why) = 0;

  // ints_arg with a 1-element list expanded to the 2-D value PyTorch means.
  std::vector<int64_t> pair_arg(size_t i);
  double optional_real(size_t i, double none_value) { return is_none(i) ? none_value : real_arg(i); }
};

}  // namespace dfq
