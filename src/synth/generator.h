// Generator synthesis: train a small label-conditioned generator G(z, y) so
// that its images match the model's BN statistics, are classified as y, and
// stay diverse (GDFQ / generative zero-shot quantization), then sample it.
#pragma once

#include <cstdint>
#include <string>

#include "core/graph.h"
#include "eval/preprocess.h"
#include "synth/bn_loss.h"
#include "synth/synth_set.h"

namespace dfq {

struct GeneratorOptions {
  int64_t count = 256;       // images to sample after training
  int64_t batch = 64;        // images per training step
  int64_t iterations = 200;  // training steps (ResNet-20: BN loss / 20 after ~30, / 200 after 150)
  double lr = 1e-2;          // Adam (betas 0.5, 0.999), cosine decay to 0
  int64_t latent = 128;      // size of z
  LabelMode labels = LabelMode::kBalanced;
  double ce_weight = 1.0;
  double diversity_weight = 5.0;  // measured on ResNet-20: 0.1 collapses each class to one image (within-class diversity 0.22), 5 gives 0.88 at 242x BN-loss drop
  BnLossOptions bn;
  uint64_t seed = 0;
  bool quiet = false;
  std::string load_path;     // non-empty: load this generator instead of training one
  std::string save_path;     // non-empty: save the (trained or loaded) generator here
};

// Trains (or loads) the generator for `graph` and samples `count` images in the
// model's normalized input space. Deterministic for a given seed and thread count.
SynthSet synthesize_with_generator(const Graph& graph, const Preprocess& pre, int64_t height, int64_t width,
                                   const GeneratorOptions& options, SynthReport& report);

}  // namespace dfq
