#include "quant/equalize.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace dfq {
namespace {

enum class Activation { kNone, kRelu, kRelu6, kOther };

struct Candidate {
  int node1 = 0, activation = -1, node2 = 0;  // activation -1: none
  Activation kind = Activation::kNone;
};

// Accumulated equalization scales of one layer, double: the effective weight
// is W[o, i, ...] * in_scale[i] / out_scale[o].
struct Scales {
  int64_t groups = 1;
  at::Tensor in_scale, out_scale;
};

Activation classify(const Node& n) {
  if (n.op == Op::ReLU) return Activation::kRelu;
  if (n.op != Op::Clamp || n.attrs.f("min") != 0.0) return Activation::kOther;
  return std::isinf(n.attrs.f("max")) ? Activation::kRelu : Activation::kRelu6;
}

bool is_layer(const Node& n) { return n.op == Op::Conv2d || n.op == Op::Linear; }
int64_t groups_of(const Node& n) { return n.op == Op::Conv2d ? n.attrs.i("groups") : 1; }
int64_t in_channels(const Node& n) { return n.param("weight").size(1) * groups_of(n); }

// For each node, its only reader, or -1 when it has none, several, or is the
// graph output (a value the caller sees must keep its scale).
std::vector<int> sole_readers(const Graph& g) {
  std::vector<int> count(g.nodes.size(), 0), reader(g.nodes.size(), -1);
  for (const Node& n : g.nodes)
    for (int in : n.inputs) count[static_cast<size_t>(in)]++, reader[static_cast<size_t>(in)] = n.id;
  count[static_cast<size_t>(g.output)]++;
  for (size_t i = 0; i < count.size(); ++i)
    if (count[i] != 1) reader[i] = -1;
  return reader;
}

// layer1 -> [activation] -> layer2 chains, in graph order of layer1; a
// candidate whose activation is kOther is returned too (reported as skipped).
std::vector<Candidate> find_candidates(const Graph& g) {
  const std::vector<int> reader = sole_readers(g);
  std::vector<Candidate> out;
  for (const Node& n : g.nodes) {
    if (!is_layer(n)) continue;
    Candidate c;
    c.node1 = n.id;
    int next = reader[static_cast<size_t>(n.id)];
    if (next < 0) continue;
    if (g.node(next).op == Op::ReLU || g.node(next).op == Op::Clamp) {
      c.activation = next;
      c.kind = classify(g.node(next));
      next = reader[static_cast<size_t>(next)];
      if (next < 0) continue;
    }
    const Node& second = g.node(next);
    if (second.op != n.op || in_channels(second) != n.param("weight").size(0)) continue;
    c.node2 = next;
    out.push_back(c);
  }
  return out;
}

// The weight as [G, O/G, I/G, K] in double (K: kernel taps, 1 for Linear).
at::Tensor grouped(const at::Tensor& w, int64_t groups) {
  return w.to(at::kDouble).reshape({groups, w.size(0) / groups, w.size(1), -1});
}

at::Tensor effective_weight(const Node& n, const Scales& s) {
  const at::Tensor w = grouped(n.param("weight"), s.groups);
  return w * s.in_scale.reshape({s.groups, 1, -1, 1}) / s.out_scale.reshape({s.groups, -1, 1, 1});
}

at::Tensor output_ranges(const at::Tensor& grouped_weight) {
  return grouped_weight.abs().amax({2, 3}).reshape({-1});
}

at::Tensor input_ranges(const at::Tensor& grouped_weight) {
  return grouped_weight.abs().amax({1, 3}).reshape({-1});
}

// s = sqrt(r1 / r2), 1 where either range is zero (or not finite).
at::Tensor equalizing_scales(const at::Tensor& r1, const at::Tensor& r2) {
  const at::Tensor s = at::sqrt(r1 / r2);
  return at::where((r1 > 0) & (r2 > 0) & at::isfinite(s), s, at::ones_like(s));
}

// One Gauss-Seidel sweep over the pairs; returns max |s - 1|.
double sweep(const Graph& g, const std::vector<Candidate>& pairs, std::map<int, Scales>& scales) {
  double change = 0.0;
  for (const Candidate& p : pairs) {
    Scales& s1 = scales.at(p.node1);
    Scales& s2 = scales.at(p.node2);
    const at::Tensor s = equalizing_scales(output_ranges(effective_weight(g.node(p.node1), s1)),
                                           input_ranges(effective_weight(g.node(p.node2), s2)));
    s1.out_scale = s1.out_scale * s;
    s2.in_scale = s2.in_scale * s;
    change = std::max(change, (s - 1).abs().max().item<double>());
  }
  return change;
}

// Spread and utilization of the output-channel ranges (equalize.h).
std::pair<double, double> spread_of(const at::Tensor& weight) {
  const at::Tensor r = weight.to(at::kDouble).abs().reshape({weight.size(0), -1}).amax(1);
  const double max = r.max().item<double>();
  const at::Tensor nonzero = r.masked_select(r > 0);
  if (nonzero.numel() == 0) return {1.0, 1.0};
  return {max / nonzero.min().item<double>(), r.mean().item<double>() / max};
}

// Writes the accumulated scales into the weights and biases (new tensors).
void apply_scales(Node& n, const Scales& s) {
  const at::Tensor& w = n.param("weight");
  n.params["weight"] = effective_weight(n, s).reshape(w.sizes()).to(at::kFloat).contiguous();
  if (n.has_param("bias")) n.params["bias"] = (n.param("bias").to(at::kDouble) / s.out_scale).to(at::kFloat).contiguous();
}

bool has_padding(const Node& n) {
  if (n.op != Op::Conv2d) return false;
  const std::vector<int64_t>& pad = n.attrs.list("padding");
  return std::any_of(pad.begin(), pad.end(), [](int64_t p) { return p != 0; });
}

// Why a pair gets no absorption, or "" when it does.
std::string absorption_blocker(const Graph& g, const Candidate& p, const EqualizeOptions& o,
                               const std::map<std::string, ChannelStatistics>& statistics) {
  if (!o.bias_absorption) return "off";
  if (p.activation < 0) return "no relu";
  if (statistics.count(g.node(p.node1).name) == 0) return "no statistics";
  if (has_padding(g.node(p.node2)) && !o.absorb_through_padding) return "padding";
  return "";
}

// Moves c = max(0, mean - k std) (in equalized units: / out_scale) from
// layer1's bias into layer2's (equalize.h).
void absorb(Graph& g, const Candidate& p, const ChannelStatistics& st, const Scales& s1, const EqualizeOptions& o,
            EqualizedPair& report) {
  Node& n1 = g.nodes[static_cast<size_t>(p.node1)];
  Node& n2 = g.nodes[static_cast<size_t>(p.node2)];
  const int64_t channels = n1.param("weight").size(0);
  const at::Tensor c = ((st.mean.to(at::kDouble) - o.absorb_sigmas * st.std.to(at::kDouble).abs()) / s1.out_scale)
                           .clamp_min(0.0);
  report.absorbed_channels = (c > 0).sum().item<int64_t>();
  report.absorbed_mean = c.mean().item<double>();
  report.absorption = report.absorbed_channels > 0 ? "absorbed" : "nothing to absorb";
  if (report.absorbed_channels == 0) return;
  const int64_t groups = groups_of(n2);
  const at::Tensor taps = grouped(n2.param("weight"), groups).sum(3);  // [G, O/G, I/G]
  const at::Tensor shift = (taps * c.reshape({groups, 1, -1})).sum(2).reshape({-1});
  const at::Tensor b1 = n1.has_param("bias") ? n1.param("bias").to(at::kDouble) : at::zeros({channels}, at::kDouble);
  const at::Tensor b2 = n2.has_param("bias") ? n2.param("bias").to(at::kDouble) : at::zeros_like(shift);
  n1.params["bias"] = (b1 - c).to(at::kFloat).contiguous();
  n2.params["bias"] = (b2 + shift).to(at::kFloat).contiguous();
}

// Before anything is changed: statistics must cover every channel.
void check_statistics(const Graph& g, const std::map<std::string, ChannelStatistics>& statistics) {
  for (const auto& [name, st] : statistics)
    for (const Node& n : g.nodes) {
      if (n.name != name || !is_layer(n)) continue;
      const int64_t channels = n.param("weight").size(0);
      if (!st.mean.defined() || !st.std.defined() || st.mean.numel() != channels || st.std.numel() != channels)
        fail("statistics of " + name, std::to_string(channels) + " means and deviations",
             std::to_string(st.mean.defined() ? st.mean.numel() : 0) + " and " +
                 std::to_string(st.std.defined() ? st.std.numel() : 0));
    }
}

void check(const EqualizeOptions& o) {
  if (o.max_iterations < 1) fail("equalization max_iterations", "1 or more", std::to_string(o.max_iterations));
  if (!(o.tolerance > 0)) fail("equalization tolerance", "a positive number", std::to_string(o.tolerance));
  if (!(o.absorb_sigmas >= 0)) fail("equalization absorb_sigmas", "0 or more", std::to_string(o.absorb_sigmas));
}

// Keeps the candidates that can be equalized; records the others as skipped.
std::vector<Candidate> eligible(const Graph& g, const std::vector<Candidate>& candidates, const EqualizeOptions& o,
                                EqualizeReport& report) {
  std::vector<Candidate> pairs;
  for (const Candidate& c : candidates) {
    const std::string what = g.node(c.node1).name + " -> " + g.node(c.node2).name + ": ";
    if (c.kind == Activation::kOther)
      report.skipped.push_back(what + "activation " + g.node(c.activation).name + " is not positively homogeneous");
    else if (c.kind == Activation::kRelu6 && !o.relu6_to_relu)
      report.skipped.push_back(what + "ReLU6 " + g.node(c.activation).name + " between (relu6_to_relu off)");
    else
      pairs.push_back(c);
  }
  return pairs;
}

void summarize(EqualizeReport& report) {
  std::vector<double> before, after;
  for (const LayerSpread& l : report.layers)
    if (l.outputs_equalized) before.push_back(l.spread_before), after.push_back(l.spread_after);
  if (before.empty()) return;
  report.max_spread_before = *std::max_element(before.begin(), before.end());
  report.max_spread_after = *std::max_element(after.begin(), after.end());
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
  };
  report.median_spread_before = median(before);
  report.median_spread_after = median(after);
}

