#include "core/passes.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/zeros_like.h>

namespace dfq {

Readers readers_of(const Graph& graph) {
  Readers r;
  r.count.assign(graph.nodes.size(), 0);
  r.sole.assign(graph.nodes.size(), -1);
  for (const Node& n : graph.nodes)
    for (int in : n.inputs) {
      const size_t i = static_cast<size_t>(in);
      r.sole[i] = ++r.count[i] == 1 ? n.id : -1;
    }
  const size_t out = static_cast<size_t>(graph.output);
  r.sole[out] = -1;
  r.count[out]++;
  return r;
}

bool folds_into_producer(const Graph& graph, const Readers& readers, int bn) {
  const Node& producer = graph.node(graph.node(bn).inputs[0]);
  return producer.op == Op::Conv2d && readers.count[static_cast<size_t>(producer.id)] == 1;
}

Graph fold_batch_norms(const Graph& graph) {
  const Readers readers = readers_of(graph);
  Graph out;
  out.source = graph.source;
  out.source_sha256 = graph.source_sha256;
  out.input_channels = graph.input_channels;
  std::vector<int> new_id(graph.nodes.size(), -1);
  for (const Node& n : graph.nodes) {
    if (n.op != Op::BatchNorm) {
      Node copy = n;
      copy.id = static_cast<int>(out.nodes.size());
      for (int& in : copy.inputs) in = new_id[static_cast<size_t>(in)];
      new_id[static_cast<size_t>(n.id)] = copy.id;
      out.nodes.push_back(std::move(copy));
      continue;
    }
    const at::Tensor k = n.param("weight") / at::sqrt(n.param("running_var") + n.attrs.f("eps"));
    const int producer = new_id[static_cast<size_t>(n.inputs[0])];
    if (folds_into_producer(graph, readers, n.id)) {
      Node& conv = out.nodes[static_cast<size_t>(producer)];
      const at::Tensor bias = conv.has_param("bias") ? conv.param("bias") : at::zeros_like(k);
      conv.params["weight"] = (conv.param("weight") * k.reshape({-1, 1, 1, 1})).contiguous();
      conv.params["bias"] = ((bias - n.param("running_mean")) * k + n.param("bias")).contiguous();
      new_id[static_cast<size_t>(n.id)] = conv.id;
      continue;
    }
    Node conv;
    conv.id = static_cast<int>(out.nodes.size());
    conv.name = n.name;
    conv.op = Op::Conv2d;
    conv.inputs = {producer};
    conv.attrs.ints = {{"stride", {1, 1}}, {"padding", {0, 0}}, {"dilation", {1, 1}}, {"groups", {k.size(0)}}};
    conv.params["weight"] = k.reshape({-1, 1, 1, 1}).contiguous();
    conv.params["bias"] = (n.param("bias") - n.param("running_mean") * k).contiguous();
    new_id[static_cast<size_t>(n.id)] = conv.id;
    out.nodes.push_back(std::move(conv));
  }
  out.output = new_id[static_cast<size_t>(graph.output)];
  validate(out);
  return out;
}

int absorbed_clamp(const Graph& graph, const Readers& readers, int id) {
  const size_t i = static_cast<size_t>(id);
  if (!graph.node(id).op->absorbs_clamp || readers.count[i] != 1 || readers.sole[i] < 0) return -1;
  return graph.node(readers.sole[i]).op->role == QuantRole::kClamp ? readers.sole[i] : -1;
}

std::vector<int> accumulator_inputs(const Graph& graph, const Readers& readers) {
  std::vector<int> result(graph.nodes.size(), -1);
  const int out = graph.output;
  for (const Node& n : graph.nodes) {
    if (n.op != Op::Add || n.id == out) continue;
    const size_t id = static_cast<size_t>(n.id);
    if (readers.count[id] == 1 && readers.sole[id] == out && graph.node(out).op->role == QuantRole::kClamp)
      continue;  // a float tail
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const int in = n.inputs[k];
      const QuantRole role = graph.node(in).op->role;
      if (role == QuantRole::kWeighted && in != out && readers.count[static_cast<size_t>(in)] == 1) {
        result[id] = static_cast<int>(k);
        break;
      }
    }
  }
  return result;
}

}  // namespace dfq
