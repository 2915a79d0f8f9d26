// Batches of decoded images, produced in background threads.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eval/image_folder.h"
#include "eval/preprocess.h"

namespace dfq {

struct LoaderOptions {
  int64_t batch_size = 256;  // > 0
  int64_t limit = 0;         // use the first `limit` images of the folder (in scan order); 0 = all
  bool skip_bad = false;     // skip unreadable/corrupt images instead of failing
  int decode_threads = 1;    // background decoding threads, >= 1
  int prefetch_batches = 2;  // batches decoded ahead of the consumer, >= 1
};

struct Batch {
  at::Tensor images;  // count x C x H x W float32, contiguous
  at::Tensor labels;  // count int64
  int64_t count = 0;
};

// Decodes batches in scan order while the caller runs the model on the previous
// ones. Every image has the size output_size() gives for the first image of the
// folder; an image of another size is an error naming it. Batch buffers are
// allocated once and reused: a Batch's tensors stay valid until the next call to
// next(). Destruction stops the background threads.
class BatchLoader {
 public:
  BatchLoader(const ImageFolder& folder, const Preprocess& pre, const LoaderOptions& options);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // Fills `batch` with the next batch; false when all images were delivered.
  // Rethrows, as dfq::Error naming the file, the first decoding failure (unless
  // skip_bad, in which case the image is left out and counted).
  bool next(Batch& batch);

  int64_t total() const { return total_; }  // images that will be attempted
  int height() const { return height_; }
  int width() const { return width_; }
  // Images left out so far because they could not be decoded (skip_bad).
  std::vector<std::string> skipped_files() const;

 private:
  struct Impl;  // threads, reusable batch slots, queue
  std::unique_ptr<Impl> impl_;
  int64_t total_ = 0;
  int height_ = 0;
  int width_ = 0;
};

}  // namespace dfq
