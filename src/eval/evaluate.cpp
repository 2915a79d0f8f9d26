#include "eval/evaluate.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>
#include <unordered_map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/progress.h"

namespace dfq {

std::vector<int64_t> class_outputs(const ImageFolder& folder, const std::string& names_file, int64_t output_width) {
  const int64_t classes = static_cast<int64_t>(folder.classes.size());
  std::vector<int64_t> outputs;
  if (names_file.empty()) {
    if (output_width > 0 && output_width != classes)
      fail("data folder '" + folder.root + "'",
           std::to_string(output_width) + " class folders (the model's output width; or map folders with --class-names)",
           std::to_string(classes));
    for (int64_t c = 0; c < classes; ++c) outputs.push_back(c);
    return outputs;
  }
  std::ifstream in(names_file);
  if (!in) fail("--class-names '" + names_file + "'", "a readable text file", "no such file or no permission");
  std::unordered_map<std::string, int64_t> index;
  std::string line;
  for (int64_t k = 0; std::getline(in, line); ++k) {
    std::istringstream tokens(line);
    std::string name;
    if (tokens >> name) index.emplace(name, k);
  }
  for (const std::string& name : folder.classes) {
    auto it = index.find(name);
    if (it == index.end()) fail("class folder '" + name + "'", "a name listed in --class-names " + names_file, "none");
    if (output_width > 0 && it->second >= output_width)
      fail("class folder '" + name + "'", "an output index below the model's width " + std::to_string(output_width),
           std::to_string(it->second));
    outputs.push_back(it->second);
  }
  return outputs;
}

at::Tensor top_indices(const at::Tensor& logits, int64_t k) {
  if (logits.dim() != 2) fail("model output", "N x classes logits", std::to_string(logits.dim()) + " dimensions");
  const int64_t n = logits.size(0), width = logits.size(1);
  if (k < 1 || k > width)
    fail("top outputs", "a count from 1 to the model's " + std::to_string(width) + " outputs", std::to_string(k));
  const at::Tensor values = logits.to(at::kDouble).contiguous();  // exact for float logits
  at::Tensor result = at::empty({n, k}, at::kLong);
  const double* v = values.data_ptr<double>();
  int64_t* out = result.data_ptr<int64_t>();
  std::vector<int64_t> order(static_cast<size_t>(width));
  for (int64_t i = 0; i < n; ++i) {
    const double* row = v + i * width;
    const auto ranks_before = [row](int64_t a, int64_t b) {
      const bool nan_a = std::isnan(row[a]), nan_b = std::isnan(row[b]);
      if (nan_a != nan_b) return nan_a;
      if (!nan_a && row[a] != row[b]) return row[a] > row[b];
      return a < b;
    };
    std::iota(order.begin(), order.end(), int64_t{0});
    std::partial_sort(order.begin(), order.begin() + k, order.end(), ranks_before);
    std::copy_n(order.begin(), k, out + i * k);
  }
  return result;
}

EvalResult evaluate(const BatchModel& model, const ImageFolder& folder, const std::vector<int64_t>& outputs,
                    const Preprocess& pre, const LoaderOptions& options, bool quiet, bool predecode) {
  c10::InferenceMode inference;
  BatchLoader loader(folder, pre, options);
  std::vector<Batch> decoded;
  if (predecode) {  // decode everything first, untimed
    Batch b;
    while (loader.next(b))
      if (b.count > 0) decoded.push_back(Batch{b.images.clone(), b.labels.clone(), b.count});  // buffers are reused
  }
  const auto start = std::chrono::steady_clock::now();
  const int64_t classes = static_cast<int64_t>(folder.classes.size());
  EvalResult result;
  result.per_class_images.assign(static_cast<size_t>(classes), 0);
  result.per_class_correct.assign(static_cast<size_t>(classes), 0);
  Progress progress("eval", loader.total(), quiet);
  Batch batch;
  size_t next_decoded = 0;
  auto next = [&](Batch& b) {
    if (!predecode) return loader.next(b);
    if (next_decoded == decoded.size()) return false;
    b = decoded[next_decoded++];
    return true;
  };
  while (next(batch)) {
    if (batch.count == 0) continue;
    at::Tensor logits = model(batch.images);
    if (logits.dim() != 2) fail("model output", "N x classes logits", std::to_string(logits.dim()) + " dimensions");
    if (outputs.size() != folder.classes.size() || *std::max_element(outputs.begin(), outputs.end()) >= logits.size(1))
      fail("data folder '" + folder.root + "'", "class folders that map to the model's " +
                                                   std::to_string(logits.size(1)) + " outputs",
           std::to_string(classes) + " class folders");
    const int64_t k = std::min<int64_t>(5, logits.size(1));
    const at::Tensor ranked = top_indices(logits, k);  // ties by lower index, as --predictions writes them
    const int64_t* top = ranked.data_ptr<int64_t>();
    const int64_t* labels = batch.labels.data_ptr<int64_t>();
    for (int64_t i = 0; i < batch.count; ++i) {
      const int64_t label = labels[i];
      const int64_t target = outputs[static_cast<size_t>(label)];
      const int64_t* row = top + i * k;
      const bool hit1 = row[0] == target;
      const bool hit5 = std::find(row, row + k, target) != row + k;
      result.correct_top1 += hit1;
      result.correct_top5 += hit5;
      result.per_class_images[static_cast<size_t>(label)] += 1;
      result.per_class_correct[static_cast<size_t>(label)] += hit1;
    }
    result.images += batch.count;
    char extra[64];
    std::snprintf(extra, sizeof extra, "top-1 %.2f %%", result.top1());
    progress.update(result.images + static_cast<int64_t>(loader.skipped_files().size()), extra);
  }
  result.skipped_files = loader.skipped_files();
  result.skipped = static_cast<int64_t>(result.skipped_files.size());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.finish();
  return result;
}

nlohmann::json to_json(const EvalResult& r) {
  nlohmann::json per_class = nlohmann::json::array();
  for (size_t c = 0; c < r.per_class_images.size(); ++c)
    per_class.push_back(r.per_class_images[c] ? 100.0 * static_cast<double>(r.per_class_correct[c]) /
                                                    static_cast<double>(r.per_class_images[c])
                                              : 0.0);
  return {{"top1", r.top1()},
          {"top5", r.top5()},
          {"correct", r.correct_top1},
          {"correct_top5", r.correct_top5},
          {"images", r.images},
          {"skipped", r.skipped},
          {"seconds", r.seconds},
          {"images_per_second", r.images_per_second()},
          {"per_class_top1", per_class}};
}

}  // namespace dfq
