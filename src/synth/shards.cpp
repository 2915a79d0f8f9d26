#include "synth/shards.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "eval/shards.h"

namespace dfq {
namespace {

constexpr const char* kFormat = "dfq-synth-shard";
constexpr int kVersion = 1;

std::string shard_name(int64_t index, int64_t count) { return std::to_string(index) + "/" + std::to_string(count); }

// The batches shard `shard` of a run must hold, in batch order.
std::vector<int64_t> batches_of(const Shard& shard, int64_t count, int64_t batch) {
  std::vector<int64_t> batches;
  for (int64_t k = 0; k * batch < count; ++k)
    if (shard.holds(k)) batches.push_back(k);
  return batches;
}

std::string list(const std::vector<int64_t>& values) {
  std::string text;
  for (size_t i = 0; i < values.size(); ++i) text += (i ? "," : "") + std::to_string(values[i]);
  return text.empty() ? "none" : text;
}

// The shard's "batches", checked against what its index must hold; the loss
// entries, with `layers` BN layers each.
std::vector<BatchLoss> shard_batches(const SynthShardFolder& s, const std::vector<int64_t>& expected, size_t layers) {
  std::vector<BatchLoss> losses;
  for (const auto& b : s.meta.at("batches"))
    losses.push_back({b.at("batch").get<int64_t>(), b.at("final_bn_loss").get<double>(),
                      b.at("final_bn_loss_per_layer").get<std::vector<double>>()});
  std::vector<int64_t> found;
  for (const BatchLoss& b : losses) found.push_back(b.batch);
  if (found != expected)
    fail("shard '" + s.dir + "'", "batches " + list(expected) + " (its share of the run)", "batches " + list(found));
  for (const BatchLoss& b : losses)
    if (b.per_layer.size() != layers)
      fail("shard '" + s.dir + "'", std::to_string(layers) + " BN layer losses per batch",
           std::to_string(b.per_layer.size()));
  return losses;
}

// Reads every field the merge uses, so that a damaged shard.json fails here,
// named, and never reaches a loop or an allocation with a wild count.
void check_fields(const nlohmann::json& meta, const std::string& file) {
  const auto& run = meta.at("run");
  for (const char* key : {"model_sha256", "method", "labels", "bn_stats", "bn_distance", "preset", "dfq_version"})
    run.at(key).get<std::string>();
  for (const char* key : {"count", "batch", "iterations", "channels", "height", "width", "threads"})
    if (run.at(key).get<int64_t>() < 1)
      fail("shard file '" + file + "'", "a positive run " + std::string(key), run.at(key).dump());
  run.at("seed").get<uint64_t>();
  run.at("lr").get<double>();
  run.at("mean").get<std::vector<float>>();
  run.at("std").get<std::vector<float>>();
  const int64_t index = meta.at("shard").at("index").get<int64_t>(),
                count = meta.at("shard").at("count").get<int64_t>();
  if (count < 1 || index < 0 || index >= count)
    fail("shard file '" + file + "'", "a shard I/N with 0 <= I < N", shard_name(index, count));
  meta.at("model").get<std::string>();
  meta.at("bn_layers").get<std::vector<std::string>>();
  meta.at("initial_bn_loss").get<double>();
  meta.at("loss_curve").get<std::vector<double>>();
  meta.at("seconds").get<double>();
  meta.at("image_iterations").get<int64_t>();
  for (const auto& b : meta.at("batches")) {
    b.at("batch").get<int64_t>();
    b.at("final_bn_loss").get<double>();
    b.at("final_bn_loss_per_layer").get<std::vector<double>>();
  }
}

}  // namespace

nlohmann::json synth_shard_json(const nlohmann::json& run, const std::string& model, const Shard& shard,
                                const SynthReport& report) {
  nlohmann::json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["run"] = run;
  j["model"] = model;
  j["shard"] = {{"index", shard.index}, {"count", shard.count}};
  j["bn_layers"] = report.bn_layers;
  nlohmann::json batches = nlohmann::json::array();
  for (const BatchLoss& b : report.batch_losses)
    batches.push_back(
        {{"batch", b.batch}, {"final_bn_loss", b.final_bn_loss}, {"final_bn_loss_per_layer", b.per_layer}});
  j["batches"] = batches;
  j["initial_bn_loss"] = report.initial_bn_loss;
  j["loss_curve"] = report.loss_curve;
  j["seconds"] = report.seconds;
  j["image_iterations"] = report.image_iterations;
  return j;
}

SynthShardFolder read_synth_shard(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string file = (fs::path(dir) / "shard.json").string();
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail("shard '" + dir + "'", "a folder written by dfq synth --shard", "no such directory");
  std::ifstream in(file);
  if (!in)
    fail("shard '" + dir + "'", "a folder written by dfq synth --shard (with shard.json)", "no readable shard.json");
  SynthShardFolder s{dir, {}, {}};
  try {
    s.meta = nlohmann::json::parse(in);
    if (s.meta.at("format") != kFormat || s.meta.at("version") != kVersion)
      fail("shard file '" + file + "'", std::string(kFormat) + " version " + std::to_string(kVersion),
           one_line(s.meta.at("format").dump()) + " version " + one_line(s.meta.at("version").dump()));
    check_fields(s.meta, file);
  } catch (const nlohmann::json::exception& e) {
    fail("shard file '" + file + "'", "the JSON dfq synth --shard writes", one_line(e.what()));
  }
  s.set = load_synth_set((fs::path(dir) / "images.pt").string());
  return s;
}

namespace {

MergedSynth merge_checked(const std::vector<SynthShardFolder>& shards) {
  const SynthShardFolder& first = shards.front();
  std::vector<Shard> ids;
  std::vector<std::string> names;
  for (const SynthShardFolder& s : shards) {
    check_same_run(s.meta.at("run"), first.meta.at("run"), "shard '" + s.dir + "'", "shard '" + first.dir + "'");
    ids.push_back({s.meta.at("shard").at("index").get<int64_t>(), s.meta.at("shard").at("count").get<int64_t>()});
    names.push_back("shard '" + s.dir + "'");
  }
  std::vector<const SynthShardFolder*> slots;
  for (size_t position : shards_by_index(ids, names)) slots.push_back(&shards[position]);
  const auto& run = first.meta.at("run");
  const int64_t count = run.at("count").get<int64_t>(), batch = run.at("batch").get<int64_t>();
  const auto layers = first.meta.at("bn_layers").get<std::vector<std::string>>();
  const std::vector<int64_t> image_shape = {run.at("channels").get<int64_t>(), run.at("height").get<int64_t>(),
                                            run.at("width").get<int64_t>()};
  // The images must add up before anything is sized by the recorded count.
  int64_t total = 0;
  for (const SynthShardFolder& s : shards) total += s.set.images.size(0);
  if (total != count)
    fail("--merge", std::to_string(count) + " images in all (the run's --count)", std::to_string(total));
  MergedSynth merged{run, first.meta.at("model").get<std::string>(), {}, {}};
  merged.set =
      SynthSet{at::empty({count, image_shape[0], image_shape[1], image_shape[2]}), at::empty({count}, at::kLong)};
  SynthReport& report = merged.report;
  const int64_t n = static_cast<int64_t>(slots.size());
  for (int64_t i = 0; i < n; ++i) {
    const SynthShardFolder& s = *slots[static_cast<size_t>(i)];
    const std::vector<BatchLoss> losses = shard_batches(s, batches_of(Shard{i, n}, count, batch), layers.size());
    int64_t held = 0;
    for (const BatchLoss& b : losses) held += std::min(batch, count - b.batch * batch);
    if (s.set.images.size(0) != held || s.set.images.sizes().slice(1) != at::IntArrayRef(image_shape))
      fail("shard '" + s.dir + "/images.pt'",
           std::to_string(held) + " images of " + c10::str(at::IntArrayRef(image_shape)),
           std::to_string(s.set.images.size(0)) + " of " + c10::str(s.set.images.sizes().slice(1)));
    int64_t at = 0;
    for (const BatchLoss& b : losses) {  // the shard's images, batch by batch, into their places
      const int64_t len = std::min(batch, count - b.batch * batch);
      merged.set.images.narrow(0, b.batch * batch, len).copy_(s.set.images.narrow(0, at, len));
      merged.set.labels.narrow(0, b.batch * batch, len).copy_(s.set.labels.narrow(0, at, len));
      at += len;
    }
    report.batch_losses.insert(report.batch_losses.end(), losses.begin(), losses.end());
    report.seconds += s.meta.value("seconds", 0.0);
    report.image_iterations += s.meta.value("image_iterations", int64_t{0});
  }
  std::sort(report.batch_losses.begin(), report.batch_losses.end(),
            [](const BatchLoss& a, const BatchLoss& b) { return a.batch < b.batch; });
  report.method = run.at("method").get<std::string>();
  report.count = count;
  report.iterations = run.at("iterations").get<int64_t>();
  report.bn_layers = layers;
  report.initial_bn_loss = slots[0]->meta.at("initial_bn_loss").get<double>();  // shard 0 holds batch 0
  report.loss_curve = slots[0]->meta.at("loss_curve").get<std::vector<double>>();
  average_batch_losses(report);
  report.image_iterations_per_second =
      report.seconds > 0 ? static_cast<double>(report.image_iterations) / report.seconds : 0.0;
  return merged;
}

}  // namespace

MergedSynth merge_synth_shards(const std::vector<SynthShardFolder>& shards) {
  if (shards.empty()) fail("--merge", "at least one shard folder", "none");
  try {
    return merge_checked(shards);
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong type or missing in some shard.json
    fail("--merge", "shard.json files as dfq synth --shard writes them", one_line(e.what()));
  }
}

}  // namespace dfq
