// Export of a quantized model to ONNX in the QDQ form (what ONNX Runtime,
// TensorRT and OpenVINO consume), written with Debian's libonnx protobuf
// classes.
//
// The file computes what `dfq eval --engine simulated` computes:
//   - every quantization point of the model (qmodel.h: the input, the points
//     in model.activations) is QuantizeLinear -> DequantizeLinear with dfq's
//     scale and zero point 0: uint8 where the point is unsigned, int8 where
//     signed. dfq's grids are narrower than the type (signed: [-(2^(b-1)-1),
//     2^(b-1)-1], never -128; fewer bits: fewer levels), so a Clip on the
//     integers between the two keeps exactly dfq's levels. No other value is
//     rounded: a convolution read only by a residual add stays float into it.
//   - weights are int8 initializers through a per-output-channel
//     DequantizeLinear (axis 0); a residual weight tensor is a second one,
//     added; a lookup-table layer exports its table's values (q = lut[codes]).
//   - biases are int32 initializers through a DequantizeLinear of scale
//     s_in * s_w[o] (as float32 products, what a fused integer kernel assumes),
//     the integers dfq's engines add.
//   - every other op writes its own float nodes (core/ops/<op>.cpp export_onnx).
// ONNX rounds half to even where dfq rounds half away from zero: the two
// differ only on exact ties (common only with power-of-two scales).
//
// Opset 17 (the default): IR 8, checked with onnx::checker before it is
// returned. Opset 21: IR 10; weights of <= 4 bits as packed INT4 initializers
// (onnx 1.12's checker does not know the type: such files are checked by
// running them). Activations stay uint8/int8 at opset 21 too, their Clip
// keeping a 4-bit point's 16 (15) levels: with UINT4/INT4 points, ONNX
// Runtime 1.22 and 1.23 failed to load some files (its Clip/Quantize fusion
// and Q/DQ propagation across MaxPool throw on 4-bit types) and computed
// others wrongly (ResNet-20 W4A4: top-1 44 % against the simulated 79 %, also
// with graph optimizations off), so dfq does not write them.
//
// The input is N x C x H x W float (the normalized image), N symbolic, H and W
// fixed at the size the model is exported for; the output is the float logits.
// metadata_props carry dfq's version and commit, the source model's path and
// SHA-256, and the quantization choices (QuantConfig).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/qmodel.h"

namespace dfq {

struct OnnxExportOptions {
  int opset = 17;                   // 17 or 21
  std::vector<int64_t> input_size;  // H, W; empty: the calibration size the artifact records
};

// The serialized ModelProto. Throws dfq::Error naming the node and the reason
// when part of the model has no exact ONNX form (an op without an export, a
// bias beyond int32, an input size the model cannot take), and naming the
// option for a bad opset or a missing input size.
std::string export_onnx(const QuantizedModel& model, const OnnxExportOptions& options);

}  // namespace dfq
