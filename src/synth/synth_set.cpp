#include "synth/synth_set.h"

#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/atomic_file.h"
#include "core/error.h"

namespace dfq {

LabelMode parse_label_mode(const std::string& text) {
  if (text == "balanced") return LabelMode::kBalanced;
  if (text == "none") return LabelMode::kNone;
  fail("--labels", "balanced or none", "'" + text + "'");
}

const char* to_string(LabelMode mode) { return mode == LabelMode::kBalanced ? "balanced" : "none"; }

void average_batch_losses(SynthReport& report) {
  const double n = static_cast<double>(report.batch_losses.size());
  report.final_bn_loss = 0.0;
  report.final_bn_loss_per_layer.assign(report.bn_layers.size(), 0.0);
  for (const BatchLoss& b : report.batch_losses) {
    if (b.per_layer.size() != report.bn_layers.size())
      fail("batch " + std::to_string(b.batch) + " BN losses", std::to_string(report.bn_layers.size()) + " layers",
           std::to_string(b.per_layer.size()));
    report.final_bn_loss += b.final_bn_loss / n;
    for (size_t l = 0; l < b.per_layer.size(); ++l) report.final_bn_loss_per_layer[l] += b.per_layer[l] / n;
  }
}

void save_synth_set(const SynthSet& set, const std::string& path) {
  c10::Dict<std::string, at::Tensor> dict;
  dict.insert("images", set.images.contiguous());
  dict.insert("labels", set.labels.contiguous());
  const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

SynthSet load_synth_set(const std::string& path) {
  const std::string subject = "synthetic set '" + path + "'";
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(subject, "a readable file written by dfq synth", "no such file or no permission");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue value;
  try {
    value = torch::jit::pickle_load(bytes);
  } catch (const c10::Error& e) {
    fail(subject, "a pickled {images, labels} dict", "unreadable data");
  }
  if (!value.isGenericDict()) fail(subject, "a dict {images, labels}", "another object");
  auto dict = value.toGenericDict();
  if (!dict.contains("images") || !dict.contains("labels")) fail(subject, "keys images and labels", "others");
  SynthSet set{dict.at("images").toTensor(), dict.at("labels").toTensor()};
  if (set.images.dim() != 4 || set.images.scalar_type() != at::kFloat)
    fail(subject, "float images N x C x H x W", "another tensor");
  if (set.labels.dim() != 1 || set.labels.size(0) != set.images.size(0) || set.labels.scalar_type() != at::kLong)
    fail(subject, "one int64 label per image", "another tensor");
  return set;
}

void dump_png_folder(const SynthSet& set, const Preprocess& pre, int64_t classes, const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path final_dir(dir), tmp_dir(dir + ".tmp");
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  const int64_t n = set.images.size(0), c = set.images.size(1), h = set.images.size(2), w = set.images.size(3);
  if (c != pre.channels) fail("--dump-png", std::to_string(pre.channels) + "-channel images", std::to_string(c));
  const int digits = static_cast<int>(std::to_string(std::max<int64_t>(classes - 1, 1)).size());
  // pixel = round(clamp((x * std + mean) * 255, 0, 255)), as HWC bytes.
  at::Tensor mean = at::tensor(pre.mean).reshape({1, c, 1, 1});
  at::Tensor std = at::tensor(pre.std).reshape({1, c, 1, 1});
  at::Tensor bytes = ((set.images * std + mean) * 255.0).round().clamp(0, 255).to(at::kByte);
  bytes = bytes.permute({0, 2, 3, 1}).contiguous();
  const int64_t* labels = set.labels.contiguous().data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    std::string folder = "unlabeled";
    if (labels[i] >= 0) {
      folder = std::to_string(labels[i]);
      folder.insert(0, static_cast<size_t>(std::max<int>(0, digits - static_cast<int>(folder.size()))), '0');
    }
    const fs::path sub = tmp_dir / folder;
    fs::create_directories(sub, ec);
    if (ec) fail("PNG folder '" + dir + "'", "a writable location", ec.message());
    cv::Mat image(static_cast<int>(h), static_cast<int>(w), c == 3 ? CV_8UC3 : CV_8UC1,
                  bytes[i].data_ptr<uint8_t>());
    cv::Mat out;
    if (c == 3) cv::cvtColor(image, out, cv::COLOR_RGB2BGR); else out = image;
    char name[32];
    std::snprintf(name, sizeof name, "%06lld.png", static_cast<long long>(i));
    // Encoded in memory and written with checks: cv::imwrite does not report a
    // full disk, so a truncated PNG could pass for a complete one.
    std::vector<unsigned char> png;
    if (!cv::imencode(".png", out, png)) fail("PNG folder '" + dir + "'", "PNG-encodable images", "an encoder failure");
    try {
      write_file((sub / name).string(), std::string(png.begin(), png.end()));
    } catch (const Error& e) {
      fs::remove_all(tmp_dir, ec);
      fail("PNG folder '" + dir + "'", "writable image files", e.what());
    }
  }
  fs::remove_all(final_dir, ec);
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) fail("PNG folder '" + dir + "'", "a successful rename from " + tmp_dir.string(), ec.message());
}

}  // namespace dfq
