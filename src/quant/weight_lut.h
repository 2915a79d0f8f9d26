// Non-uniform weights through a per-layer lookup table (Vandersteegen et al.,
// "Integer-only CNNs with 4 bit weights and bit-shift quantization scales at
// full-precision accuracy"; dfq quantize --weight-lut): a layer of b <= 4 bits
// stores one b-bit code per weight and a table of 2^b int8 values in
// [-127, 127]; the integer the engines multiply with is q = lut[code] and
// real = scale[o] * q, so the integer engine runs the layer with its ordinary
// int8 kernels and requantization.
//
// Fit: alternating minimization (Lloyd's k-means) of the layer's objective over
// the table, the codes and the per-channel scales, from the uniform grid:
//   start  table g * {qmin .. qmax} (g = the largest power of two with
//          g * qmax <= 127; the 2^b-th entry a spare 0), scale = s_uniform / g
//          and the uniform integers: exactly the uniform weights;
//   table  each entry the weighted mean of the w / scale assigned to it,
//          rounded to an integer in [-127, 127]; an entry nothing is assigned
//          to moves to the value with the largest weighted error;
//   codes  the nearest entry;
//   scales per channel the weighted least-squares scale for those integers
//          (with power_of_two: the better of the two powers of two around it,
//          which is exact for a quadratic).
// The weights of these steps are diag(H) (each weight's input second moment)
// times scale^2 for the output objective, 1 for the weight error: the steps are
// exact for a diagonal H. Every iterate is scored on the full objective
// (sum_o d_o^T H d_o, or |W - W_q|^2) and the best is kept, so the result is
// never worse than the uniform grid on it.
#pragma once

#include <ATen/core/Tensor.h>

#include "quant/quantizer.h"

namespace dfq {

struct WeightLut {
  at::Tensor lut;    // int8 [2^bits]
  at::Tensor codes;  // uint8, the weight's shape, values < 2^bits
  at::Tensor q;      // int8, lut[codes]
  at::Tensor scale;  // float32 [O]
  double objective_uniform = 0.0, objective = 0.0;  // of the uniform start and of the result
  int iterations = 0;                               // Lloyd iterations run
};

// Fits the table for a weight [O, ...] whose uniform quantizer (range, signed,
// bits <= 4) has per-channel `uniform_scale` [O]. hessian [G, D, D] (range.h)
// selects the output objective, undefined the weight error. Deterministic.
// Throws dfq::Error on shapes that do not fit or a range it cannot use.
WeightLut fit_weight_lut(const at::Tensor& weight, const at::Tensor& uniform_scale, QuantRange range,
                         const at::Tensor& hessian, bool power_of_two, int iterations = 20);

// The objective above for a dequantized weight w_hat (hessian undefined: |W - W_q|^2).
double weight_objective_value(const at::Tensor& weight, const at::Tensor& w_hat, const at::Tensor& hessian);

// The codes of integers q under `lut` (the first equal entry), uint8 like q.
// Throws dfq::Error when some value of q is not in the table.
at::Tensor lut_codes(const at::Tensor& q, const at::Tensor& lut);

// lut[codes] as int8 of the codes' shape. Throws dfq::Error for a code outside the table.
at::Tensor decode_lut(const at::Tensor& codes, const at::Tensor& lut);

}  // namespace dfq
