#include "eval/saved_outputs.h"

#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <filesystem>
#include <unordered_set>
#include <utility>

#include "core/atomic_file.h"
#include "core/error.h"

namespace dfq {

BatchModel OutputRecorder::wrap(BatchModel model) {
  return [this, model = std::move(model)](const at::Tensor& x) {
    at::Tensor logits = model(x);
    inputs_.push_back(x.to(at::kFloat).contiguous().clone());
    logits_.push_back(logits.to(at::kFloat).contiguous().clone());
    return logits;
  };
}

int64_t OutputRecorder::images() const {
  int64_t n = 0;
  for (const at::Tensor& t : inputs_) n += t.size(0);
  return n;
}

void OutputRecorder::save(const std::string& path, const ImageFolder& folder, const std::vector<int64_t>& outputs,
                          int64_t limit, const std::vector<std::string>& skipped) const {
  namespace fs = std::filesystem;
  const std::string subject = "--save-outputs '" + path + "'";
  const std::unordered_set<std::string> left_out(skipped.begin(), skipped.end());
  const size_t attempted =
      limit > 0 ? std::min(static_cast<size_t>(limit), folder.images.size()) : folder.images.size();
  std::vector<int64_t> labels;
  c10::List<std::string> paths;
  for (size_t i = 0; i < attempted; ++i) {
    const ImageEntry& entry = folder.images[i];
    if (left_out.count(entry.path)) continue;
    labels.push_back(outputs.at(static_cast<size_t>(entry.label)));
    paths.push_back(fs::path(entry.path).lexically_relative(folder.root).generic_string());
  }
  const int64_t n = images();
  if (n != static_cast<int64_t>(labels.size()))
    fail(subject, std::to_string(labels.size()) + " recorded images (the folder's, less those skipped)",
         std::to_string(n));
  if (inputs_.empty()) fail(subject, "at least one evaluated image", "none");
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("inputs", at::cat(inputs_, 0));
  dict.insert("logits", at::cat(logits_, 0));
  dict.insert("labels", at::tensor(labels, at::kLong));
  dict.insert("paths", paths);
  const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

}  // namespace dfq
