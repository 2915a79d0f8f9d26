#include "quant/packing.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace dfq {
namespace {

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

at::Tensor pack_int4(const at::Tensor& values) {
  if (!values.defined() || values.scalar_type() != at::kChar)
    fail("4-bit packing input", "an int8 tensor", values.defined() ? std::string(c10::toString(values.scalar_type())) : "none");
  const at::Tensor v = values.contiguous();
  const int64_t n = v.numel();
  if (n > 0 && (v.min().item<int>() < -8 || v.max().item<int>() > 7))
    fail("4-bit packing input", "values in [-8, 7]", "[" + std::to_string(v.min().item<int>()) + ", " +
                                                          std::to_string(v.max().item<int>()) + "]");
  at::Tensor packed = at::zeros({(n + 1) / 2}, at::kByte);
  const int8_t* in = v.data_ptr<int8_t>();
  uint8_t* out = packed.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t nibble = static_cast<uint8_t>(in[i]) & 0x0F;
    out[i / 2] |= (i % 2 == 0) ? nibble : static_cast<uint8_t>(nibble << 4);
  }
  return packed;
}

at::Tensor unpack_int4(const at::Tensor& packed, at::IntArrayRef shape) {
  const std::string subject = "packed 4-bit tensor for shape " + c10::str(shape);
  if (!packed.defined() || packed.scalar_type() != at::kByte)
    fail(subject, "uint8 bytes", packed.defined() ? std::string(c10::toString(packed.scalar_type())) : "none");
  // The shape is checked against the bytes before allocating, so that a bad shape
  // (e.g. from a corrupted file) cannot request more memory than the bytes imply.
  const int64_t bytes = packed.numel();
  int64_t n = 1;
  bool fits = true;
  for (int64_t d : shape) {
    if (d < 0) fail(subject, "non-negative dimensions", c10::str(shape));
    if (d > 0 && n > (2 * bytes) / d) fits = false;
    else n *= d;
  }
  if (!fits) fail(subject, "at most " + std::to_string(2 * bytes) + " elements (two per byte)", "more");
  if (bytes != (n + 1) / 2) fail(subject, std::to_string((n + 1) / 2) + " bytes", std::to_string(bytes));
  at::Tensor out = at::empty(shape, at::kChar);
  const at::Tensor p = packed.contiguous();
  unpack_int4_into(p.data_ptr<uint8_t>(), n, out.data_ptr<int8_t>());
  return out;
}

at::Tensor pack_uint4(const at::Tensor& codes) {
  if (!codes.defined() || codes.scalar_type() != at::kByte)
    fail("4-bit code packing input", "a uint8 tensor", codes.defined() ? std::string(c10::toString(codes.scalar_type())) : "none");
  if (codes.numel() > 0 && codes.max().item<int>() > 15)
    fail("4-bit code packing input", "values in [0, 15]", "a maximum of " + std::to_string(codes.max().item<int>()));
  // A code's nibble is the two's-complement nibble of code - 16 * (code >= 8).
  return pack_int4((codes.to(at::kShort) - 16 * codes.ge(8).to(at::kShort)).to(at::kChar));
}

at::Tensor unpack_uint4(const at::Tensor& packed, at::IntArrayRef shape) {
  return unpack_int4(packed, shape).to(at::kShort).bitwise_and(15).to(at::kByte);
}

}  // namespace dfq
