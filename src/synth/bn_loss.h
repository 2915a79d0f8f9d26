// The batch-norm statistics loss: how far the activations of synthetic images
// are from the statistics the trained model stored in its BN layers.
//
// For BN layer l with C channels, running mean m and running variance v, the
// statistics of its input x are taken over the batch and spatial positions
// (kBatch, DeepInversion/GENIE) or per image over spatial positions (kPerImage,
// ZeroQ; the distance is then averaged over the images):
//   mu_c = mean(x_c),  sigma_c = sqrt(var(x_c) + eps)  (biased variance, as BN)
//   s_c  = sqrt(v_c + eps)
// kL2:       d_l = sum_c (mu_c - m_c)^2 + (sigma_c - s_c)^2
// kRelative: d_l = mean_c ((mu_c - m_c)^2 + (sigma_c - s_c)^2) / s_c^2
//            (scale-free, so layers with large activations do not dominate)
// The loss is sum_l d_l.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/execute.h"
#include "core/graph.h"

namespace dfq {

enum class BnStatistics { kBatch, kPerImage };
enum class BnDistance { kL2, kRelative };

struct BnLossOptions {
  BnStatistics statistics = BnStatistics::kBatch;
  BnDistance distance = BnDistance::kL2;
};

// Parses "batch" | "per-image" and "l2" | "relative"; throws dfq::Error naming the option.
BnStatistics parse_bn_statistics(const std::string& text);
BnDistance parse_bn_distance(const std::string& text);
const char* to_string(BnStatistics statistics);
const char* to_string(BnDistance distance);

// An Observer for forward(): collects d_l for every BatchNorm node of the graph
// it was built for. Differentiable: total().backward() reaches the input.
// Throws dfq::Error from the constructor if the graph has no BatchNorm layer
// (data-free synthesis needs the stored statistics).
class BnStatsLoss : public Observer {
 public:
  BnStatsLoss(const Graph& graph, BnLossOptions options);

  // Runs each BatchNorm node itself, fused with its input statistics and with
  // the residual add and ReLU/clamp that follow it when they are its only
  // readers (see bn_with_stats.h), and records its term.
  bool compute_node(const Node& node, const std::vector<at::Tensor>& inputs, at::Tensor& output) override;
  void after_node(const Node&, const std::vector<at::Tensor>&, at::Tensor&) override {}

  void reset();                                    // forget the terms of the previous forward pass
  at::Tensor total() const;                        // scalar sum of the layer terms of the last pass
  std::vector<double> per_layer() const;           // detached d_l, in graph order
  const std::vector<std::string>& layer_names() const { return names_; }

 private:
  BnLossOptions options_;
  struct Layer {
    double eps = 0;
    at::Tensor stored_mean, stored_std;  // m and s above
    at::Tensor scale, shift;             // the layer as k * x + t
    double clamp_min = -INFINITY, clamp_max = INFINITY;  // a fused ReLU/ReLU6 that follows
  };
  std::vector<std::string> names_;
  std::vector<Layer> layers_;
  // How forward() computes each node under this observer (index: node id).
  struct Role {
    enum Kind { kNone, kBatchNorm, kDeferredBatchNorm, kFusedAdd, kPassThrough } kind = kNone;
    int slot = -1;     // kBatchNorm, kFusedAdd: the BN layer it computes
    int bn_side = 0;   // kFusedAdd: which input is the (deferred) BN's raw input
  };
  std::vector<Role> role_;
  at::Tensor weighted_distances() const;

  std::vector<int64_t> offsets_;  // layer l owns channels [offsets_[l], offsets_[l + 1])
  at::Tensor stored_mean_, stored_std_, eps_, weight_;  // per channel, all layers
  std::vector<at::Tensor> batch_mean_, batch_var_;      // per layer, from the last pass
};

}  // namespace dfq
