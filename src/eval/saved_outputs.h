// What dfq eval --save-outputs writes: every input the model saw and its logits,
// for comparing dfq with PyTorch (tools/compare_outputs.py) or two engines.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "eval/evaluate.h"
#include "eval/image_folder.h"

namespace dfq {

// Wraps a BatchModel so that each call's input (N x C x H x W, the normalized
// tensor exactly as the model received it) and its logits are kept, in call
// order; copies, because the batch loader reuses its buffers. Everything stays
// in memory until save(): 20 ImageNet images are 12 MB, 50,000 are 30 GB.
class OutputRecorder {
 public:
  // The returned model calls `model` and records; it refers to this recorder.
  BatchModel wrap(BatchModel model);

  // Writes, with torch::jit::pickle_save and atomically (Python: torch.load(path)),
  // a dict {"inputs": float N x C x H x W, "logits": float N x K, "labels": int64 N,
  // "paths": [str]}: the images evaluate() ran, i.e. the first `limit` of `folder`
  // (0: all) in scan order without `skipped` (their paths, from --skip-bad);
  // labels are each image's model output index (outputs[folder label]) and
  // paths are relative to folder.root. Throws dfq::Error naming `path` if the
  // recorded batches do not add up to those images or the write fails.
  void save(const std::string& path, const ImageFolder& folder, const std::vector<int64_t>& outputs, int64_t limit,
            const std::vector<std::string>& skipped) const;

  int64_t images() const;

 private:
  std::vector<at::Tensor> inputs_, logits_;
};

}  // namespace dfq
