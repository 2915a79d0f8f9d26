// The quantized-model file (.dfq), version 5 (version 4 files are read too).
//
// Layout (little-endian):
//   8 bytes  magic "DFQMODEL"
//   u32      format version (5)
//   u64      header length H
//   H bytes  header, JSON: graph (nodes with op, inputs, attributes), config,
//            activation quantization per point, weight quantization per layer,
//            and a table of tensors {name: {dtype, shape, offset, bytes}}
//   ...      tensor data, at the offsets of the table (relative to its start)
//   u32      CRC-32 (zlib) of every byte before it
// Weights are stored only as integers, each layer's as a bit stream of its
// own bits (packing.h: ceil(numel * bits / 8) bytes; with a lookup table,
// weight_lut.h, its codes the same way and the int8 table); scales float32,
// residual shifts int64; float biases are stored as is and put on the int32
// grid by the engines (simulate.h). The float weights of the loaded graph are
// the dequantized integers. Writing is atomic (core/atomic_file.h). Version 4
// differed only in the weights: nibbles for <= 4 bits, int8 above.
#pragma once

#include <string>

#include "quant/qmodel.h"

namespace dfq {

void save_quantized_model(const QuantizedModel& model, const std::string& path);

// Throws dfq::Error naming the file and what was wrong: not a .dfq file (magic),
// an unsupported version, truncated or corrupted data (lengths, CRC), or an
// inconsistent header (unknown op, missing tensor, wrong shape, a non-integer
// where an integer belongs, or a model the engines cannot run: validate() in
// qmodel.h). Allocates no more than the file's size implies before the checks.
QuantizedModel load_quantized_model(const std::string& path);

}  // namespace dfq
