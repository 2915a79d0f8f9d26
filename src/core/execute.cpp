#include "core/execute.h"

#include <ATen/ops/relu.h>
#include <ATen/core/grad_mode.h>

#include <sstream>

#include "core/error.h"

namespace dfq {
namespace {

std::string shape_string(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

}  // namespace

at::Tensor run_node(const Node& node, const std::vector<at::Tensor>& in) { return node.op->run(node, in); }

void use_channels_last(Graph& graph) {
  for (Node& node : graph.nodes)
    if (node.op == Op::Conv2d) node.params["weight"] = node.param("weight").contiguous(at::MemoryFormat::ChannelsLast);
}

at::Tensor to_channels_last(const at::Tensor& input) {
  return input.dim() == 4 ? input.contiguous(at::MemoryFormat::ChannelsLast) : input;
}

at::Tensor forward(const Graph& graph, const at::Tensor& input, Observer* observer) {
  if (input.dim() != 4 || (graph.input_channels > 0 && input.size(1) != graph.input_channels))
    fail("model input", "N x " + std::to_string(graph.input_channels) + " x H x W", shape_string(input));
  const std::vector<int> last_use = graph.last_uses();
  std::vector<at::Tensor> values(graph.nodes.size());
  std::vector<at::Tensor> args;
  for (const Node& node : graph.nodes) {
    args.clear();
    for (int id : node.inputs) args.push_back(values[static_cast<size_t>(id)]);
    at::Tensor out;
    if (node.op == Op::Input) {
      out = input;
    } else if (node.op == Op::ReLU && observer == nullptr && !at::GradMode::is_enabled() &&
               last_use[static_cast<size_t>(node.inputs[0])] == node.id && node.inputs[0] != 0 &&
               args[0].use_count() == 2 && args[0].storage().use_count() == 1) {
      // Nothing else can see the input (no observer, no autograd, last reader, not
      // the caller's tensor, no view shares its storage): rectify in place.
      out = at::relu_(args[0]);
    } else if (observer == nullptr || !observer->compute_node(node, args, out)) {
      try {
        out = run_node(node, args);
      } catch (const c10::Error& e) {
        std::string shapes;
        for (const at::Tensor& t : args) shapes += (shapes.empty() ? "" : ", ") + shape_string(t);
        fail("node '" + node.name + "' (" + op_name(node.op) + ")", "inputs it can compute on",
             shapes + ": " + std::string(e.what_without_backtrace()).substr(0, 200));
      }
    }
    if (observer) observer->after_node(node, args, out);
    values[static_cast<size_t>(node.id)] = std::move(out);
    for (int id : node.inputs)
      if (last_use[static_cast<size_t>(id)] == node.id) values[static_cast<size_t>(id)].reset();
  }
  return values[static_cast<size_t>(graph.output)];
}

}  // namespace dfq
