// The simulated ("fake-quant") engine: the quantized model run in float with
// quantize-dequantize at every quantization point, mirroring what the integer
// engine computes: weights as dequantized integers, biases on the int32 grid
// of scale_in * scale_w, every point rounded half away from zero and clamped
// (quantizer.h). It differs from the integer engine only by float rounding of
// the accumulation and by the dyadic approximation of requantization scales.
#pragma once

#include <ATen/core/Tensor.h>

#include "core/graph.h"
#include "quant/qmodel.h"

namespace dfq {

class SimulatedModel {
 public:
  explicit SimulatedModel(const QuantizedModel& model);
  at::Tensor forward(const at::Tensor& input) const;  // N x C x H x W normalized float -> logits

 private:
  Graph graph_;                             // dequantized weights, biases on their int32 grid
  std::vector<const ActivationQuant*> point_;  // node id -> quantization at its output, or null
  QuantizedModel model_;                    // owns what point_ points into
};

// The bias of a Conv2d/Linear node rounded to the int32 grid the integer engine
// uses: unit[o] = input_scale * scale[o] (* 2^-shift[o] with a residual tensor).
at::Tensor bias_on_integer_grid(const WeightQuant& w, double input_scale);

}  // namespace dfq
