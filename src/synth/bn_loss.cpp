#include "synth/bn_loss.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/error.h"
#include "synth/bn_with_stats.h"

namespace dfq {

BnStatistics parse_bn_statistics(const std::string& text) {
  if (text == "batch") return BnStatistics::kBatch;
  if (text == "per-image") return BnStatistics::kPerImage;
  fail("--bn-stats", "batch or per-image", "'" + text + "'");
}

BnDistance parse_bn_distance(const std::string& text) {
  if (text == "l2") return BnDistance::kL2;
  if (text == "relative") return BnDistance::kRelative;
  fail("--bn-distance", "l2 or relative", "'" + text + "'");
}

const char* to_string(BnStatistics statistics) {
  return statistics == BnStatistics::kBatch ? "batch" : "per-image";
}

const char* to_string(BnDistance distance) { return distance == BnDistance::kL2 ? "l2" : "relative"; }

BnStatsLoss::BnStatsLoss(const Graph& graph, BnLossOptions options)
    : options_(options) {
  std::vector<int> slot_of_node(graph.nodes.size(), -1);  // node id -> index into terms_, or -1
  for (int id : graph.batch_norm_nodes()) {
    slot_of_node[static_cast<size_t>(id)] = static_cast<int>(names_.size());
    const Node& node = graph.node(id);
    names_.push_back(node.name);
    Layer layer;
    layer.eps = node.attrs.f("eps");
    layer.stored_mean = node.param("running_mean");
    layer.stored_std = at::sqrt(node.param("running_var") + layer.eps);
    layer.scale = (node.param("weight") / layer.stored_std).contiguous();
    layer.shift = (node.param("bias") - layer.scale * layer.stored_mean).contiguous();
    layers_.push_back(std::move(layer));
  }
  // What usually follows a BN is computed inside its fused kernel: a residual
  // Add that is the BN output's only reader (the BN node then passes its raw
  // input on and the Add computes the layer), and a ReLU/clamp that is the only
  // reader of that result (it then passes its input through).
  std::vector<int> readers(graph.nodes.size(), 0);
  for (const Node& n : graph.nodes)
    for (int in : n.inputs) readers[static_cast<size_t>(in)]++;
  readers[static_cast<size_t>(graph.output)]++;
  auto sole_reader_of = [&](int id) { return readers[static_cast<size_t>(id)] == 1; };
  role_.assign(graph.nodes.size(), Role{});
  for (size_t id = 0; id < graph.nodes.size(); ++id)
    if (slot_of_node[id] >= 0) role_[id] = Role{Role::kBatchNorm, slot_of_node[id], 0};
  for (const Node& n : graph.nodes) {
    if (n.op != Op::Add || n.attrs.f("alpha") != 1.0 || n.inputs[0] == n.inputs[1]) continue;
    for (int side = 0; side < 2; ++side) {
      const int bn = n.inputs[static_cast<size_t>(side)];
      if (role_[static_cast<size_t>(bn)].kind != Role::kBatchNorm || !sole_reader_of(bn)) continue;
      role_[static_cast<size_t>(n.id)] = Role{Role::kFusedAdd, role_[static_cast<size_t>(bn)].slot, side};
      role_[static_cast<size_t>(bn)].kind = Role::kDeferredBatchNorm;
      break;
    }
  }
  for (const Node& n : graph.nodes) {
    if (n.op != Op::ReLU && n.op != Op::Clamp) continue;
    const int producer = n.inputs[0];
    const Role& from = role_[static_cast<size_t>(producer)];
    if ((from.kind != Role::kBatchNorm && from.kind != Role::kFusedAdd) || !sole_reader_of(producer)) continue;
    Layer& layer = layers_[static_cast<size_t>(from.slot)];
    layer.clamp_min = n.op == Op::ReLU ? 0.0 : n.attrs.f("min");
    layer.clamp_max = n.op == Op::ReLU ? INFINITY : n.attrs.f("max");
    role_[static_cast<size_t>(n.id)].kind = Role::kPassThrough;
  }
  if (names_.empty())
    fail("model '" + graph.source + "'", "batch-norm layers whose running statistics synthesis can match",
         "none (use real calibration data for this model)");
  // All layers' targets side by side, so the loss is a handful of ops on one
  // vector instead of a dozen small autograd ops per layer.
  std::vector<at::Tensor> means, stds, eps, weights;
  int64_t offset = 0;
  for (const Layer& layer : layers_) {
    const int64_t channels = layer.stored_mean.numel();
    means.push_back(layer.stored_mean);
    stds.push_back(layer.stored_std);
    eps.push_back(at::full({channels}, layer.eps));
    weights.push_back(options_.distance == BnDistance::kL2
                          ? at::ones({channels})
                          : 1.0 / (layer.stored_std.pow(2) * static_cast<double>(channels)));
    offsets_.push_back(offset);
    offset += channels;
  }
  offsets_.push_back(offset);
  stored_mean_ = at::cat(means).to(at::kFloat);
  stored_std_ = at::cat(stds).to(at::kFloat);
  eps_ = at::cat(eps).to(at::kFloat);
  weight_ = at::cat(weights).to(at::kFloat);
  batch_mean_.resize(layers_.size());
  batch_var_.resize(layers_.size());
}

void BnStatsLoss::reset() {
  for (at::Tensor& t : batch_mean_) t.reset();
  for (at::Tensor& t : batch_var_) t.reset();
}

bool BnStatsLoss::compute_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor& output) {
  const Role& role = role_[static_cast<size_t>(node.id)];
  switch (role.kind) {
    case Role::kNone: return false;
    case Role::kPassThrough:
    case Role::kDeferredBatchNorm: output = inputs[0]; return true;
    case Role::kBatchNorm:
    case Role::kFusedAdd: break;
  }
  const bool add = role.kind == Role::kFusedAdd;
  const at::Tensor& x = inputs[static_cast<size_t>(add ? role.bn_side : 0)];
  const at::Tensor residual = add ? inputs[static_cast<size_t>(1 - role.bn_side)] : at::Tensor();
  const Layer& layer = layers_[static_cast<size_t>(role.slot)];
  const bool per_image = options_.statistics == BnStatistics::kPerImage;
  if (per_image && x.dim() != 4)
    fail("--bn-stats per-image", "spatial BN inputs (N x C x H x W)", "layer " + names_[static_cast<size_t>(role.slot)]);
  BnWithStats bn =
      batch_norm_with_stats(x, layer.scale, layer.shift, per_image, layer.clamp_min, layer.clamp_max, residual);
  output = bn.output;
  batch_mean_[static_cast<size_t>(role.slot)] = bn.mean;
  batch_var_[static_cast<size_t>(role.slot)] = bn.var;
  return true;
}

