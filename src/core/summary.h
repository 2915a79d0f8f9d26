// A per-node description of a graph, for `dfq info` and reports.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/graph.h"

namespace dfq {

struct NodeSummary {
  int id = 0;
  std::string name;
  std::string op;
  std::vector<int> inputs;
  std::vector<int64_t> output_shape;  // empty if shapes were not computed
  int64_t parameters = 0;
  std::string detail;  // op-specific, e.g. "3x3 s2 p1 g1 16->32"
};

// Describes every node. When `input_shape` (N, C, H, W) is non-empty, runs one
// float forward pass on zeros of that shape to record output shapes.
std::vector<NodeSummary> summarize(const Graph& graph, const std::vector<int64_t>& input_shape);

// A fixed-width table, one line per node, followed by totals and the BN layers.
std::string format_summary(const Graph& graph, const std::vector<NodeSummary>& nodes);

}  // namespace dfq
