// What dfq eval records while it evaluates, and the files it writes from that:
// --save-outputs (inputs and logits for torch.load: tools/compare_outputs.py),
// --save-inputs (raw float32 inputs and a JSON index, for another runtime) and
// --predictions (a CSV of each image's label, prediction and top 5).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "eval/evaluate.h"
#include "eval/image_folder.h"

namespace dfq {

// The images evaluate() ran, in evaluation order: the first `limit` of the
// folder (0: all) in scan order, without `skipped` (their paths, --skip-bad).
struct EvaluatedImages {
  std::vector<std::string> paths;  // relative to folder.root, forward slashes
  std::vector<int64_t> labels;     // model output index, outputs[folder label]: what top-1 is scored against
  std::vector<int64_t> indices;    // position in folder.images (scan order)
};
EvaluatedImages evaluated_images(const ImageFolder& folder, const std::vector<int64_t>& outputs, int64_t limit,
                                 const std::vector<std::string>& skipped);

// `field` as one CSV field (RFC 4180): in double quotes with every quote doubled
// when it holds a comma, a double quote, CR or LF; unchanged otherwise.
std::string csv_field(const std::string& field);

// One row of --predictions: an image, its label and the model's best outputs.
struct PredictionRow {
  int64_t index = 0;         // position in the folder's scan order
  std::string path;          // relative to the folder
  int64_t label = 0;         // output index top-1 is scored against
  std::vector<int64_t> top;  // the min(5, K) best outputs, best first; top[0] is the prediction
};

// The --predictions CSV of `rows`, in their order (format: write_predictions).
std::string predictions_csv(const std::vector<PredictionRow>& rows);

// Wraps a BatchModel so that, per call and in call order, what the requested
// outputs need is kept; copies, because the batch loader reuses its buffers.
// Everything kept stays in memory until written: inputs are C*H*W*4 bytes per
// image (10,000 CIFAR images = 123 MB, 20 ImageNet images = 12 MB, 50,000 =
// 30 GB), logits K*4 bytes, the ranking 40 bytes (--predictions alone keeps
// only the ranking).
class OutputRecorder {
 public:
  struct Keep {
    bool inputs = false;   // N x C x H x W float, exactly as the model received them
    bool logits = false;   // N x K float
    bool ranking = false;  // N x min(5, K) int64: top_indices() of the logits, the order evaluate() scores
  };
  explicit OutputRecorder(Keep keep) : keep_(keep) {}

  // The returned model calls `model` and records; it refers to this recorder.
  BatchModel wrap(BatchModel model);

  int64_t images() const { return images_; }

  // Each writer writes its file(s) directly (write_file: the caller stages
  // them, core/atomic_file.h StagedOutputs) and throws dfq::Error naming
  // `subject` (the option and the user's path) if the recorded images are not
  // `images` (count), the data it needs was not kept, or a write fails.

  // --save-outputs, with torch::jit::pickle_save (Python: torch.load(file)): a
  // dict {"inputs": float N x C x H x W, "logits": float N x K, "labels": int64 N,
  // "paths": [str]}. Needs inputs and logits.
  void write_outputs(const std::string& file, const EvaluatedImages& images, const std::string& subject) const;

  // --save-inputs: `data_file` holds the N*C*H*W inputs as raw little-endian
  // float32 in C order, no header; `json_file` is {"format": "dfq-inputs",
  // "version": 1, "dtype": "float32", "shape": [N, C, H, W], "paths": [...],
  // "labels": [...]} (file names that are not UTF-8 get U+FFFD). Needs inputs.
  void write_inputs(const std::string& data_file, const std::string& json_file, const EvaluatedImages& images,
                    const std::string& subject) const;

  // --predictions: a CSV with LF line ends, header "path,label,prediction,top5",
  // then one row per image: csv_field(path), label, the top-ranked output, and
  // the min(5, K) top-ranked outputs best first, separated by single spaces.
  // The prediction is the one evaluate() scores top-1 with. Needs the ranking.
  void write_predictions(const std::string& file, const EvaluatedImages& images, const std::string& subject) const;

  // The rows write_predictions writes, for a shard result (eval/shards.h). Needs the ranking.
  std::vector<PredictionRow> prediction_rows(const EvaluatedImages& images, const std::string& subject) const;

 private:
  void check_images(const EvaluatedImages& images, const std::string& subject) const;

  Keep keep_;
  int64_t images_ = 0;
  std::vector<at::Tensor> inputs_, logits_, ranking_;
};

}  // namespace dfq
