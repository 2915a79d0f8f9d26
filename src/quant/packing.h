// Sub-byte weight storage: signed integers of at most 4 bits, two per byte
// (two's-complement nibbles; element 2i in the low nibble of byte i, 2i + 1 in
// the high one; an odd count leaves the last high nibble 0). The artifact
// stores every weight tensor of <= 4 bits this way.
#pragma once

#include <ATen/core/Tensor.h>

namespace dfq {

// int8 values in [-8, 7] (any shape) -> uint8 [ceil(numel / 2)]. Throws
// dfq::Error for another dtype or a value out of range.
at::Tensor pack_int4(const at::Tensor& values);

// The inverse: uint8 [ceil(prod(shape) / 2)] -> int8 of `shape`. Throws
// dfq::Error when the byte count does not fit the shape.
at::Tensor unpack_int4(const at::Tensor& packed, at::IntArrayRef shape);

// The same layout for unsigned codes: uint8 values in [0, 15] (a weight
// lookup table's, weight_lut.h) -> uint8 [ceil(numel / 2)], and back.
at::Tensor pack_uint4(const at::Tensor& codes);
at::Tensor unpack_uint4(const at::Tensor& packed, at::IntArrayRef shape);

}  // namespace dfq