// Unit scales for every layer of a pair.
std::map<int, Scales> unit_scales(const Graph& g, const std::vector<Candidate>& pairs) {
  std::map<int, Scales> scales;
  const auto options = at::TensorOptions().dtype(at::kDouble);
  for (const Candidate& p : pairs)
    for (int id : {p.node1, p.node2}) {
      const Node& n = g.node(id);
      scales.emplace(id, Scales{groups_of(n), at::ones({in_channels(n)}, options),
                                at::ones({n.param("weight").size(0)}, options)});
    }
  return scales;
}

// Sweeps until converged or out of iterations.
void iterate(const Graph& g, const std::vector<Candidate>& pairs, const EqualizeOptions& o,
             std::map<int, Scales>& scales, EqualizeReport& report) {
  report.converged = pairs.empty();
  while (!pairs.empty() && report.iterations < o.max_iterations) {
    report.iterations++;
    report.last_change = sweep(g, pairs, scales);
    if (report.last_change <= o.tolerance) {
      report.converged = true;
      return;
    }
  }
}

// Writes the scales into the graph, recording each layer's spread around it.
void apply(Graph& g, const std::vector<Candidate>& pairs, const std::map<int, Scales>& scales,
           EqualizeReport& report) {
  for (const auto& [id, s] : scales) {
    Node& n = g.nodes[static_cast<size_t>(id)];
    const bool rows = std::any_of(pairs.begin(), pairs.end(), [id = id](const Candidate& p) { return p.node1 == id; });
    LayerSpread spread{n.name, id, rows};
    std::tie(spread.spread_before, spread.utilization_before) = spread_of(n.param("weight"));
    apply_scales(n, s);
    std::tie(spread.spread_after, spread.utilization_after) = spread_of(n.param("weight"));
    report.layers.push_back(spread);
  }
}

