#include "core/graph.h"

#include <ATen/core/Tensor.h>
#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cstdint>

#include "core/error.h"

namespace dfq {

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
    const int count = static_cast<int>(n.inputs.size());
    if (count < n.op->min_inputs || (n.op->max_inputs >= 0 && count > n.op->max_inputs))
      fail(subject + " (" + n.op->name + ")",
           n.op->max_inputs < 0 ? "at least " + std::to_string(n.op->min_inputs) + " inputs"
           : n.op->min_inputs == n.op->max_inputs
               ? std::to_string(n.op->min_inputs) + " inputs"
               : std::to_string(n.op->min_inputs) + " to " + std::to_string(n.op->max_inputs) + " inputs",
           std::to_string(count));
    for (const auto& [key, t] : n.params)
      if (!t.defined() || t.scalar_type() != at::kFloat)
        fail(subject + " parameter '" + key + "'", "a float32 tensor",
             t.defined() ? std::string(c10::toString(t.scalar_type())) : "none");
    if (n.op->validate) n.op->validate(n);
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
