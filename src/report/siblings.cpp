#include "report/siblings.h"

#include <algorithm>
#include <filesystem>
#include <tuple>

#include "core/error.h"
#include "report/json_input.h"

namespace dfq {

namespace fs = std::filesystem;

std::vector<SameModelRun> same_model_runs(const std::string& run_dir, const std::string& sha256,
                                        std::vector<std::string>& notes) {
  std::error_code ec;
  const fs::path run = fs::canonical(run_dir, ec);
  if (ec) fail("run folder '" + run_dir + "'", "an existing folder", ec.message());
  std::vector<fs::path> folders;
  for (fs::directory_iterator it(run.parent_path(), ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec)) folders.push_back(it->path());
  std::sort(folders.begin(), folders.end());

  std::vector<SameModelRun> runs;
  for (const fs::path& folder : folders) {
    const std::string shown = (fs::path("..") / folder.filename() / "card.json").string();
    try {
      std::optional<JsonInput> card = read_json_input((folder / "card.json").string());
      if (!card) continue;
      card->path = shown;
      if (string_field(*card, card->doc, "model.sha256") != sha256) continue;
      SameModelRun r;
      r.folder = folder.filename().string();
      r.current = fs::equivalent(folder, run, ec);
      const std::optional<double> wbits = number_field(*card, card->doc, "wbits");
      const std::optional<double> abits = number_field(*card, card->doc, "abits");
      r.integer_top1 = number_field(*card, card->doc, "results.integer.top1");
      r.integer_top5 = number_field(*card, card->doc, "results.integer.top5");
      r.fp32_top1 = number_field(*card, card->doc, "results.fp32.top1");
      r.images = number_field(*card, card->doc, "results.integer.images");
      if (!wbits || !abits || !r.integer_top1) {
        notes.push_back(shown + " is left out of the accuracy curve: it has no numeric " +
                        std::string(!wbits ? "wbits" : !abits ? "abits" : "results.integer.top1"));
        continue;
      }
      r.wbits = *wbits, r.abits = *abits;
      runs.push_back(r);
    } catch (const Error& e) {
      // Another run's broken card must not stop this run's report.
      notes.push_back(shown + " is left out of the accuracy curve: " + e.what());
    }
  }
  std::sort(runs.begin(), runs.end(), [](const SameModelRun& a, const SameModelRun& b) {
    return std::tie(a.wbits, a.abits, a.folder) < std::tie(b.wbits, b.abits, b.folder);
  });
  return runs;
}

}  // namespace dfq
