// The integer-only engine: a QuantizedModel run in integers from the input
// quantization to the logits (HAWQ-V3 style). One kernel per quantization
// role of core/op.h, parameterized by the op. Per role, with q the integer
// values of every quantization point (int8 when signed, uint8 when unsigned;
// 4-D values in channels-last memory format) and real = scale * q:
//   input           q = clamp(round(x / s)), 8-bit signed: the one float step in
//   Conv2d/Linear   acc = sum w q (int32) [+ (acc << k) + sum w2 q: residual
//                   tensor, combined in int64] + round(bias / unit); then
//                   q_out = clamp(requantize(acc, unit / s_out)) (dyadic.h), the
//                   clamp also applying a fused ReLU/ReLU6 bound round(b / s_out)
//   Add             q_out = clamp(round((q_a m_a + q_b m_b) / 2^s)), each branch
//                   rescaled by its own multiplier on a shared shift (as wide as
//                   the operands' bounds allow, so neither loses precision); when one
//                   branch is a Conv2d/Linear read only by the add (qmodel.h), it
//                   arrives as its accumulator and q_a = acc + bias, with m_a, m_b
//                   and s per output channel
//   clamp           requantize to the output scale, clamp (ReLU, ReLU6)
//   average         window sum (int64), then requantize by s_in / (n s_out)
//                   (avg pools, spatial Mean; windows from the op)
//   concat          each input requantized to the output scale (Cat)
//   table           out = table[q_in]: one integer per input level, built in
//                   double from the op's function (hardswish, SiLU, sigmoid...)
//   multiply        q_out = clamp(round(q_a q_b m / 2^s)), broadcasting (Mul)
//   resample        bilinear: fixed-point weights (14 fraction bits per axis),
//                   the sum requantized by s_in / (s_out 2^28)
//   exact           data movement on the integers: Slice, Pad (zeros),
//                   MaxPool2d, Flatten, Reshape, Transpose, Permute, Chunk,
//                   nearest upsampling
// Only the graph output is converted to float: a Conv2d/Linear output as acc *
// unit, any other op on its dequantized inputs. No float arithmetic and no
// integer division run inside the loops.
//
// The reference and fast engines differ only in their Conv2d/Linear kernels
// (int_kernels.h); every other step is shared code, so the two are bit-exact
// when the kernels are.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "core/graph.h"
#include "quant/dyadic.h"
#include "quant/int_kernels.h"
#include "quant/qmodel.h"

namespace dfq {

// Worst-case accumulator of one Conv2d/Linear node, from its integer weights,
// input range and bias: max over channels of sum |w| * max|q_in| (+ the residual
// tensor's, shifted) + |bias|.
struct AccumulatorReport {
  std::string name;
  int64_t worst_case = 0;
  int bits = 0;                  // signed width that holds worst_case
  bool overflows_int16 = false;  // bits > 16
};

// The dyadic multipliers one node requantizes with: per output channel for a
// Conv2d/Linear; per input for an Add or Cat; one for a ReLU/Clamp; an Add
// that reads an accumulator lists, per channel, the accumulator's and then the
// other input's (sharing a shift). Average pools choose theirs per window size
// at run time (ratio s_in / (n s_out)) and are not listed.
struct RequantizationReport {
  std::string name;
  std::vector<Dyadic> multipliers;
};

// The integer table of a kTable node (op.h): for every input level q of
// `in`, clamp(round(f(q s_in) / s_out)) to `out`'s range, f evaluated in
// double, rounding half away from zero. Throws for an input above 8 bits.
std::vector<int64_t> integer_table(const Node& node, const ActivationQuant& in, const ActivationQuant& out);

class IntegerEngine {
 public:
  // Prepares kernels, integer biases and dyadic multipliers. Throws dfq::Error
  // for ops it cannot run in integers (e.g. a Mean over channels) or ratios it
  // cannot represent.
  IntegerEngine(const QuantizedModel& model, IntKernel kernel);
  ~IntegerEngine();
  IntegerEngine(const IntegerEngine&) = delete;
  IntegerEngine& operator=(const IntegerEngine&) = delete;

  // N x C x H x W normalized float -> float logits. With several threads the
  // batch runs as slices of at most kImagesPerSlice images, one thread each
  // (the same integers as one pass: images are independent).
  at::Tensor forward(const at::Tensor& input) const;
  static constexpr int64_t kImagesPerSlice = 8;
  // The same, also returning every node's integer value (Conv2d/Linear: the
  // int64 accumulators before requantization, then the output) for tests.
  at::Tensor forward(const at::Tensor& input, std::vector<at::Tensor>* values,
                     std::vector<at::Tensor>* accumulators) const;

  const std::vector<AccumulatorReport>& accumulators() const { return report_; }
  // Bytes of integer weights the kernels keep (int_kernels.h: weights of <= 4
  // bits packed two per byte, except lookup-table layers, whose levels are
  // int8; the fast kernels add oneDNN's reordered copies of int8 weights once a
  // batch shape has run). The engine keeps no float weights.
  int64_t weight_bytes() const;
  const std::vector<RequantizationReport>& requantizations() const { return requantizations_; }

 // Internal: a prepared node (one class per quantization role, op.h) and
  // what preparing one reads.
  class Step;
  struct Context;

 private:
  at::Tensor run(const at::Tensor& input, std::vector<at::Tensor>* values, std::vector<at::Tensor>* accumulators) const;

  Graph graph_;
  std::vector<std::unique_ptr<Step>> steps_;  // one per node of graph_
  std::vector<AccumulatorReport> report_;
  std::vector<RequantizationReport> requantizations_;
  int output_ = 0;
};

}  // namespace dfq
