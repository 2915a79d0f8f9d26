// dfq eval --shard I/N and --merge: the shard result a shard writes (its --json)
// and the merge of a run's shard results into the counts and predictions an
// unsharded run reports. Shard I evaluates the images k with k mod N == I of the
// folder's scan order (the first --limit images; core/shard.h). Each image's
// prediction depends only on that image and the model, so the merged counts and
// predictions are the unsharded run's (the integer engine's bit for bit; a float
// engine's logits can differ in the last bits with the batch an image shares).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/shard.h"
#include "eval/evaluate.h"
#include "eval/image_folder.h"
#include "eval/saved_outputs.h"

namespace dfq {

// The images of `folder` that shard `shard` evaluates: of its first `limit`
// images (0: all) in scan order, those whose position k has k mod N == I.
// `positions` receives each kept image's position in `folder`.
ImageFolder shard_of_folder(const ImageFolder& folder, int64_t limit, const Shard& shard,
                            std::vector<int64_t>* positions);

// What a shard adds to the usual --json metrics (`metrics`):
// "shard": {"format": "dfq-eval-shard", "version": 1, "index": I, "count": N,
//           "attempted": images of this shard, "total": images of the run},
// "run": every setting the predictions depend on (model SHA-256, engine,
//        data folder fingerprint, class mapping, limit, skip-bad,
//        preprocessing, dfq version, ...), equal in every shard of one run,
// "per_class_images", "per_class_correct": counts by class folder,
// "predictions": [[position, path, label, [top outputs]], ...] in scan order.
nlohmann::json eval_shard_json(nlohmann::json metrics, const nlohmann::json& run, const Shard& shard, int64_t attempted,
                               int64_t total, const EvalResult& result, const std::vector<PredictionRow>& rows);

struct EvalShardFile {
  std::string path;
  nlohmann::json doc;
};

// Reads a shard result; throws dfq::Error naming the file when it is missing,
// unreadable or not a dfq eval --shard --json file.
EvalShardFile read_eval_shard(const std::string& path);

struct MergedEval {
  nlohmann::json metrics;  // the unsharded run's --json, seconds summed over the shards
  EvalResult result;
  std::vector<PredictionRow> rows;  // in scan order
  int64_t shards = 0;
  int64_t non_image_files_skipped = 0;
};

// Checks that the files are the shards of one run (equal "run" and shard
// count, every index once, each holding exactly its images) and merges them.
// Throws dfq::Error naming the first file that does not fit ("--merge: ..."
// for a missing shard).
MergedEval merge_eval_shards(const std::vector<EvalShardFile>& shards);

// Shared by dfq synth --merge and dfq eval --merge.
// Throws dfq::Error("<subject>: expected the run of <first> (<key> <value>),
// found <key> <value>") at the first setting in which `run` differs from
// `want`, model_sha256 first (the likeliest mix-up, and the clearest to read).
void check_same_run(const nlohmann::json& run, const nlohmann::json& want, const std::string& subject,
                    const std::string& first);
// The positions of `shards` (named `names`, e.g. "shard 'DIR'") ordered by
// index, after checking that they are all of one count N and hold every
// index 0..N-1 exactly once. Throws dfq::Error naming the duplicate, or
// "--merge: expected all N shards of the run, found ..." for missing ones.
std::vector<size_t> shards_by_index(const std::vector<Shard>& shards, const std::vector<std::string>& names);

}  // namespace dfq
