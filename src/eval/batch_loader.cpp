#include "eval/batch_loader.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "core/error.h"
#include "core/runtime.h"

namespace dfq {

namespace {

enum class SlotState { free, decoding, ready, delivered };

// One preallocated batch buffer. Batch b always uses slot b % slots, so batches
// come out in scan order whichever thread decoded them.
struct Slot {
  at::Tensor images, labels;
  float* image_data = nullptr;
  int64_t* label_data = nullptr;
  SlotState state = SlotState::free;
  int64_t batch = -1;
  int64_t count = 0;
  std::vector<std::string> skipped;
  std::string error;  // set: decoding this batch failed (no skip_bad)
};

// Output size for the folder: a crop fixes it; otherwise the first image that
// decodes gives it (a bad one is reported in order later, by the decoding threads).
std::pair<int, int> folder_output_size(const std::vector<ImageEntry>& images, const Preprocess& pre) {
  if (pre.crop > 0) return {pre.crop, pre.crop};
  for (const ImageEntry& entry : images) {
    std::pair<int, int> header{0, 0};
    try {  // the header only: a bad image fails (or is skipped) when it is decoded
      header = image_header_size(entry.path);
    } catch (const Error&) {
      continue;
    }
    if (header.first > 0 && header.second > 0) return output_size(pre, header.first, header.second);
    const cv::Mat first = cv::imread(entry.path, cv::IMREAD_UNCHANGED);  // a header dfq does not read
    if (!first.empty()) return output_size(pre, first.rows, first.cols);
  }
  return {0, 0};  // nothing decodes: every image fails (or is skipped) on its own
}

}  // namespace

struct BatchLoader::Impl {
  std::vector<ImageEntry> images;
  Preprocess pre;
  LoaderOptions options;
  int64_t image_floats = 0;  // C x H x W
  int64_t batches = 0;
  int height = 0, width = 0;

  std::mutex mutex;
  std::condition_variable slot_freed;   // workers wait for their next slot
  std::condition_variable batch_ready;  // next() waits for the next batch
  std::vector<Slot> slots;
  int64_t next_claim = 0;            // next batch a worker starts
  int64_t next_delivery = 0;         // next batch next() returns
  Slot* held = nullptr;              // slot the caller is reading
  bool failed = false;               // a batch failed: start no more
  std::string error;                 // failure already reported by next(); sticky
  std::vector<std::string> skipped;  // of the batches delivered so far, in scan order
  std::atomic<bool> stopping{false};
  std::vector<std::thread> workers;

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    slot_freed.notify_all();
    batch_ready.notify_all();
    for (std::thread& worker : workers) worker.join();
  }

  void work() {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      slot_freed.wait(lock, [&] {
        return stopping || failed || next_claim >= batches ||
               slots[static_cast<size_t>(next_claim) % slots.size()].state == SlotState::free;
      });
      if (stopping || failed || next_claim >= batches) return;
      const int64_t batch = next_claim++;
      Slot& slot = slots[static_cast<size_t>(batch) % slots.size()];
      slot.state = SlotState::decoding;
      slot.batch = batch;
      lock.unlock();
      decode_batch(batch, slot);
      lock.lock();
      slot.state = SlotState::ready;
      if (!slot.error.empty()) {
        failed = true;
        slot_freed.notify_all();  // idle workers can exit
      }
      batch_ready.notify_all();
    }
  }

  // Runs without the lock: the slot belongs to this thread until it is marked ready.
  void decode_batch(int64_t batch, Slot& slot) {
    slot.count = 0;
    slot.skipped.clear();
    slot.error.clear();
    const int64_t begin = batch * options.batch_size;
    const int64_t end = std::min<int64_t>(begin + options.batch_size, static_cast<int64_t>(images.size()));
    for (int64_t i = begin; i < end && !stopping; ++i) {
      const ImageEntry& entry = images[static_cast<size_t>(i)];
      try {
        decode_image(entry.path, pre, height, width, slot.image_data + slot.count * image_floats);
        slot.label_data[slot.count++] = entry.label;
        continue;
      } catch (const Error& e) {
        slot.error = e.what();
      } catch (const std::exception& e) {  // OpenCV or allocation failures inside the decoder
        std::string what = e.what();
        std::replace(what.begin(), what.end(), '\n', ' ');
        slot.error =
            "image '" + entry.path + "': expected a decodable JPEG/PNG/BMP image, found an error: " + what;
      }
      if (!options.skip_bad) return;
      slot.skipped.push_back(entry.path);
      slot.error.clear();
    }
  }
};

