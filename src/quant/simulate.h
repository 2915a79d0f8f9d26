// The simulated ("fake-quant") engine: the quantized model run in float with
// quantize-dequantize at every quantization point, mirroring what the integer
// engine computes: weights as dequantized integers, biases on the int32 grid
// of scale_in * scale_w, every point rounded half away from zero and clamped
// (quantizer.h). It differs from the integer engine only by float rounding of
// the accumulation and by the dyadic approximation of requantization scales.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "core/execute.h"
#include "core/graph.h"
#include "quant/qmodel.h"

namespace dfq {

// The real value of one unit of a Conv2d/Linear node's accumulator, per output
// channel (double): unit[o] = input_scale * scale[o] (* 2^-shift[o] with a
// residual tensor).
at::Tensor accumulator_unit(const WeightQuant& w, double input_scale);
// The bias in accumulator units, as the integer engine adds it: round(bias / unit)
// half away from zero (int64 [O]).
at::Tensor integer_bias(const WeightQuant& w, double input_scale);
// integer_bias * unit: the bias the simulated engine adds (float32 or float64).
at::Tensor bias_on_integer_grid(const WeightQuant& w, double input_scale, at::ScalarType type = at::kFloat);

// The scale of the activation a Conv2d/Linear node reads; throws dfq::Error when
// its input is not quantized.
double weight_input_scale(const QuantizedModel& model, const ActivationPoints& points, int node);

// The float graph the simulated engine runs: dequantized weights, biases on
// their int32 grid, as float32 (what quantization observes) or float64.
Graph simulated_graph(const QuantizedModel& model, at::ScalarType type = at::kFloat);

// Observer that fake-quantizes the output of every quantization point of
// `model` (which must outlive it).
class FakeQuantizer : public Observer {
 public:
  explicit FakeQuantizer(const QuantizedModel& model);
  void after_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor& output) override;

 private:
  std::vector<const ActivationQuant*> point_;  // node id -> quantization at its output, or null
};

// The simulated engine of `dfq eval --engine simulated`: computes in float64,
// so that its only differences from the integer engine are the dyadic
// approximation of the scale ratios (and bilinear weights): in float32, sums
// of a few hundred products land on the other side of a rounding boundary now
// and then, and networks that amplify small changes (random-weight ones
// especially) turn that into different top-1 predictions.
class SimulatedModel {
 public:
  explicit SimulatedModel(const QuantizedModel& model);
  at::Tensor forward(const at::Tensor& input) const;  // N x C x H x W normalized float -> float32 logits

 private:
  QuantizedModel model_;
  Graph graph_;
};

}  // namespace dfq
