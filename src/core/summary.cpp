#include "core/summary.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cstdio>
#include <sstream>

#include "core/execute.h"

namespace dfq {
namespace {

std::string join(const std::vector<int64_t>& values, const char* sep) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) out += (i ? sep : "") + std::to_string(values[i]);
  return out;
}

std::string describe(const Node& n) {
  const Attrs& a = n.attrs;
  char buffer[160];
  switch (n.op) {
    case Op::Conv2d: {
      const at::Tensor& w = n.param("weight");
      std::snprintf(buffer, sizeof buffer, "%lldx%lld s%s p%s d%s g%lld %lld->%lld",
                    static_cast<long long>(w.size(2)), static_cast<long long>(w.size(3)),
                    join(a.list("stride"), ",").c_str(), join(a.list("padding"), ",").c_str(),
                    join(a.list("dilation"), ",").c_str(), static_cast<long long>(a.i("groups")),
                    static_cast<long long>(w.size(1) * a.i("groups")), static_cast<long long>(w.size(0)));
      return buffer;
    }
    case Op::BatchNorm:
      std::snprintf(buffer, sizeof buffer, "%lld ch eps=%g", static_cast<long long>(n.param("running_mean").size(0)),
                    a.f("eps"));
      return buffer;
    case Op::Clamp: std::snprintf(buffer, sizeof buffer, "[%g, %g]", a.f("min"), a.f("max")); return buffer;
    case Op::Add: return a.f("alpha") == 1.0 ? "" : "alpha=" + std::to_string(a.f("alpha"));
    case Op::Slice:
      return "dim " + std::to_string(a.i("dim")) + " [" + std::to_string(a.i("start")) + ":" +
             (a.i("end") == INT64_MAX ? std::string() : std::to_string(a.i("end"))) + ":" + std::to_string(a.i("step")) +
             "]";
    case Op::Pad: return "pads " + join(a.list("pads"), ",");
    case Op::MaxPool2d:
    case Op::AvgPool2d:
      return "k" + join(a.list("kernel"), "x") + " s" + join(a.list("stride"), ",") + " p" +
             join(a.list("padding"), ",") + (a.i("ceil_mode") ? " ceil" : "");
    case Op::AdaptiveAvgPool2d: return "out " + join(a.list("output_size"), "x");
    case Op::Flatten: return "dims " + std::to_string(a.i("start_dim")) + ".." + std::to_string(a.i("end_dim"));
    case Op::Reshape: return "shape " + join(a.list("shape"), ",");
    case Op::Linear: {
      const at::Tensor& w = n.param("weight");
      return std::to_string(w.size(1)) + "->" + std::to_string(w.size(0));
    }
    case Op::Cat: return "dim " + std::to_string(a.i("dim"));
    case Op::Mean: return "dims " + join(a.list("dims"), ",") + (a.i("keepdim") ? " keepdim" : "");
    default: return "";
  }
}

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
    nodes.push_back({n.id, n.name, op_name(n.op), n.inputs, {}, parameter_count(n), describe(n)});
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
