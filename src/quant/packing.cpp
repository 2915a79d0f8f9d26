#include "quant/packing.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace dfq {
namespace {

void check_bits(int bits, const std::string& subject) {
  if (bits < 1 || bits > 8) fail(subject, "1 to 8 bits per value", std::to_string(bits));
}

int64_t packed_bytes(int64_t count, int bits) { return (count * bits + 7) / 8; }

// The element count of `shape`, after checking that `packed` holds exactly
// its bit stream; checked before any product can exceed what the bytes imply.
int64_t checked_count(const at::Tensor& packed, int bits, at::IntArrayRef shape) {
  const std::string subject = "packed " + std::to_string(bits) + "-bit tensor for shape " + c10::str(shape);
  check_bits(bits, subject);
  if (!packed.defined() || packed.scalar_type() != at::kByte)
    fail(subject, "uint8 bytes", packed.defined() ? std::string(c10::toString(packed.scalar_type())) : "none");
  const int64_t bytes = packed.numel(), capacity = bytes * 8 / bits;
  int64_t n = 1;
  bool fits = true;
  for (int64_t d : shape) {
    if (d < 0) fail(subject, "non-negative dimensions", c10::str(shape));
    if (d > 0 && n > capacity / d) fits = false;
    else n *= d;
  }
  if (!fits) fail(subject, "at most " + std::to_string(capacity) + " elements (" + std::to_string(bits) + " bits each)", "more");
  if (bytes != packed_bytes(n, bits)) fail(subject, std::to_string(packed_bytes(n, bits)) + " bytes", std::to_string(bytes));
  return n;
}

// Writes the low `bits` bits of each of the n fields into a zeroed stream.
void pack_fields(const uint8_t* fields, int64_t n, int bits, uint8_t* out) {
  const unsigned mask = (1u << bits) - 1;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t position = i * bits;
    const unsigned field = (fields[i] & mask) << (position % 8);  // at most 15 bits
    out[position / 8] |= static_cast<uint8_t>(field);
    if (position % 8 + bits > 8) out[position / 8 + 1] |= static_cast<uint8_t>(field >> 8);
  }
}

// The fields of the stream as bytes: unsigned codes, or (is_signed)
// two's-complement int8 values, sign-extended from `bits`.
at::Tensor unpack_fields(const at::Tensor& packed, int bits, at::IntArrayRef shape, bool is_signed) {
  const int64_t n = checked_count(packed, bits, shape);
  at::Tensor out = at::empty(shape, is_signed ? at::kChar : at::kByte);
  const at::Tensor p = packed.contiguous();
  const uint8_t* in = p.data_ptr<uint8_t>();
  uint8_t* o = static_cast<uint8_t*>(out.data_ptr());
  const unsigned mask = (1u << bits) - 1, sign = is_signed ? 1u << (bits - 1) : 0u;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t position = i * bits;
    unsigned word = in[position / 8];
    if (position % 8 + bits > 8) word |= static_cast<unsigned>(in[position / 8 + 1]) << 8;
    const unsigned field = (word >> (position % 8)) & mask;
    o[i] = static_cast<uint8_t>((field & sign) != 0 ? field | ~mask : field);
  }
  return out;
}

// out[i] = element i of `packed` (n elements), sign-extended; branch-free so it
// vectorizes (the integer engine unpacks a layer at every call).
void unpack_int4_into(const uint8_t* __restrict packed, int64_t n, int8_t* __restrict out) {
  // A nibble moved to the top of a byte and shifted back arithmetically is sign-extended.
  const int64_t pairs = n / 2;
  for (int64_t i = 0; i < pairs; ++i) {
    const uint8_t byte = packed[i];
    out[2 * i] = static_cast<int8_t>(static_cast<int8_t>(byte << 4) >> 4);
    out[2 * i + 1] = static_cast<int8_t>(static_cast<int8_t>(byte) >> 4);
  }
  if (n % 2 != 0) out[n - 1] = static_cast<int8_t>(static_cast<int8_t>(packed[pairs] << 4) >> 4);
}

}  // namespace

at::Tensor pack_bits(const at::Tensor& values, int bits) {
  const std::string subject = std::to_string(bits) + "-bit packing input";
  check_bits(bits, subject);
  if (!values.defined() || values.scalar_type() != at::kChar)
    fail(subject, "an int8 tensor", values.defined() ? std::string(c10::toString(values.scalar_type())) : "none");
  const at::Tensor v = values.contiguous();
  const int64_t n = v.numel();
  const int lowest = -(1 << (bits - 1)), highest = (1 << (bits - 1)) - 1;
  if (n > 0 && (v.min().item<int>() < lowest || v.max().item<int>() > highest))
    fail(subject, "values in [" + std::to_string(lowest) + ", " + std::to_string(highest) + "]",
         "[" + std::to_string(v.min().item<int>()) + ", " + std::to_string(v.max().item<int>()) + "]");
  at::Tensor packed = at::zeros({packed_bytes(n, bits)}, at::kByte);
  // The two's-complement byte's low bits are the field.
  pack_fields(reinterpret_cast<const uint8_t*>(v.data_ptr<int8_t>()), n, bits, packed.data_ptr<uint8_t>());
  return packed;
}

at::Tensor unpack_bits(const at::Tensor& packed, int bits, at::IntArrayRef shape) {
  return unpack_fields(packed, bits, shape, true);
}

at::Tensor pack_unsigned_bits(const at::Tensor& codes, int bits) {
  const std::string subject = std::to_string(bits) + "-bit code packing input";
  check_bits(bits, subject);
  if (!codes.defined() || codes.scalar_type() != at::kByte)
    fail(subject, "a uint8 tensor", codes.defined() ? std::string(c10::toString(codes.scalar_type())) : "none");
  const at::Tensor c = codes.contiguous();
  if (c.numel() > 0 && c.max().item<int>() > (1 << bits) - 1)
    fail(subject, "values in [0, " + std::to_string((1 << bits) - 1) + "]", "a maximum of " + std::to_string(c.max().item<int>()));
  at::Tensor packed = at::zeros({packed_bytes(c.numel(), bits)}, at::kByte);
  pack_fields(c.data_ptr<uint8_t>(), c.numel(), bits, packed.data_ptr<uint8_t>());
  return packed;
}

at::Tensor unpack_unsigned_bits(const at::Tensor& packed, int bits, at::IntArrayRef shape) {
  return unpack_fields(packed, bits, shape, false);
}

at::Tensor pack_int4(const at::Tensor& values) { return pack_bits(values, 4); }

at::Tensor unpack_int4(const at::Tensor& packed, at::IntArrayRef shape) {
  const int64_t n = checked_count(packed, 4, shape);
  at::Tensor out = at::empty(shape, at::kChar);
  const at::Tensor p = packed.contiguous();
  unpack_int4_into(p.data_ptr<uint8_t>(), n, out.data_ptr<int8_t>());
  return out;
}

}  // namespace dfq
