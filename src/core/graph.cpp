#include "core/graph.h"

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

}  // namespace

void validate(const Graph& graph) {
  if (graph.nodes.empty() || graph.nodes[0].op != Op::Input)
    fail("graph '" + graph.source + "'", "node 0 to be the input", "something else");
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& n = graph.nodes[i];
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
    switch (n.op) {
      case Op::Conv2d:
        require_params(n, {"weight"});
        require_attrs(n, {"stride", "padding", "dilation", "groups"});
        break;
      case Op::BatchNorm: require_params(n, {"weight", "bias", "running_mean", "running_var"}); break;
      case Op::Linear: require_params(n, {"weight"}); break;
      case Op::Slice: require_attrs(n, {"dim", "start", "end", "step"}); break;
      case Op::Pad: require_attrs(n, {"pads"}); break;
      case Op::MaxPool2d: require_attrs(n, {"kernel", "stride", "padding", "dilation", "ceil_mode"}); break;
      case Op::AvgPool2d:
        require_attrs(n, {"kernel", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"});
        break;
      case Op::AdaptiveAvgPool2d: require_attrs(n, {"output_size"}); break;
      case Op::Flatten: require_attrs(n, {"start_dim", "end_dim"}); break;
      case Op::Reshape: require_attrs(n, {"shape", "shape_from_input"}); break;
      case Op::Cat: require_attrs(n, {"dim"}); break;
      case Op::Mean: require_attrs(n, {"dims", "keepdim"}); break;
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
