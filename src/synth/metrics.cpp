#include "synth/metrics.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "core/execute.h"

namespace dfq {

namespace {

// Mean pairwise L2 distance between the images divided by sqrt(elements per image).
double mean_pairwise_rms(const at::Tensor& images) {
  const int64_t m = images.size(0);
  if (m < 2) return 0.0;
  const at::Tensor flat = images.reshape({m, -1}).to(at::kDouble);
  const double pair_sum = at::cdist(flat, flat).sum().item<double>() / 2.0;  // each pair twice, diagonal 0
  return pair_sum / (static_cast<double>(m) * static_cast<double>(m - 1) / 2.0) /
         std::sqrt(static_cast<double>(flat.size(1)));
}

}  // namespace

SynthQuality measure_quality(const Graph& graph, const SynthSet& set, int64_t batch) {
  c10::InferenceMode guard;
  SynthQuality q;
  const int64_t n = set.images.size(0);
  int64_t labeled = 0, agree = 0;
  q.class_histogram.assign(static_cast<size_t>(std::max<int64_t>(graph.output_width(), 0)), 0);
  const at::Tensor all_labels = set.labels.contiguous();
  for (int64_t begin = 0; begin < n; begin += batch) {
    const int64_t len = std::min(batch, n - begin);
    const at::Tensor predicted = forward(graph, set.images.narrow(0, begin, len)).argmax(1).contiguous();
    const int64_t* p = predicted.data_ptr<int64_t>();
    const int64_t* label = all_labels.data_ptr<int64_t>() + begin;
    for (int64_t i = 0; i < len; ++i) {
      if (p[i] >= static_cast<int64_t>(q.class_histogram.size())) q.class_histogram.resize(static_cast<size_t>(p[i] + 1), 0);
      q.class_histogram[static_cast<size_t>(p[i])]++;
      if (label[i] >= 0) {
        ++labeled;
        agree += p[i] == label[i];
      }
    }
  }
  q.label_agreement = labeled ? 100.0 * static_cast<double>(agree) / static_cast<double>(labeled) : 0.0;
  q.diversity = mean_pairwise_rms(set.images.narrow(0, 0, std::min<int64_t>(n, 1024)));
  const int64_t max_label = n ? all_labels.max().item<int64_t>() : -1;
  int64_t groups = 0;
  double within = 0.0;
  for (int64_t label = 0; label <= max_label; ++label) {
    const at::Tensor members = at::nonzero(all_labels == label).flatten();
    if (members.size(0) < 2) continue;
    within += mean_pairwise_rms(set.images.index_select(0, members.narrow(0, 0, std::min<int64_t>(members.size(0), 256))));
    ++groups;
  }
  q.diversity_within_class = groups ? within / static_cast<double>(groups) : 0.0;
  return q;
}

}  // namespace dfq
