// Mixed-precision bit allocation as an integer linear program (HAWQ-V3; Hubara
// et al., "Improving post training neural quantization"): pick one (weight,
// activation) bit-width option per layer so that the summed sensitivity (the
// predicted loss of accuracy, assumed additive over layers) is smallest while
// the model's size, BOPs and latency stay within budgets.
//
// With a binary x_{l,c} = 1 when layer l takes option c:
//
//   minimize    sum_{l,c} sensitivity_{l,c} x_{l,c}
//   subject to  sum_c x_{l,c} = 1                          for every layer l
//               sum_{l,c} cost^k_{l,c} x_{l,c} <= budget^k   for every finite budget k
//               sum_{c: a_{f,c} = a} x_{f,c} = sum_{c: a_{l,c} = a} x_{l,c}
//                   for every activation group, its first layer f, every other
//                   layer l of it and every activation bit width a
//               x_{l,c} in {0, 1}
//
// Activation groups couple layers that read the same quantized tensor (a
// block input read by a convolution and a shortcut convolution): that tensor
// has one bit width, so they must all pick options of equal activation_bits.
//
// A multiple-choice knapsack: greedy or Lagrangian rules can miss the optimum,
// so GLPK's branch-and-cut solves it exactly: within every budget as summed in
// double in layer order (GLPK's own tolerances never let an allocation over a
// budget through), optimal up to GLPK's pruning tolerance (tightened to about
// 1e-12 of the largest sensitivity). ResNet-56 (57 layers x 8-14 options)
// takes 20-60 ms per solve.
//
// Not thread-safe: GLPK keeps per-environment state (its terminal switch, its
// memory), which is per thread only when GLPK was built with thread-local
// storage (Debian's is, glp_config("TLS"), but nothing here relies on it).
// Call allocate_bits / pareto_by_size from one thread at a time.
#pragma once

#include <cmath>
#include <string>
#include <vector>

namespace dfq {

// One way to quantize one layer. Every number is finite and >= 0.
struct BitOption {
  int weight_bits = 8, activation_bits = 8;  // labels only: the solver reads the numbers below
  double sensitivity = 0;  // lower is better
  double size_bits = 0, bops = 0, latency = 0;
};

struct LayerBitOptions {
  std::string name;  // names the layer in error messages
  std::vector<BitOption> options;
  int activation_group = -1;  // layers with the same id >= 0 pick equal activation_bits; < 0: uncoupled
};

// Upper limits on the summed costs; +infinity means no constraint.
struct BitBudget {
  double size_bits = INFINITY, bops = INFINITY, latency = INFINITY;
};

// The chosen option per layer and its totals (summed from the options, not
// read back from the solver).
struct BitAllocation {
  std::vector<int> choice;  // per layer, an index into its options
  double sensitivity = 0, size_bits = 0, bops = 0, latency = 0;
};

// The allocation of least summed sensitivity within `budget` and the
// activation groups. Throws dfq::Error when a layer has no options, a number
// is negative or NaN, the layers of a group share no activation bit width, or
// no allocation fits (naming the smallest achievable size, BOPs or latency).
BitAllocation allocate_bits(const std::vector<LayerBitOptions>& layers, const BitBudget& budget);

struct ParetoRow {
  double size_budget = 0;
  bool feasible = false;     // false: no allocation fits; `allocation` is empty
  BitAllocation allocation;
};

// allocate_bits for each size budget (non-decreasing) with the BOPs and
// latency limits of `other_limits` (its size_bits is ignored): the
// size/sensitivity trade-off. Budgets that nothing fits are rows with
// feasible = false, not errors; invalid input throws as allocate_bits.
std::vector<ParetoRow> pareto_by_size(const std::vector<LayerBitOptions>& layers,
                                      const std::vector<double>& size_budgets, const BitBudget& other_limits);

}  // namespace dfq
