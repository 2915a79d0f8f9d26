// A synthetic calibration set and what its synthesis measured.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "eval/preprocess.h"

namespace dfq {

// Label mode: "balanced" gives image i the target label i mod classes (and adds
// a cross-entropy term); "none" has no targets (labels are -1).
enum class LabelMode { kBalanced, kNone };
LabelMode parse_label_mode(const std::string& text);  // "balanced" | "none"
const char* to_string(LabelMode mode);

struct SynthSet {
  at::Tensor images;  // count x C x H x W float32, in the model's normalized input space
  at::Tensor labels;  // count int64 target labels, -1 when there are none
};

// The BN loss of the final images of one direct-synthesis batch.
struct BatchLoss {
  int64_t batch = 0;               // batch k holds images k * batch size ..
  double final_bn_loss = 0.0;
  std::vector<double> per_layer;   // in the order of SynthReport::bn_layers
};

// What one synthesis run measured, for the JSON report and the HTML plots.
struct SynthReport {
  std::string method;
  int64_t count = 0;
  int64_t iterations = 0;             // optimizer steps per batch (direct) or in total (generator)
  double seconds = 0.0;
  double image_iterations_per_second = 0.0;  // images x (forward + backward) per second
  double initial_bn_loss = 0.0;       // BN loss at the first step (first batch)
  double final_bn_loss = 0.0;         // BN loss of the final images, batch by batch, averaged
  std::vector<std::string> bn_layers;
  std::vector<double> final_bn_loss_per_layer;
  std::vector<double> loss_curve;     // BN loss per step of the first batch (direct) or per step (generator)
  int64_t image_iterations = 0;       // images x optimizer steps, over all batches
  // Direct: one entry per batch computed, in batch order; merging the shards
  // of a run (dfq synth --merge) recomputes the averages from them.
  std::vector<BatchLoss> batch_losses;
};

// Sets final_bn_loss and final_bn_loss_per_layer to the mean over
// report.batch_losses, summed in their order: one formula for a whole run and
// for merged shards, so both give the same bits.
void average_batch_losses(SynthReport& report);

// Writes images and labels with torch::pickle_save as a dict {"images", "labels"}
// (Python: torch.load(path)); atomically. Reads it back, validating shapes.
void save_synth_set(const SynthSet& set, const std::string& path);
SynthSet load_synth_set(const std::string& path);

// Writes every image as an 8-bit PNG in DIR/<label>/<index>.png, de-normalized
// with `pre` (pixel = round(clamp((x * std + mean) * 255, 0, 255))); label
// folders are zero-padded ("003") so sorted names keep label order; unlabeled
// images go to DIR/unlabeled. Written into DIR.tmp, then renamed.
void dump_png_folder(const SynthSet& set, const Preprocess& pre, int64_t classes, const std::string& dir);

}  // namespace dfq
