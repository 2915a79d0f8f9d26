#include "core/summary.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cstdio>
#include <sstream>

#include "core/execute.h"
#include "core/op_util.h"

namespace dfq {
namespace {

class ShapeRecorder : public Observer {
 public:
  explicit ShapeRecorder(std::vector<NodeSummary>& nodes) : nodes_(nodes) {}
  void after_node(const Node& node, const std::vector<at::Tensor>&, at::Tensor& output) override {
    nodes_[static_cast<size_t>(node.id)].output_shape = output.sizes().vec();
  }

 private:
  std::vector<NodeSummary>& nodes_;
};

}  // namespace

std::vector<NodeSummary> summarize(const Graph& graph, const std::vector<int64_t>& input_shape) {
  std::vector<NodeSummary> nodes;
  for (const Node& n : graph.nodes)
    nodes.push_back({n.id, n.name, op_name(n.op), n.inputs, {}, parameter_count(n), n.op->describe ? n.op->describe(n) : std::string()});
  if (!input_shape.empty()) {
    c10::InferenceMode guard;
    ShapeRecorder recorder(nodes);
    forward(graph, at::zeros(input_shape), &recorder);
  }
  return nodes;
}

std::string format_summary(const Graph& graph, const std::vector<NodeSummary>& nodes) {
  std::ostringstream out;
  char line[320];
  std::snprintf(line, sizeof line, "%4s  %-28s %-20s %-12s %-16s %10s  %s\n", "id", "name", "op", "inputs", "output",
                "params", "detail");
  out << line;
  int64_t total = 0;
  for (const NodeSummary& n : nodes) {
    std::string inputs;
    for (int in : n.inputs) inputs += (inputs.empty() ? "" : ",") + std::to_string(in);
    std::snprintf(line, sizeof line, "%4d  %-28s %-20s %-12s %-16s %10lld  %s\n", n.id, n.name.c_str(), n.op.c_str(),
                  inputs.c_str(), join(n.output_shape, "x").c_str(), static_cast<long long>(n.parameters),
                  n.detail.c_str());
    out << line;
    total += n.parameters;
  }
  const std::vector<int> bn = graph.batch_norm_nodes();
  out << "nodes: " << nodes.size() << "  parameters: " << total << "  output: node " << graph.output
      << "  input channels: " << graph.input_channels << "\n";
  out << "batch-norm layers (" << bn.size() << "):";
  for (int id : bn) out << " " << graph.node(id).name;
  out << "\n";
  return out.str();
}

}  // namespace dfq
