// gnuplot scripts of the report's charts (the data inlined as data blocks);
// run_gnuplot renders them. Pure string building, so tests can read them.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace dfq {

// One bar of a per-layer chart; `highlight` bars get the second colour.
struct LayerBar {
  std::string name;
  double value = 0;
  bool highlight = false;
};

// Bars in layer order, labelled with the layer names (no title: the page's
// heading gives it).
std::string layer_bars_script(const std::string& ylabel, const std::vector<LayerBar>& bars, const std::string& series,
                              const std::string& highlight_series);

// Weight and activation bits of one layer (NaN: that bar is left out).
struct LayerBits {
  std::string name;
  double weight_bits = 0, activation_bits = 0;
};

// Paired bars, weight and activation bits, per layer (no title).
std::string layer_bits_script(const std::vector<LayerBits>& layers);

// A loss per optimization step on a log scale (non-positive values left out).
std::string loss_curve_script(const std::string& title, const std::vector<double>& loss);

// One run of the model: integer top-1 at its weight/activation bits.
struct AccuracyPoint {
  double wbits = 0, abits = 0, top1 = 0;
  std::string label;  // e.g. "W4A4"
};

// Integer top-1 against weight bits, one line per activation bit width (one
// line through all points when no two share an activation bit width), each
// point labelled, and the FP32 top-1 as a dashed line when known.
std::string accuracy_vs_bits_script(const std::vector<AccuracyPoint>& points, std::optional<double> fp32_top1);

}  // namespace dfq
