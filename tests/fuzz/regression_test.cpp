// Replays the fuzzers' inputs through this build (the normal GCC build in CI,
// the sanitizer build under tests/fuzz/run.sh): every file in
// tests/fuzz/regressions/ once crashed a reader (or made it allocate gigabytes)
// and must now be refused with a dfq::Error (images: by every preprocessing of
// run_image), and the seed corpora must stay valid inputs, so the fuzzers start
// from files that reach deep code.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "../test_util.h"
#include "eval/preprocess.h"
#include "quant/artifact.h"
#include "quant/qmodel.h"
#include "replay.h"

namespace fs = std::filesystem;
using namespace dfq;
using namespace dfq::testing;

namespace {

const fs::path kFuzz = kSource / "tests" / "fuzz";

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> files;
  if (fs::is_directory(dir))
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST(FuzzRegressions, ArtifactsThatCrashedAreRefused) {
  for (const std::string& path : files_in(kFuzz / "regressions" / "artifact")) {
    std::string message;
    try {
      fuzz::run_artifact(path);
    } catch (const Error& e) {
      message = e.what();
    }
    EXPECT_NE(message, "") << path << " was accepted";
    EXPECT_EQ(message.find('\n'), std::string::npos) << path << ": multi-line message " << message;
  }
}

TEST(FuzzRegressions, ImagesThatCrashedAreRefused) {
  for (const std::string& path : files_in(kFuzz / "regressions" / "image")) {
    int accepted = -1;
    EXPECT_NO_THROW(accepted = fuzz::run_image(path)) << path;
    EXPECT_EQ(accepted, 0) << path << " was accepted by a preprocessing";
  }
}

TEST(FuzzSeeds, ArtifactSeedsLoadAndRun) {
  const std::vector<std::string> seeds = files_in(kFuzz / "corpus" / "artifact");
  ASSERT_FALSE(seeds.empty());
  for (const std::string& path : seeds)
    EXPECT_EQ(error_of([&] { fuzz::run_artifact(path); }), "")
        << path << " (after a format change, regenerate the seeds: tests/fuzz/make-seeds.sh)";
}

TEST(FuzzSeeds, ImageSeedsDecode) {
  const std::vector<std::string> seeds = files_in(kFuzz / "corpus" / "image");
  ASSERT_FALSE(seeds.empty());
  for (const std::string& path : seeds) {
    const bool sixteen_bit = path.find("16bit") != std::string::npos;  // the one seed every preprocessing refuses
    EXPECT_EQ(fuzz::run_image(path) > 0, !sixteen_bit) << path;
  }
}

// The checks load_quantized_model runs (validate(QuantizedModel), qmodel.h), one
// inconsistency at a time on a real artifact, so each check is known to fire
// (the fuzzers' findings above usually trip several at once).
namespace {

QuantizedModel seed_model(const std::string& name) {
  return load_quantized_model((kFuzz / "corpus" / "artifact" / name).string());
}

template <class Change>
std::string refusal(const std::string& seed, Change&& change) {
  QuantizedModel q = seed_model(seed);
  change(q);
  return error_of([&] { validate(q); });
}

int first_weight_with_residual(const QuantizedModel& q) {
  for (const auto& [id, w] : q.weights)
    if (w.residual.defined()) return id;
  return -1;
}

int node_of(const QuantizedModel& q, const OpDef* op) {
  for (const Node& n : q.graph.nodes)
    if (n.op == op) return n.id;
  return -1;
}

}  // namespace

TEST(LoadChecks, RefuseEachInconsistencyOfAQuantizedModel) {
  const std::string residual = "fashion-w4a4-residual.dfq", whole = "whole-net-w8a8.dfq";
  EXPECT_EQ(refusal(residual, [](QuantizedModel&) {}), "");
  EXPECT_EQ(refusal(whole, [](QuantizedModel&) {}), "");
  ASSERT_GE(first_weight_with_residual(seed_model(residual)), 0);
  auto has = [](const std::string& message, const std::string& fragment) {
    return message.find(fragment) != std::string::npos;
  };
  EXPECT_PRED2(has, refusal(residual, [](QuantizedModel& q) {
    q.weights.at(first_weight_with_residual(q)).residual_shift[0] = 40;
  }), "residual shifts): expected values in [1, 5]");
  EXPECT_PRED2(has, refusal(residual, [](QuantizedModel& q) { q.weights.begin()->second.q.view(-1)[0] = 8; }),
               "expected values in [-7, 7]");
  EXPECT_PRED2(has, refusal(residual, [](QuantizedModel& q) { q.weights.begin()->second.scale[0] = 0.f; }),
               "(scales): expected finite values > 0");
  EXPECT_PRED2(has, refusal(residual, [](QuantizedModel& q) { q.weights.begin()->second.bias[0] = 1e30f; }),
               "at most 2^52 accumulator units");
  EXPECT_PRED2(has, refusal(residual, [](QuantizedModel& q) { q.weights.begin()->second.range.bits = 9; }),
               "bits: expected a bit width from 2 to 8");
  EXPECT_PRED2(has, refusal(residual, [](QuantizedModel& q) { q.weights.erase(q.weights.begin()); }),
               "expected quantized weights, found none");
  EXPECT_PRED2(has, refusal(residual, [](QuantizedModel& q) { q.activations.erase(0); }),
               "expected an entry (the node is a quantization point)");
  EXPECT_PRED2(has, refusal(residual, [](QuantizedModel& q) { q.activations[0].range.bits = 4; }),
               "expected 8 bits at the input");
  EXPECT_PRED2(has, refusal(residual, [](QuantizedModel& q) { q.activations[0].range.is_signed = false; }),
               "expected signed, found unsigned");
  EXPECT_PRED2(has, refusal(residual, [](QuantizedModel& q) { q.activations.begin()->second.scale = -1; }),
               "scale: expected a finite number > 0");
  EXPECT_PRED2(has, refusal(residual, [](QuantizedModel& q) {
    q.activations[static_cast<int>(q.graph.nodes.size()) - 1] = q.activations.at(0);  // the logits are no point
  }), "expected a quantization point");
  EXPECT_PRED2(has, refusal(whole, [](QuantizedModel& q) {
    q.graph.nodes[static_cast<size_t>(node_of(q, Op::Conv2d))].attrs.ints["stride"] = {1};
  }), "attribute 'stride': expected 2 integer(s), found 1");
  EXPECT_PRED2(has, refusal(whole, [](QuantizedModel& q) {
    q.graph.nodes[static_cast<size_t>(node_of(q, &op_by_name("max_pool2d")))].attrs.ints["padding"] = {5, 5};
  }), "attribute 'padding': expected at most half the (dilated) kernel");
  EXPECT_PRED2(has, refusal(whole, [](QuantizedModel& q) { q.graph.nodes[1].name = "two\nlines"; }),
               "a name without control characters");
  // Lookup-table layers (4-bit codes into 16 int8 levels): codes, table and levels each checked.
  const std::string lut = "fashion-w4a4-lut-pow2.dfq";
  EXPECT_EQ(refusal(lut, [](QuantizedModel&) {}), "");
  auto first_lut = [](QuantizedModel& q) -> WeightQuant& {
    for (auto& [id, w] : q.weights)
      if (w.lut.defined()) return w;
    throw std::runtime_error("no lookup-table layer in the seed");
  };
  EXPECT_PRED2(has, refusal(lut, [&](QuantizedModel& q) { first_lut(q).codes.view(-1)[0] = 16; }),
               "(codes): expected values in [0, 15]");
  EXPECT_PRED2(has, refusal(lut, [&](QuantizedModel& q) { first_lut(q).lut[0] = -128; }),
               "(lookup table): expected values in [-127, 127]");
  EXPECT_PRED2(has, refusal(lut, [&](QuantizedModel& q) { first_lut(q).residual = first_lut(q).q.clone(); }),
               "no residual tensor with a lookup table");
}

TEST(LoadChecks, ImageResizeIsBounded) {
  const std::string wide = (kFuzz / "regressions" / "image" / "png-1x20000-rgb-resize-3.9GB.png").string();
  std::vector<float> out(3 * 224 * 224);
  EXPECT_NE(error_of([&] { decode_image(wide, preset("imagenet"), 224, 224, out.data()); }).find("at most 2^27 pixels"),
            std::string::npos);
}
