#include "synth/bn_loss.h"

#include <ATen/ATen.h>

#include "core/error.h"

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
    : options_(options), slot_of_node_(graph.nodes.size(), -1) {
  for (int id : graph.batch_norm_nodes()) {
    slot_of_node_[static_cast<size_t>(id)] = static_cast<int>(names_.size());
    names_.push_back(graph.node(id).name);
  }
  if (names_.empty())
    fail("model '" + graph.source + "'", "batch-norm layers whose running statistics synthesis can match",
         "none (use real calibration data for this model)");
  terms_.resize(names_.size());
}

void BnStatsLoss::reset() {
  for (at::Tensor& term : terms_) term.reset();
}

void BnStatsLoss::after_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor&) {
  const int slot = slot_of_node_[static_cast<size_t>(node.id)];
  if (slot < 0) return;
  const at::Tensor& x = inputs[0];
  const double eps = node.attrs.f("eps");
  const at::Tensor stored_mean = node.param("running_mean");
  const at::Tensor stored_std = at::sqrt(node.param("running_var") + eps);
  at::Tensor mean, var;
  if (options_.statistics == BnStatistics::kBatch) {
    // N x C x H x W (or N x C) -> per channel over every other dimension.
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
    std::tie(var, mean) = at::var_mean(x, dims, /*unbiased=*/false);
  } else {
    std::vector<int64_t> dims;
    for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
    if (dims.empty()) fail("--bn-stats per-image", "spatial BN inputs (N x C x H x W)", "layer " + node.name);
    std::tie(var, mean) = at::var_mean(x, dims, /*unbiased=*/false);  // N x C
  }
  const at::Tensor std = at::sqrt(var + eps);
  at::Tensor squared = (mean - stored_mean).pow(2) + (std - stored_std).pow(2);  // [N x] C
  if (options_.distance == BnDistance::kRelative) squared = squared / stored_std.pow(2);
  at::Tensor per_image = options_.distance == BnDistance::kL2 ? squared.sum(-1) : squared.mean(-1);
  terms_[static_cast<size_t>(slot)] = per_image.dim() == 0 ? per_image : per_image.mean();
}

at::Tensor BnStatsLoss::total() const {
  at::Tensor sum;
  for (const at::Tensor& term : terms_) {
    if (!term.defined()) continue;
    sum = sum.defined() ? sum + term : term;
  }
  if (!sum.defined()) fail("BN statistics loss", "a forward pass through the graph before total()", "none");
  return sum;
}

std::vector<double> BnStatsLoss::per_layer() const {
  std::vector<double> values;
  for (const at::Tensor& term : terms_) values.push_back(term.defined() ? term.item<double>() : 0.0);
  return values;
}

}  // namespace dfq
