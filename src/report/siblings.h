// Runs of the same model side by side: the sibling folders of a run
// (RUN/../*/card.json) whose card names the same model sha256, for the
// accuracy vs. bit width curve.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace dfq {

struct SameModelRun {
  std::string folder;    // the run folder's name
  bool current = false;  // the run the report is about
  double wbits = 0, abits = 0;
  std::optional<double> integer_top1, integer_top5, fp32_top1, images;
};

// Every run beside `run_dir` (itself included) whose card.json has
// model.sha256 == `sha256` and numeric wbits, abits and integer top-1, sorted
// by weight bits, activation bits and folder. Cards of the same model that
// cannot be used (malformed, fields missing) are skipped with a line in `notes`.
std::vector<SameModelRun> same_model_runs(const std::string& run_dir, const std::string& sha256,
                                        std::vector<std::string>& notes);

}  // namespace dfq
