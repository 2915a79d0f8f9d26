// Sub-byte weight storage.
//
// Bit streams (the artifact, version 5): integers of `bits` bits (1..8) one
// after another from the low bit of byte 0, value i in stream bits
// [i * bits, (i + 1) * bits), low bit first; the last byte's unused high bits
// are 0. Signed values are stored as two's-complement `bits`-bit fields,
// unsigned codes (a weight lookup table's, weight_lut.h) as they are. So a
// layer of b-bit weights takes ceil(numel * b / 8) bytes: 3- and 5-bit layers
// cost what the mixed-precision ILP counts for them.
//
// Nibbles (the integer engine's packed kernels, int_kernels.h, and artifact
// version 4): the 4-bit case of the same layout, element 2i in the low nibble
// of byte i, 2i + 1 in the high one.
#pragma once

#include <ATen/core/Tensor.h>

namespace dfq {

// int8 values in [-2^(bits-1), 2^(bits-1) - 1] (any shape) -> uint8
// [ceil(numel * bits / 8)]. Throws dfq::Error for another dtype, bits outside
// 1..8 or a value out of range.
at::Tensor pack_bits(const at::Tensor& values, int bits);

// The inverse: uint8 [ceil(prod(shape) * bits / 8)] -> int8 of `shape`. Throws
// dfq::Error when the byte count does not fit the shape (checked before
// allocating, so a corrupted shape cannot request more than the bytes imply).
at::Tensor unpack_bits(const at::Tensor& packed, int bits, at::IntArrayRef shape);

// The same for unsigned codes: uint8 values in [0, 2^bits - 1], and back.
at::Tensor pack_unsigned_bits(const at::Tensor& codes, int bits);
at::Tensor unpack_unsigned_bits(const at::Tensor& packed, int bits, at::IntArrayRef shape);

// The 4-bit case of the integer engine's packed kernels; unpack_int4 is their
// per-call path (vectorized).
at::Tensor pack_int4(const at::Tensor& values);                          // pack_bits(values, 4)
at::Tensor unpack_int4(const at::Tensor& packed, at::IntArrayRef shape);  // unpack_bits(packed, 4, shape)

}  // namespace dfq