// w_c * ((mu_c - m_c)^2 + (sigma_c - s_c)^2) for every channel of every layer,
// [N x] total channels.
at::Tensor BnStatsLoss::weighted_distances() const {
  for (const at::Tensor& t : batch_mean_)
    if (!t.defined()) fail("BN statistics loss", "a forward pass through the whole graph before the loss", "none");
  const at::Tensor mean = at::cat(batch_mean_, -1), var = at::cat(batch_var_, -1);
  return ((mean - stored_mean_).pow(2) + (at::sqrt(var + eps_) - stored_std_).pow(2)) * weight_;
}

at::Tensor BnStatsLoss::total() const {
  const at::Tensor d = weighted_distances();
  return d.dim() == 1 ? d.sum() : d.sum(-1).mean();  // per image: averaged over images
}

std::vector<double> BnStatsLoss::per_layer() const {
  at::NoGradGuard no_grad;
  at::Tensor d = weighted_distances();
  if (d.dim() == 2) d = d.mean(0);
  const at::Tensor values = d.to(at::kDouble).contiguous();
  std::vector<double> out;
  for (size_t l = 0; l + 1 < offsets_.size(); ++l)
    out.push_back(values.narrow(0, offsets_[l], offsets_[l + 1] - offsets_[l]).sum().item<double>());
  return out;
}

}  // namespace dfq