// After equalization: the pair's ReLU6 becomes a ReLU, then bias absorption.
EqualizedPair finish_pair(Graph& g, const Candidate& p, const EqualizeOptions& o,
                          const std::map<std::string, ChannelStatistics>& statistics, const Scales& s1) {
  EqualizedPair pair{g.node(p.node1).name, p.activation < 0 ? "" : g.node(p.activation).name, g.node(p.node2).name,
                     p.node1, p.node2};
  if (p.kind == Activation::kRelu6) {
    Node& act = g.nodes[static_cast<size_t>(p.activation)];
    act.op = Op::ReLU;
    act.attrs = Attrs{};
    pair.relu6_replaced = true;
  }
  pair.absorption = absorption_blocker(g, p, o, statistics);
  if (pair.absorption.empty()) absorb(g, p, statistics.at(pair.layer1), s1, o, pair);
  return pair;
}

}  // namespace

std::map<std::string, ChannelStatistics> folded_batch_norm_statistics(const Graph& original) {
  // The folding rule of fold_batch_norms(): a BatchNorm whose conv it alone reads.
  const std::vector<int> reader = sole_readers(original);
  std::map<std::string, ChannelStatistics> out;
  for (const Node& n : original.nodes) {
    if (n.op != Op::BatchNorm) continue;
    const Node& producer = original.node(n.inputs[0]);
    if (producer.op == Op::Conv2d && reader[static_cast<size_t>(producer.id)] == n.id)
      out[producer.name] = ChannelStatistics{n.param("bias"), n.param("weight").abs()};
  }
  return out;
}

EqualizeReport equalize_cross_layer(Graph& g, const EqualizeOptions& o,
                                    const std::map<std::string, ChannelStatistics>& statistics) {
  check(o);
  check_statistics(g, statistics);
  const auto start = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;
  EqualizeReport report;
  const std::vector<Candidate> pairs = eligible(g, find_candidates(g), o, report);
  std::map<int, Scales> scales = unit_scales(g, pairs);
  iterate(g, pairs, o, scales, report);
  apply(g, pairs, scales, report);
  for (const Candidate& p : pairs) report.pairs.push_back(finish_pair(g, p, o, statistics, scales.at(p.node1)));
  summarize(report);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace dfq
