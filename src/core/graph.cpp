#include "core/graph.h"

#include <ATen/core/Tensor.h>
#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cstdint>

#include "core/error.h"

namespace dfq {

const char* op_name(Op op) {
  switch (op) {
    case Op::Input: return "input";
    case Op::Conv2d: return "conv2d";
    case Op::BatchNorm: return "batch_norm";
    case Op::ReLU: return "relu";
    case Op::Clamp: return "clamp";
    case Op::Add: return "add";
    case Op::Slice: return "slice";
    case Op::Pad: return "pad";
    case Op::MaxPool2d: return "max_pool2d";
    case Op::AvgPool2d: return "avg_pool2d";
    case Op::AdaptiveAvgPool2d: return "adaptive_avg_pool2d";
    case Op::Flatten: return "flatten";
    case Op::Reshape: return "reshape";
    case Op::Linear: return "linear";
    case Op::Cat: return "cat";
    case Op::Mean: return "mean";
  }
  return "unknown";
}

const std::vector<int64_t>& Attrs::list(const std::string& key) const {
  auto it = ints.find(key);
  if (it == ints.end()) fail("attribute '" + key + "'", "an integer attribute", "none");
  return it->second;
}

int64_t Attrs::i(const std::string& key) const {
  const auto& values = list(key);
  if (values.size() != 1)
    fail("attribute '" + key + "'", "one integer", std::to_string(values.size()) + " integers");
  return values[0];
}

double Attrs::f(const std::string& key) const {
  auto it = reals.find(key);
  if (it == reals.end()) fail("attribute '" + key + "'", "a real attribute", "none");
  return it->second;
}

const at::Tensor& Node::param(const std::string& key) const {
  auto it = params.find(key);
  if (it == params.end()) fail("node '" + name + "'", "parameter '" + key + "'", "none");
  return it->second;
}

at::Tensor Node::optional_param(const std::string& key) const {
  auto it = params.find(key);
  return it == params.end() ? at::Tensor() : it->second;
}

int64_t Graph::output_width() const {
  int id = output;
  while (id > 0) {
    const Node& n = node(id);
    if (n.op == Op::Linear || n.op == Op::Conv2d) return n.param("weight").size(0);
    if (n.op == Op::BatchNorm) return n.param("running_mean").size(0);
    if (n.inputs.size() != 1) return 0;  // add/cat: width not derivable without shapes
    id = n.inputs[0];
  }
  return 0;
}

std::vector<int> Graph::batch_norm_nodes() const {
  std::vector<int> ids;
  for (const Node& n : nodes)
    if (n.op == Op::BatchNorm) ids.push_back(n.id);
  return ids;
}

std::vector<int> Graph::last_uses() const {
  std::vector<int> last(nodes.size());
  for (const Node& n : nodes) {
    last[static_cast<size_t>(n.id)] = n.id;
    for (int in : n.inputs) last[static_cast<size_t>(in)] = n.id;
  }
  last[static_cast<size_t>(output)] = static_cast<int>(nodes.size());
  return last;
}

namespace {

size_t expected_arity(Op op) {
  switch (op) {
    case Op::Input: return 0;
    case Op::Add: return 2;
    case Op::Cat: return 0;  // any number >= 1, checked separately
    default: return 1;
  }
}

void require_params(const Node& n, std::initializer_list<const char*> keys) {
  for (const char* key : keys) n.param(key);
}

void require_attrs(const Node& n, std::initializer_list<const char*> keys) {
  for (const char* key : keys) n.attrs.list(key);
}

// Attributes the engines index or divide by: `count` entries (0: any number),
// each >= `minimum`. (A graph read from a .dfq file is data, not a traced model.)
void require_ints(const Node& n, std::initializer_list<const char*> keys, size_t count, int64_t minimum) {
  for (const char* key : keys) {
    const std::vector<int64_t>& values = n.attrs.list(key);
    const std::string subject = "graph node '" + n.name + "' attribute '" + key + "'";
    if (count > 0 && values.size() != count)
      fail(subject, std::to_string(count) + " integer(s)", std::to_string(values.size()));
    for (int64_t v : values)
      if (v < minimum) fail(subject, "values >= " + std::to_string(minimum), std::to_string(v));
  }
}

void require_reals(const Node& n, std::initializer_list<const char*> keys) {
  for (const char* key : keys) n.attrs.f(key);
}

// A float32 parameter of `dims` dimensions (and `size0` rows when >= 0).
void require_tensor(const Node& n, const char* key, int64_t dims, int64_t size0) {
  const at::Tensor& t = n.param(key);
  const std::string subject = "graph node '" + n.name + "' parameter '" + key + "'";
  if (!t.defined() || t.scalar_type() != at::kFloat || t.dim() != dims || (size0 >= 0 && t.size(0) != size0))
    fail(subject, "a float32 tensor of " + std::to_string(dims) + " dimension(s)" +
                      (size0 >= 0 ? " and " + std::to_string(size0) + " rows" : std::string()),
         t.defined() ? std::string(c10::toString(t.scalar_type())) + " of shape " + c10::str(t.sizes()) : "none");
}

// Pooling windows as ATen checks them: kernel, stride and dilation >= 1,
// padding at most half the dilated kernel.
void require_window(const Node& n, bool dilated) {
  require_ints(n, {"kernel", "stride"}, 2, 1);
  require_ints(n, {"padding"}, 2, 0);
  std::vector<int64_t> dilation{1, 1};
  if (dilated) {
    require_ints(n, {"dilation"}, 2, 1);
    dilation = n.attrs.list("dilation");
  }
  const std::vector<int64_t>& k = n.attrs.list("kernel");
  const std::vector<int64_t>& p = n.attrs.list("padding");
  for (size_t i = 0; i < 2; ++i)
    if (k[i] > (int64_t{1} << 30) || dilation[i] > (int64_t{1} << 30) || p[i] > ((k[i] - 1) * dilation[i] + 1) / 2)
      fail("graph node '" + n.name + "' attribute 'padding'",
           "at most half the (dilated) kernel " + c10::str(k) + " and kernel, dilation <= 2^30", c10::str(p));
}

}  // namespace

void validate(const Graph& graph) {
  // Names end up in one-line error messages (a graph read from a file could hold anything).
  auto has_control = [](const std::string& s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
  };
  if (has_control(graph.source)) fail("graph source", "a name without control characters", "control characters");
  if (graph.nodes.empty() || graph.nodes[0].op != Op::Input)
    fail("graph '" + graph.source + "'", "node 0 to be the input", "something else");
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& n = graph.nodes[i];
    if (has_control(n.name))
      fail("graph node " + std::to_string(i), "a name without control characters", "control characters");
    const std::string subject = "graph node '" + n.name + "'";
    if (n.id != static_cast<int>(i)) fail(subject, "id " + std::to_string(i), std::to_string(n.id));
    if (i > 0 && n.op == Op::Input) fail(subject, "a single input node", "a second one");
    for (int in : n.inputs)
      if (in < 0 || in >= n.id) fail(subject, "inputs that precede it", "input id " + std::to_string(in));
    if (n.op == Op::Cat) {
      if (n.inputs.empty()) fail(subject, "at least one input", "none");
    } else if (n.inputs.size() != expected_arity(n.op)) {
      fail(subject, std::to_string(expected_arity(n.op)) + " inputs", std::to_string(n.inputs.size()));
    }
    for (const auto& [key, t] : n.params)
      if (!t.defined() || t.scalar_type() != at::kFloat)
        fail(subject + " parameter '" + key + "'", "a float32 tensor",
             t.defined() ? std::string(c10::toString(t.scalar_type())) : "none");
    switch (n.op) {
      case Op::Conv2d: {
        require_params(n, {"weight"});
        require_tensor(n, "weight", 4, -1);
        const int64_t out = n.param("weight").size(0);
        if (n.has_param("bias")) require_tensor(n, "bias", 1, out);
        require_ints(n, {"stride", "dilation"}, 2, 1);
        require_ints(n, {"padding"}, 2, 0);
        require_ints(n, {"groups"}, 1, 1);
        if (out % n.attrs.i("groups") != 0)
          fail(subject, "groups dividing the " + std::to_string(out) + " output channels",
               std::to_string(n.attrs.i("groups")) + " groups");
        break;
      }
      case Op::BatchNorm: {
        require_params(n, {"weight", "bias", "running_mean", "running_var"});
        const int64_t channels = n.param("weight").numel();
        for (const char* key : {"weight", "bias", "running_mean", "running_var"}) require_tensor(n, key, 1, channels);
        require_reals(n, {"eps"});
        break;
      }
      case Op::Linear:
        require_params(n, {"weight"});
        require_tensor(n, "weight", 2, -1);
        if (n.has_param("bias")) require_tensor(n, "bias", 1, n.param("weight").size(0));
        break;
      case Op::Clamp: require_reals(n, {"min", "max"}); break;
      case Op::Add: require_reals(n, {"alpha"}); break;
      case Op::Slice:
        require_ints(n, {"dim", "start", "end"}, 1, INT64_MIN);
        require_ints(n, {"step"}, 1, 1);
        break;
      case Op::Pad:
        require_attrs(n, {"pads"});
        require_reals(n, {"value"});
        if (n.attrs.list("pads").size() % 2 != 0)
          fail(subject + " attribute 'pads'", "an even number of integers", std::to_string(n.attrs.list("pads").size()));
        break;
      case Op::MaxPool2d:
        require_window(n, /*dilated=*/true);
        require_ints(n, {"ceil_mode"}, 1, 0);
        break;
      case Op::AvgPool2d:
        require_window(n, /*dilated=*/false);
        require_ints(n, {"ceil_mode", "count_include_pad", "divisor_override"}, 1, 0);
        break;
      case Op::AdaptiveAvgPool2d: require_ints(n, {"output_size"}, 2, 1); break;
      case Op::Flatten: require_ints(n, {"start_dim", "end_dim"}, 1, INT64_MIN); break;
      case Op::Reshape:
        require_attrs(n, {"shape", "shape_from_input"});
        if (n.attrs.list("shape_from_input").size() != n.attrs.list("shape").size())
          fail(subject + " attribute 'shape_from_input'", std::to_string(n.attrs.list("shape").size()) + " integers",
               std::to_string(n.attrs.list("shape_from_input").size()));
        break;
      case Op::Cat: require_ints(n, {"dim"}, 1, INT64_MIN); break;
      case Op::Mean:
        require_attrs(n, {"dims"});
        require_ints(n, {"keepdim"}, 1, 0);
        break;
      default: break;
    }
  }
  if (graph.output <= 0 || graph.output >= static_cast<int>(graph.nodes.size()))
    fail("graph '" + graph.source + "'", "an output node after the input", "id " + std::to_string(graph.output));
}

int64_t parameter_count(const Node& node) {
  int64_t count = 0;
  for (const auto& [key, tensor] : node.params)
    if (key != "running_mean" && key != "running_var") count += tensor.numel();
  return count;
}

}  // namespace dfq
