// How good a synthetic set is, seen through the FP32 model.
#pragma once

#include <cstdint>
#include <vector>

#include "core/graph.h"
#include "synth/synth_set.h"

namespace dfq {

struct SynthQuality {
  double label_agreement = 0.0;          // % of labeled images the model classifies as their target (0 if none)
  std::vector<int64_t> class_histogram;  // predictions per output class
  // Mean pairwise L2 distance between images divided by sqrt(elements per image):
  // the RMS per-element difference in normalized input units (0 = all identical).
  // Over at most the first 1024 images.
  double diversity = 0.0;
  // The same figure within each target label, averaged over labels with at least
  // two images (0 without labels): exposes a generator that collapses to one
  // image per class, which the overall figure hides behind between-class distances.
  double diversity_within_class = 0.0;
};

SynthQuality measure_quality(const Graph& graph, const SynthSet& set, int64_t batch);

}  // namespace dfq
