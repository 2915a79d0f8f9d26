// Direct synthesis: optimize the input pixels themselves (ZeroQ, DeepInversion).
#pragma once

#include <cstdint>

#include "core/graph.h"
#include "core/shard.h"
#include "eval/preprocess.h"
#include "synth/bn_loss.h"
#include "synth/synth_set.h"

namespace dfq {

struct DirectOptions {
  int64_t count = 256;    // images to produce, in batches of `batch`
  int64_t batch = 64;
  int64_t iterations = 500;  // Adam steps per batch
  double lr = 0.25;       // peak learning rate; cosine decay to 0 over the iterations
  LabelMode labels = LabelMode::kBalanced;
  double ce_weight = 1.0;    // cross-entropy towards the target labels (balanced only)
  double tv_weight = 0.0;    // total-variation prior (mean absolute neighbour difference)
  double l2_weight = 0.0;    // L2 prior on the normalized pixels (mean square)
  int jitter = 2;            // random shift of up to +-jitter pixels per step (0: off)
  bool flip = true;          // random horizontal flip per step
  BnLossOptions bn;
  uint64_t seed = 0;
  Shard shard;               // compute only the batches k with k mod shard.count == shard.index
  bool quiet = false;
};

// Batch k holds images k * batch .. min((k + 1) * batch, count) - 1 and draws
// all its randomness (initial noise, jitter, flips) from one generator seeded
// with direct_batch_seed(seed, k). Nothing else carries from batch to batch
// (each has its own Adam state; the BN loss is reset every step), so a batch's
// images depend only on (options, k, thread count, CPU), and any subset of the
// batches can be computed separately: the basis of dfq synth --shard.
uint64_t direct_batch_seed(uint64_t seed, int64_t batch);
int64_t direct_batches(const DirectOptions& options);  // ceil(count / batch)

// Runs direct synthesis for a graph with BN layers. Images start as Gaussian
// noise in the normalized space and are kept inside the valid pixel range
// ([0, 1] before normalization by `pre`) after every step. Deterministic for a
// given seed and thread count. Progress (batch, step, loss, ETA) on stderr.
// With a shard, the set holds the shard's batches only, in batch order, and the
// report's first-batch figures (initial loss, curve) are of its first batch.
SynthSet synthesize_direct(const Graph& graph, const Preprocess& pre, int64_t height, int64_t width,
                           const DirectOptions& options, SynthReport& report);

}  // namespace dfq
