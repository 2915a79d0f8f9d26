// Top-1/top-5 evaluation of any batch model on an image folder.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/batch_loader.h"

namespace dfq {

// Maps a batch of normalized inputs (N x C x H x W) to logits (N x classes).
using BatchModel = std::function<at::Tensor(const at::Tensor&)>;

struct EvalResult {
  int64_t images = 0;        // images evaluated
  int64_t correct_top1 = 0;
  int64_t correct_top5 = 0;  // top-k with k = min(5, classes)
  int64_t skipped = 0;       // unreadable images left out (--skip-bad)
  std::vector<std::string> skipped_files;  // their paths, in scan order
  std::vector<int64_t> per_class_images, per_class_correct;
  double seconds = 0.0;      // wall time, decoding included unless pre-decoded

  double top1() const { return images ? 100.0 * static_cast<double>(correct_top1) / static_cast<double>(images) : 0; }
  double top5() const { return images ? 100.0 * static_cast<double>(correct_top5) / static_cast<double>(images) : 0; }
  double images_per_second() const { return seconds > 0 ? static_cast<double>(images) / seconds : 0.0; }
};

// Model output index of each class folder: identity (folder k is output k) when
// `names_file` is empty; otherwise line k of the file names output k (first
// whitespace-separated token, so "n01440764 tench" works) and each folder is
// looked up by name. Throws dfq::Error if the file cannot be read, a folder is
// not listed, or (identity) the folder count differs from `output_width` > 0.
std::vector<int64_t> class_outputs(const ImageFolder& folder, const std::string& names_file, int64_t output_width);

// The `k` highest outputs of each row of `logits` (N x K floats, 1 <= k <= K),
// best first, as an int64 N x k tensor. The order is total, so every caller
// ranks alike: a higher value first, NaN above every number, and equal values
// (or two NaNs) by the lower index. Column 0 is therefore what at::argmax(1)
// returns; at::topk leaves the order of ties unspecified, so it is not used.
// Throws dfq::Error unless logits is 2-D with at least k columns.
at::Tensor top_indices(const at::Tensor& logits, int64_t k);

// Runs `model` on every image of `folder` (decoded in background threads while
// the model runs, timed from the first decode to the last prediction; with
// `predecode`, all images are decoded first and only the model is timed); a
// prediction (top_indices column 0; top-5: any of the first min(5, K)) is
// correct when it equals outputs[label]. Throws dfq::Error if
// an output index is outside the model's output width.
EvalResult evaluate(const BatchModel& model, const ImageFolder& folder, const std::vector<int64_t>& outputs,
                    const Preprocess& pre, const LoaderOptions& options, bool quiet, bool predecode = false);

// {"top1": percent, "top5": percent, "correct": int, "images": int,
//  "seconds": float, "images_per_second": float, "correct_top5", "skipped",
//  "per_class_top1": [percent...]}
nlohmann::json to_json(const EvalResult& result);

}  // namespace dfq