BatchLoader::BatchLoader(const ImageFolder& folder, const Preprocess& pre, const LoaderOptions& options)
    : impl_(std::make_unique<Impl>()) {
  if (options.batch_size < 1) fail("--batch", "a value >= 1", std::to_string(options.batch_size));
  if (options.limit < 0) fail("--limit", "a value >= 0", std::to_string(options.limit));
  if (options.decode_threads < 1 || options.decode_threads > max_threads())
    fail("--decode-threads", "1.." + std::to_string(max_threads()), std::to_string(options.decode_threads));
  if (options.prefetch_batches < 1)
    fail("loader prefetch_batches", "a value >= 1", std::to_string(options.prefetch_batches));
  validate(pre);

  Impl& s = *impl_;
  const int64_t available = static_cast<int64_t>(folder.images.size());
  total_ = options.limit > 0 ? std::min(options.limit, available) : available;
  s.images.assign(folder.images.begin(), folder.images.begin() + total_);
  s.pre = pre;
  s.options = options;
  std::tie(height_, width_) = folder_output_size(s.images, pre);
  s.height = height_;
  s.width = width_;
  s.image_floats = static_cast<int64_t>(pre.channels) * height_ * width_;
  s.batches = (total_ + options.batch_size - 1) / options.batch_size;
  if (s.batches == 0) return;

  // Buffers for at most the images there are: a 10-image folder needs no 256-image slots.
  const int64_t slot_images = std::min(options.batch_size, total_);
  const size_t slot_count = static_cast<size_t>(std::min<int64_t>(options.prefetch_batches + 1, s.batches));
  s.slots.resize(slot_count);
  for (Slot& slot : s.slots) {
    slot.images = at::empty({slot_images, pre.channels, height_, width_}, at::kFloat);
    slot.labels = at::empty({slot_images}, at::kLong);
    slot.image_data = slot.images.data_ptr<float>();
    slot.label_data = slot.labels.data_ptr<int64_t>();
  }
  const int64_t threads = std::min<int64_t>(options.decode_threads, s.batches);
  for (int64_t t = 0; t < threads; ++t) s.workers.emplace_back([&s] { s.work(); });
}

BatchLoader::~BatchLoader() = default;  // Impl's destructor stops and joins the workers

bool BatchLoader::next(Batch& batch) {
  Impl& s = *impl_;
  std::unique_lock<std::mutex> lock(s.mutex);
  if (s.held) {
    s.held->state = SlotState::free;
    s.held = nullptr;
    s.slot_freed.notify_all();
  }
  if (!s.error.empty()) throw Error(s.error);
  for (;;) {
    if (s.next_delivery >= s.batches) {
      batch = Batch{};
      return false;
    }
    const int64_t index = s.next_delivery;
    Slot& slot = s.slots[static_cast<size_t>(index) % s.slots.size()];
    s.batch_ready.wait(lock, [&] { return slot.state == SlotState::ready && slot.batch == index; });
    ++s.next_delivery;
    s.skipped.insert(s.skipped.end(), slot.skipped.begin(), slot.skipped.end());
    if (!slot.error.empty()) {
      s.error = slot.error;
      throw Error(s.error);
    }
    if (slot.count == 0) {  // every image of the batch was skipped
      slot.state = SlotState::free;
      s.slot_freed.notify_all();
      continue;
    }
    slot.state = SlotState::delivered;
    s.held = &slot;
    const bool full = slot.count == slot.images.size(0);
    batch.images = full ? slot.images : slot.images.narrow(0, 0, slot.count);
    batch.labels = full ? slot.labels : slot.labels.narrow(0, 0, slot.count);
    batch.count = slot.count;
    return true;
  }
}

std::vector<std::string> BatchLoader::skipped_files() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->skipped;
}

}  // namespace dfq
