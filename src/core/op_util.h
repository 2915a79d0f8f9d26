// Helpers the op files share: attribute checks for validate hooks, and text
// for describe hooks. Each throws dfq::Error naming the node and attribute.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/graph.h"

namespace dfq {

class OnnxCall;

// Integer attributes: `count` entries each (0: any number), each >= `minimum`.
void require_ints(const Node& n, std::initializer_list<const char*> keys, size_t count, int64_t minimum);
void require_reals(const Node& n, std::initializer_list<const char*> keys);
// A float32 parameter of `dims` dimensions (and `size0` rows when >= 0).
void require_tensor(const Node& n, const char* key, int64_t dims, int64_t size0);
// Pooling windows as ATen checks them: kernel, stride (and dilation) >= 1,
// padding at most half the dilated kernel.
void require_window(const Node& n, bool dilated);

// A kTable op of one input imported from the given aten:: kinds, whose
// output is >= 0 when `output_unsigned`, exported by `export_onnx`.
OpDef table_op(const char* name, std::vector<const char*> aten,
               at::Tensor (*run)(const Node&, const std::vector<at::Tensor>&), double (*f)(const Node&, double),
               bool output_unsigned, void (*export_onnx)(OnnxCall&));

// Upsampling ops (aten::upsample_*2d, vec and plain overloads): reads the
// output size or the scale factors into attributes output_size (ints, empty
// when scaled) and reals scale_h, scale_w (0 when sized).
void import_upsample_size(ImportCall& c, Node& node, size_t size_arg, size_t scales_arg, bool vec_overload);
// The output size ATen computes from those attributes for an h x w input.
std::pair<int64_t, int64_t> upsample_size(const Node& n, int64_t h, int64_t w);
void validate_upsample(const Node& n);
std::string describe_upsample(const Node& n);

std::string join(const std::vector<int64_t>& values, const char* sep);
// "k3x3 s2,2 p1,1 [ceil]"
std::string describe_window(const Node& n);

// Output length of a pooling window sweep (ATen's rule, ceil_mode included).
int64_t pooled_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation, bool ceil_mode);

}  // namespace dfq
