#include "eval/shards.h"

#include <algorithm>
#include <fstream>
#include <map>

#include "core/error.h"

namespace dfq {
namespace {

constexpr const char* kFormat = "dfq-eval-shard";
constexpr int kVersion = 1;

std::string shard_name(int64_t index, int64_t count) { return std::to_string(index) + "/" + std::to_string(count); }

std::string list(const std::vector<int64_t>& values) {
  std::string text;
  for (size_t i = 0; i < values.size(); ++i) text += (i ? "," : "") + std::to_string(values[i]);
  return text;
}

// Reads every field the merge uses, so that a damaged file fails here, named,
// and never reaches a loop or an allocation with a wild count.
void check_fields(const nlohmann::json& doc) {
  const auto& shard = doc.at("shard");
  if (shard.at("format") != kFormat || shard.at("version") != kVersion)
    throw std::invalid_argument("shard.format " + shard.at("format").dump() + " version " + shard.at("version").dump());
  const int64_t index = shard.at("index").get<int64_t>(), count = shard.at("count").get<int64_t>();
  if (count < 1 || index < 0 || index >= count) throw std::invalid_argument("shard " + shard_name(index, count));
  shard.at("attempted").get<int64_t>();
  const auto& run = doc.at("run");
  if (!run.is_object()) throw std::invalid_argument("run is not an object");
  run.at("model_sha256").get<std::string>();
  if (run.at("images_attempted").get<int64_t>() < 1 || run.at("classes").get<int64_t>() < 1)
    throw std::invalid_argument("run images_attempted or classes below 1");
  for (const char* key : {"images", "correct", "correct_top5", "skipped", "non_image_files_skipped"})
    doc.at(key).get<int64_t>();
  doc.at("seconds").get<double>();
  doc.at("per_class_images").get<std::vector<int64_t>>();
  doc.at("per_class_correct").get<std::vector<int64_t>>();
  for (const auto& row : doc.at("predictions")) {
    if (row.size() != 4) throw std::invalid_argument("a prediction row without 4 columns");
    row.at(0).get<int64_t>(), row.at(1).get<std::string>(), row.at(2).get<int64_t>();
    if (row.at(3).get<std::vector<int64_t>>().empty()) throw std::invalid_argument("a prediction row without outputs");
  }
}

// Shard i of n: its rows, checked (positions of its share, in order; counts as stated), added to `merged`.
void add_shard(const EvalShardFile& s, int64_t i, int64_t n, int64_t total, size_t classes, MergedEval& merged) {
  const std::string subject = "shard result '" + s.path + "'";
  const nlohmann::json& doc = s.doc;
  const int64_t share = Shard{i, n}.items_of(total);
  const int64_t images = doc.at("images").get<int64_t>(), skipped = doc.at("skipped").get<int64_t>();
  const auto& predictions = doc.at("predictions");
  if (doc.at("shard").at("attempted").get<int64_t>() != share || images + skipped != share ||
      static_cast<int64_t>(predictions.size()) != images)
    fail(subject,
         std::to_string(share) + " images (its share of " + std::to_string(total) + "), each evaluated or skipped",
         std::to_string(predictions.size()) + " predictions, " + std::to_string(images) + " images and " +
             std::to_string(skipped) + " skipped");
  int64_t previous = -1, correct = 0, correct_top5 = 0;
  for (const auto& r : predictions) {
    PredictionRow row{r.at(0).get<int64_t>(), r.at(1).get<std::string>(), r.at(2).get<int64_t>(),
                      r.at(3).get<std::vector<int64_t>>()};
    if (row.index <= previous || row.index >= total || row.index % n != i)
      fail(subject,
           "image positions k < " + std::to_string(total) + " with k mod " + std::to_string(n) + " = " +
               std::to_string(i) + ", in order",
           "position " + std::to_string(row.index));
    previous = row.index;
    correct += row.top[0] == row.label;
    correct_top5 += std::find(row.top.begin(), row.top.end(), row.label) != row.top.end();
    merged.rows.push_back(std::move(row));
  }
  const auto per_class_images = doc.at("per_class_images").get<std::vector<int64_t>>();
  const auto per_class_correct = doc.at("per_class_correct").get<std::vector<int64_t>>();
  int64_t per_class_sum = 0;
  for (int64_t c : per_class_images) per_class_sum += c;
  if (correct != doc.at("correct").get<int64_t>() || correct_top5 != doc.at("correct_top5").get<int64_t>() ||
      per_class_images.size() != classes || per_class_correct.size() != classes || per_class_sum != images)
    fail(subject, "counts that agree with its predictions and " + std::to_string(classes) + " classes",
         "correct " + doc.at("correct").dump() + " of " + std::to_string(correct) + " predictions right");
  EvalResult& r = merged.result;
  r.images += images, r.correct_top1 += correct, r.correct_top5 += correct_top5, r.skipped += skipped;
  for (size_t c = 0; c < classes; ++c)
    r.per_class_images[c] += per_class_images[c], r.per_class_correct[c] += per_class_correct[c];
  r.seconds += doc.at("seconds").get<double>();
}

MergedEval merge_checked(const std::vector<EvalShardFile>& shards) {
  const EvalShardFile& first = shards.front();
  std::vector<Shard> ids;
  std::vector<std::string> names;
  for (const EvalShardFile& s : shards) {
    check_same_run(s.doc.at("run"), first.doc.at("run"), "shard result '" + s.path + "'",
                   "shard result '" + first.path + "'");
    ids.push_back({s.doc.at("shard").at("index").get<int64_t>(), s.doc.at("shard").at("count").get<int64_t>()});
    names.push_back("shard result '" + s.path + "'");
  }
  const std::vector<size_t> order = shards_by_index(ids, names);
  const auto& run = first.doc.at("run");
  const int64_t total = run.at("images_attempted").get<int64_t>();
  const size_t classes = run.at("classes").get<size_t>();
  MergedEval merged;
  merged.shards = static_cast<int64_t>(order.size());
  merged.result.per_class_images.assign(classes, 0);
  merged.result.per_class_correct.assign(classes, 0);
  for (size_t i = 0; i < order.size(); ++i)
    add_shard(shards[order[i]], static_cast<int64_t>(i), merged.shards, total, classes, merged);
  std::sort(merged.rows.begin(), merged.rows.end(),
            [](const PredictionRow& a, const PredictionRow& b) { return a.index < b.index; });
  merged.non_image_files_skipped = first.doc.at("non_image_files_skipped").get<int64_t>();
  // The unsharded run's --json: the settings every shard shares, the merged counts.
  merged.metrics = first.doc;
  for (const char* key : {"shard", "run", "per_class_images", "per_class_correct", "predictions"})
    merged.metrics.erase(key);
  const nlohmann::json counts = to_json(merged.result);
  for (const auto& [key, value] : counts.items()) merged.metrics[key] = value;
  return merged;
}

}  // namespace

ImageFolder shard_of_folder(const ImageFolder& folder, int64_t limit, const Shard& shard,
                            std::vector<int64_t>* positions) {
  ImageFolder part = folder;
  part.images.clear();
  const int64_t attempted = limit > 0 ? std::min<int64_t>(limit, static_cast<int64_t>(folder.images.size()))
                                      : static_cast<int64_t>(folder.images.size());
  for (int64_t k = 0; k < attempted; ++k)
    if (shard.holds(k)) {
      part.images.push_back(folder.images[static_cast<size_t>(k)]);
      if (positions) positions->push_back(k);
    }
  return part;
}

nlohmann::json eval_shard_json(nlohmann::json metrics, const nlohmann::json& run, const Shard& shard, int64_t attempted,
                               int64_t total, const EvalResult& result, const std::vector<PredictionRow>& rows) {
  metrics["shard"] = {{"format", kFormat},    {"version", kVersion},    {"index", shard.index},
                      {"count", shard.count}, {"attempted", attempted}, {"total", total}};
  metrics["run"] = run;
  metrics["per_class_images"] = result.per_class_images;
  metrics["per_class_correct"] = result.per_class_correct;
  nlohmann::json predictions = nlohmann::json::array();
  for (const PredictionRow& r : rows) predictions.push_back({r.index, r.path, r.label, r.top});
  metrics["predictions"] = std::move(predictions);
  return metrics;
}

EvalShardFile read_eval_shard(const std::string& path) {
  const std::string subject = "shard result '" + path + "'";
  std::ifstream in(path);
  if (!in) fail(subject, "a readable file written by dfq eval --shard --json", "no such file or no permission");
  EvalShardFile s{path, {}};
  try {
    s.doc = nlohmann::json::parse(in);
    check_fields(s.doc);
  } catch (const nlohmann::json::exception& e) {
    fail(subject, "the JSON dfq eval --shard --json writes", one_line(e.what()));
  } catch (const std::invalid_argument& e) {
    fail(subject, "the JSON dfq eval --shard --json writes", one_line(e.what()));
  }
  return s;
}

MergedEval merge_eval_shards(const std::vector<EvalShardFile>& shards) {
  if (shards.empty()) fail("--merge", "at least one shard result", "none");
  try {
    return merge_checked(shards);
  } catch (const nlohmann::json::exception& e) {
    fail("--merge", "shard results as dfq eval --shard --json writes them", one_line(e.what()));
  }
}

void check_same_run(const nlohmann::json& run, const nlohmann::json& want, const std::string& subject,
                    const std::string& first) {
  std::vector<std::string> keys{"model_sha256"};
  for (const auto& [key, value] : want.items())
    if (key != "model_sha256") keys.push_back(key);
  for (const std::string& key : keys) {
    const std::string expected = want.contains(key) ? one_line(want.at(key).dump()) : "missing";
    if (!run.contains(key) || !want.contains(key) || run.at(key) != want.at(key))
      fail(subject, "the run of " + first + " (" + key + " " + expected + ")",
           key + " " + (run.contains(key) ? one_line(run.at(key).dump()) : "missing"));
  }
  for (const auto& [key, value] : run.items())
    if (!want.contains(key)) fail(subject, "the run of " + first, "an extra setting " + key);
}

std::vector<size_t> shards_by_index(const std::vector<Shard>& shards, const std::vector<std::string>& names) {
  if (shards.empty()) fail("--merge", "at least one shard", "none");
  const int64_t n = shards.front().count;
  std::map<int64_t, size_t> slots;
  for (size_t s = 0; s < shards.size(); ++s) {
    if (shards[s].count != n)
      fail(names[s], "a run split " + std::to_string(n) + " ways (as " + names.front() + ")",
           "one split " + std::to_string(shards[s].count) + " ways");
    if (shards[s].index < 0 || shards[s].index >= n)
      fail(names[s], "an index below its count " + std::to_string(n), std::to_string(shards[s].index));
    const auto [slot, fresh] = slots.emplace(shards[s].index, s);
    if (!fresh)
      fail(names[s], "each shard of the run once",
           "shard " + shard_name(shards[s].index, n) + " again (also " + names[slot->second] + ")");
  }
  if (static_cast<int64_t>(slots.size()) < n) {
    std::vector<int64_t> missing;  // the first few, so that the message stays a line
    for (int64_t i = 0; i < n && missing.size() < 8; ++i)
      if (!slots.count(i)) missing.push_back(i);
    const bool more = n - static_cast<int64_t>(slots.size()) > 8;
    fail("--merge", "all " + std::to_string(n) + " shards of the run",
         std::to_string(slots.size()) + " (no shard " + list(missing) + (more ? ",..." : "") + " of " +
             std::to_string(n) + ")");
  }
  std::vector<size_t> order;
  for (const auto& [index, position] : slots) order.push_back(position);
  return order;
}

}  // namespace dfq
