// dfq synth --shard I/N and --merge: what a shard folder records beside its
// images, and the merge of a run's shard folders into the set an unsharded run
// writes. Shard I computes the direct-synthesis batches k with k mod N == I
// (core/shard.h); batch k depends only on the run's options and k
// (synth/direct.h), so the merged images and labels are the unsharded run's,
// bit for bit, when every shard ran with the same --threads on the same CPU.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/shard.h"
#include "synth/synth_set.h"

namespace dfq {

// DIR/shard.json of a shard folder (DIR/images.pt holds the shard's images, its
// batches in batch order; DIR/synth.json is the usual report of those images):
// {"format": "dfq-synth-shard", "version": 1,
//  "run": every input that shapes the images (model_sha256, method, count,
//         batch, iterations, lr, labels, loss weights, augmentation, BN loss
//         options, preprocessing, height, width, seed, threads, dfq_version),
//  "model": the model path as given, "shard": {"index": I, "count": N},
//  "bn_layers": [...], "batches": [{"batch": k, "final_bn_loss": x,
//  "final_bn_loss_per_layer": [...]}, ...], "initial_bn_loss" and
//  "loss_curve" (of the shard's first batch), "seconds", "image_iterations"}.
// Doubles are written with 17 significant digits, so they read back exactly.
nlohmann::json synth_shard_json(const nlohmann::json& run, const std::string& model, const Shard& shard,
                                const SynthReport& report);

struct SynthShardFolder {
  std::string dir;
  nlohmann::json meta;  // shard.json
  SynthSet set;         // images.pt
};

// Reads DIR/shard.json and DIR/images.pt; throws dfq::Error naming the folder
// or file when one is missing or is not what dfq synth --shard writes.
SynthShardFolder read_synth_shard(const std::string& dir);

struct MergedSynth {
  nlohmann::json run;  // the shards' common "run"
  std::string model;   // the model path the shards recorded
  SynthSet set;        // count images, in index order
  SynthReport report;  // as the unsharded run's, but seconds summed over the shards
};

// Checks that the shards are one run (equal "run" and shard count, every index
// 0..N-1 exactly once, each holding exactly its batches and their images) and
// assembles them. Throws dfq::Error("shard '<dir>': expected ..., found ...")
// naming the first shard that does not fit, or "--merge: ..." for a missing one.
MergedSynth merge_synth_shards(const std::vector<SynthShardFolder>& shards);

}  // namespace dfq
