#include "eval/saved_outputs.h"

#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <utility>

#include "core/atomic_file.h"
#include "core/error.h"

namespace dfq {

EvaluatedImages evaluated_images(const ImageFolder& folder, const std::vector<int64_t>& outputs, int64_t limit,
                                 const std::vector<std::string>& skipped) {
  namespace fs = std::filesystem;
  const std::unordered_set<std::string> left_out(skipped.begin(), skipped.end());
  const size_t attempted =
      limit > 0 ? std::min(static_cast<size_t>(limit), folder.images.size()) : folder.images.size();
  EvaluatedImages images;
  for (size_t i = 0; i < attempted; ++i) {
    const ImageEntry& entry = folder.images[i];
    if (left_out.count(entry.path)) continue;
    images.labels.push_back(outputs.at(static_cast<size_t>(entry.label)));
    images.indices.push_back(static_cast<int64_t>(i));
    images.paths.push_back(fs::path(entry.path).lexically_relative(folder.root).generic_string());
  }
  return images;
}

std::string csv_field(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string quoted = "\"";
  for (char c : field) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

BatchModel OutputRecorder::wrap(BatchModel model) {
  return [this, model = std::move(model)](const at::Tensor& x) {
    at::Tensor logits = model(x);
    if (keep_.inputs) inputs_.push_back(x.to(at::kFloat).contiguous().clone());
    if (keep_.logits) logits_.push_back(logits.to(at::kFloat).contiguous().clone());
    // A logits tensor of another rank fails here as it would in evaluate().
    if (keep_.ranking) ranking_.push_back(top_indices(logits, logits.dim() == 2 ? std::min<int64_t>(5, logits.size(1)) : 1));
    images_ += x.size(0);
    return logits;
  };
}

void OutputRecorder::check_images(const EvaluatedImages& images, const std::string& subject) const {
  if (images_ != static_cast<int64_t>(images.paths.size()))
    fail(subject, std::to_string(images.paths.size()) + " recorded images (the folder's, less those skipped)",
         std::to_string(images_));
  if (images_ == 0) fail(subject, "at least one evaluated image", "none");
}

void OutputRecorder::write_outputs(const std::string& file, const EvaluatedImages& images,
                                   const std::string& subject) const {
  check_images(images, subject);
  if (!keep_.inputs || !keep_.logits) fail(subject, "a recorder that kept inputs and logits", "one that did not");
  c10::List<std::string> paths;
  for (const std::string& p : images.paths) paths.push_back(p);
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("inputs", at::cat(inputs_, 0));
  dict.insert("logits", at::cat(logits_, 0));
  dict.insert("labels", at::tensor(images.labels, at::kLong));
  dict.insert("paths", paths);
  const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
  write_file(file, std::string(bytes.begin(), bytes.end()));
}

namespace {

// The batches' float32 values back to back, little-endian whatever the host.
std::string little_endian_floats(const std::vector<at::Tensor>& batches) {
  size_t total = 0;
  for (const at::Tensor& t : batches) total += static_cast<size_t>(t.numel());
  std::string bytes;
  bytes.reserve(total * sizeof(float));
  for (const at::Tensor& t : batches)
    bytes.append(reinterpret_cast<const char*>(t.data_ptr<float>()), static_cast<size_t>(t.numel()) * sizeof(float));
  const uint32_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  if (first != 1)  // big-endian host
    for (size_t at = 0; at + 4 <= bytes.size(); at += 4) {
      std::swap(bytes[at], bytes[at + 3]);
      std::swap(bytes[at + 1], bytes[at + 2]);
    }
  return bytes;
}

}  // namespace

void OutputRecorder::write_inputs(const std::string& data_file, const std::string& json_file,
                                  const EvaluatedImages& images, const std::string& subject) const {
  check_images(images, subject);
  if (!keep_.inputs) fail(subject, "a recorder that kept the inputs", "one that did not");
  const at::IntArrayRef image_shape = inputs_.front().sizes().slice(1);
  for (const at::Tensor& t : inputs_)
    if (t.dim() != 4 || t.sizes().slice(1) != image_shape)
      fail(subject, "N x C x H x W inputs of one size", "a batch of shape " + c10::str(t.sizes()));
  nlohmann::ordered_json index;
  index["format"] = "dfq-inputs";
  index["version"] = 1;
  index["dtype"] = "float32";
  index["shape"] = {images_, image_shape[0], image_shape[1], image_shape[2]};
  index["paths"] = images.paths;
  index["labels"] = images.labels;
  write_file(data_file, little_endian_floats(inputs_));
  write_file(json_file, index.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
}

std::string predictions_csv(const std::vector<PredictionRow>& rows) {
  std::string csv = "path,label,prediction,top5\n";
  for (const PredictionRow& r : rows) {
    csv += csv_field(r.path) + ',' + std::to_string(r.label) + ',' + std::to_string(r.top.at(0)) + ',';
    for (size_t j = 0; j < r.top.size(); ++j) csv += (j ? " " : "") + std::to_string(r.top[j]);
    csv += '\n';
  }
  return csv;
}

std::vector<PredictionRow> OutputRecorder::prediction_rows(const EvaluatedImages& images,
                                                           const std::string& subject) const {
  check_images(images, subject);
  if (!keep_.ranking) fail(subject, "a recorder that kept the ranking of outputs", "one that did not");
  std::vector<PredictionRow> rows;
  rows.reserve(images.paths.size());
  size_t image = 0;
  for (const at::Tensor& ranked : ranking_) {
    const int64_t k = ranked.size(1);
    const int64_t* row = ranked.data_ptr<int64_t>();
    for (int64_t i = 0; i < ranked.size(0); ++i, ++image, row += k)
      rows.push_back({images.indices.empty() ? static_cast<int64_t>(image) : images.indices[image], images.paths[image],
                      images.labels[image], std::vector<int64_t>(row, row + k)});
  }
  return rows;
}

void OutputRecorder::write_predictions(const std::string& file, const EvaluatedImages& images,
                                       const std::string& subject) const {
  write_file(file, predictions_csv(prediction_rows(images, subject)));
}

}  // namespace dfq
