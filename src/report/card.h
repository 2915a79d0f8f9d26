// The quantization card of a `dfq run` (after "confounding trade-offs ...
// quantization cards"): every choice that affects the accuracy or the
// deployability of the quantized model, the results, sizes and stage times, so
// two figures can be compared only when their cards agree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dfq {

struct RunStage {
  std::string name;     // "synthesis", "quantization", "fp32 evaluation", ...
  double seconds = 0;   // wall time of this run (a cache lookup when cached)
  bool cached = false;  // reused from the content-addressed cache
};

// What only the pipeline knows; everything else comes from the stages' JSON.
struct RunRecord {
  std::string model_path, model_sha256, data_dir, command_line;
  bool synthesized = false;  // false when the calibration data were given
  uint64_t seed = 0;
  int threads = 0;
  std::vector<RunStage> stages;
  // RUN/model.onnx (dfq export's QDQ form, opset 17) and its size, or why the
  // model could not be exported (then no file).
  std::string onnx_file, onnx_refusal;
  int64_t onnx_bytes = 0;
};

// Reads RUN/quantize.json, RUN/fp32.json, RUN/integer.json and, when
// record.synthesized, RUN/synth.json; writes RUN/card.json and RUN/card.md
// (atomically). Throws dfq::Error naming a missing or malformed input file.
void write_quantization_card(const std::string& run_dir, const RunRecord& record);

}  // namespace dfq
