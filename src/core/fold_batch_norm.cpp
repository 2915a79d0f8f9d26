#include "core/fold_batch_norm.h"

#include <ATen/ATen.h>

namespace dfq {

Graph fold_batch_norms(const Graph& graph) {
  std::vector<int> readers(graph.nodes.size(), 0);
  for (const Node& n : graph.nodes)
    for (int in : n.inputs) readers[static_cast<size_t>(in)]++;
  readers[static_cast<size_t>(graph.output)]++;

  Graph out;
  out.source = graph.source;
  out.input_channels = graph.input_channels;
  std::vector<int> new_id(graph.nodes.size(), -1);
  for (const Node& n : graph.nodes) {
    if (n.op == Op::BatchNorm) {
      const Node& producer = graph.node(n.inputs[0]);
      if (producer.op == Op::Conv2d && readers[static_cast<size_t>(producer.id)] == 1) {
        Node& conv = out.nodes[static_cast<size_t>(new_id[static_cast<size_t>(producer.id)])];
        const at::Tensor k = n.param("weight") / at::sqrt(n.param("running_var") + n.attrs.f("eps"));
        const at::Tensor bias = conv.has_param("bias") ? conv.param("bias") : at::zeros_like(k);
        conv.params["weight"] = (conv.param("weight") * k.reshape({-1, 1, 1, 1})).contiguous();
        conv.params["bias"] = ((bias - n.param("running_mean")) * k + n.param("bias")).contiguous();
        new_id[static_cast<size_t>(n.id)] = conv.id;
        continue;
      }
    }
    Node copy = n;
    copy.id = static_cast<int>(out.nodes.size());
    for (int& in : copy.inputs) in = new_id[static_cast<size_t>(in)];
    new_id[static_cast<size_t>(n.id)] = copy.id;
    out.nodes.push_back(std::move(copy));
  }
  out.output = new_id[static_cast<size_t>(graph.output)];
  validate(out);
  return out;
}

}  // namespace dfq
