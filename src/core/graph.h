// The model graph: a topologically ordered vector of nodes with integer ids.
//
// Every stage after import (synthesis, quantization, evaluation) works on this
// graph, never on TorchScript. Node 0 is the network input; `Graph::output` is
// the id of the node whose value the network returns. A node reads the values
// of `inputs` (ids of earlier nodes) and produces exactly one tensor.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/op.h"

namespace dfq {

// Stable lower-case name of an op ("conv2d", "batch_norm", ...), used in
// reports and files.
inline const char* op_name(const OpDef* op) { return op->name; }

// Named integer-list and real attributes. Accessors throw dfq::Error naming
// the attribute when it is missing, so a malformed graph fails loudly.
struct Attrs {
  std::map<std::string, std::vector<int64_t>> ints;
  std::map<std::string, double> reals;

  const std::vector<int64_t>& list(const std::string& key) const;
  int64_t i(const std::string& key) const;  // single-element int list
  double f(const std::string& key) const;
};

struct Node {
  int id = 0;
  std::string name;  // unique; the module scope it came from, e.g. "layer1.0.conv1"
  const OpDef* op = Op::Input;  // op.h: everything about it
  std::vector<int> inputs;
  Attrs attrs;
  std::map<std::string, at::Tensor> params;  // float32, contiguous

  bool has_param(const std::string& key) const { return params.count(key) != 0; }
  const at::Tensor& param(const std::string& key) const;
  // The parameter, or an undefined tensor when the node has none by that name.
  at::Tensor optional_param(const std::string& key) const;
};

struct Graph {
  std::vector<Node> nodes;  // nodes[i].id == i; inputs of a node precede it
  int output = 0;
  int64_t input_channels = 0;  // channels the first layer expects
  std::string source;          // file the graph was imported from
  std::string source_sha256;   // SHA-256 of that file (hex; empty in artifacts older than the field)

  const Node& node(int id) const { return nodes.at(static_cast<size_t>(id)); }
  // Width of the network output (out_features of the last Linear or channels of
  // the last Conv2d on the output path); 0 if it cannot be derived statically.
  int64_t output_width() const;
  // Ids of the BatchNorm nodes, in execution order.
  std::vector<int> batch_norm_nodes() const;
  // For each node, the id of the last node that reads it (its own id if none);
  // the output node is marked as read by nodes.size().
  std::vector<int> last_uses() const;
};

// Checks the structural invariants above (ids, topological order, arities,
// required attributes and params) and what the engines index or divide by
// (attribute counts and ranges, float32 params of the right rank, names without
// control characters); throws dfq::Error naming the bad node.
void validate(const Graph& graph);

// Number of scalar parameters a node owns (BN running statistics excluded).
int64_t parameter_count(const Node& node);

}  // namespace dfq
