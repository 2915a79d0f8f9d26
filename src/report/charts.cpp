#include "report/charts.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "report/gnuplot.h"
#include "report/html.h"

namespace dfq {

namespace {

// Colour-blind safe (Paul Tol's bright scheme).
const char* kBlue = "#4477aa";
const char* kOrange = "#ee7733";
const char* kGreen = "#228833";
const char* kGrey = "#777777";

std::string number(double value) {
  if (!std::isfinite(value)) return "NaN";
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%.9g", value);
  return buffer;
}

std::string header(int width, int height, const std::string& title) {
  return "set terminal svg size " + std::to_string(width) + "," + std::to_string(height) +
         " fixed noenhanced font 'sans,12' background rgb 'white'\n"
         "set encoding utf8\n" +
         (title.empty() ? std::string() : "set title " + gnuplot_string(title) + " font 'sans,14'\n") +
         "set border 3 lc rgb '#555555'\n"
         "set tics nomirror\n"
         "set grid ytics lc rgb '#dddddd' lt 1\n"
         "set key top right opaque box lc rgb '#cccccc'\n";
}

// Per-layer charts have no title of their own (the page's heading names them)
// and grow with the layer count so that every name stays legible.
int layers_width(size_t count) { return std::clamp(120 + 24 * static_cast<int>(count), 900, 4000); }

// Room below the axis for rotated layer names.
int label_room(const std::vector<std::string>& names) {
  size_t longest = 0;
  for (const std::string& n : names) longest = std::max(longest, n.size());
  return static_cast<int>(std::min<size_t>(longest, 40) * 3);
}

std::string layer_axis(size_t count) {
  return "set xrange [-0.7:" + number(static_cast<double>(count) - 0.3) + "]\n"
         "set xtics rotate by 45 right font 'sans,11'\n"
         "set style fill solid 0.85 noborder\n"
         // Above the bars, never over them.
         "set key outside top center horizontal noopaque nobox\n";
}

}  // namespace

std::string layer_bars_script(const std::string& ylabel, const std::vector<LayerBar>& bars, const std::string& series,
                              const std::string& highlight_series) {
  std::vector<std::string> names;
  for (const LayerBar& b : bars) names.push_back(b.name);
  std::string s = header(layers_width(bars.size()), 320 + label_room(names), "") + layer_axis(bars.size());
  // Bars start at 0; an SQNR below 0 dB (noise above signal) extends the axis down.
  double low = 0;
  for (const LayerBar& b : bars)
    if (std::isfinite(b.value)) low = std::min(low, b.value);
  s += "set ylabel " + gnuplot_string(ylabel) + "\nset boxwidth 0.7\nset yrange [" + number(low) + ":*]\n$bars << EOD\n";
  bool any_highlight = false;
  for (size_t i = 0; i < bars.size(); ++i) {
    s += std::to_string(i) + " \"" + gnuplot_data_label(bars[i].name) + "\" " + number(bars[i].value) + " " +
         (bars[i].highlight ? "1" : "0") + "\n";
    any_highlight = any_highlight || bars[i].highlight;
  }
  s += "EOD\nplot $bars using 1:($4 == 0 ? $3 : NaN):xtic(2) with boxes lc rgb '" + std::string(kBlue) +
       "' title " + gnuplot_string(series);
  if (any_highlight)
    s += ", $bars using 1:($4 == 1 ? $3 : NaN) with boxes lc rgb '" + std::string(kGreen) + "' title " +
         gnuplot_string(highlight_series);
  return s + "\n";
}

std::string layer_bits_script(const std::vector<LayerBits>& layers) {
  std::vector<std::string> names;
  double top = 8;
  for (const LayerBits& l : layers) {
    names.push_back(l.name);
    if (std::isfinite(l.weight_bits)) top = std::max(top, l.weight_bits);
    if (std::isfinite(l.activation_bits)) top = std::max(top, l.activation_bits);
  }
  std::string s = header(layers_width(layers.size()), 300 + label_room(names), "") +
                  layer_axis(layers.size());
  s += "set ylabel 'bits'\nset boxwidth 0.36\nset yrange [0:" + number(top + 2) + "]\nset ytics 1\n$bits << EOD\n";
  for (size_t i = 0; i < layers.size(); ++i)
    s += std::to_string(i) + " \"" + gnuplot_data_label(layers[i].name) + "\" " + number(layers[i].weight_bits) + " " +
         number(layers[i].activation_bits) + "\n";
  s += "EOD\nplot $bits using ($1 - 0.19):3:xtic(2) with boxes lc rgb '" + std::string(kBlue) +
       "' title 'weights', $bits using ($1 + 0.19):4 with boxes lc rgb '" + kOrange + "' title 'activations'\n";
  return s;
}

std::string loss_curve_script(const std::string& title, const std::vector<double>& loss) {
  std::string s = header(760, 360, title);
  s += "set xlabel 'optimization step'\nset ylabel 'BN loss (log scale)'\nset logscale y\nset grid xtics\n"
       "set xrange [0:*]\n$loss << EOD\n";
  for (size_t i = 0; i < loss.size(); ++i)
    if (std::isfinite(loss[i]) && loss[i] > 0) s += std::to_string(i) + " " + number(loss[i]) + "\n";
  s += "EOD\nplot $loss using 1:2 with lines lw 2 lc rgb '" + std::string(kBlue) + "' title 'BN loss'\n";
  return s;
}

std::string accuracy_vs_bits_script(const std::vector<AccuracyPoint>& points, std::optional<double> fp32_top1) {
  double low = 100, high = 0, wmin = 1e9, wmax = -1e9;
  for (const AccuracyPoint& p : points) {
    low = std::min(low, p.top1), high = std::max(high, p.top1);
    wmin = std::min(wmin, p.wbits), wmax = std::max(wmax, p.wbits);
  }
  if (fp32_top1) low = std::min(low, *fp32_top1), high = std::max(high, *fp32_top1);
  const double pad = std::max(1.0, (high - low) * 0.15);
  std::string s = header(760, 400, "Integer top-1 vs. weight bits");
  s += "set xlabel 'weight bits'\nset ylabel 'top-1 (%)'\nset key bottom right\nset grid xtics\n"
       "set xrange [" + number(wmin - 0.7) + ":" + number(wmax + 0.7) + "]\nset xtics 1\n"
       "set yrange [" + number(std::max(0.0, low - 2 * pad)) + ":" + number(std::min(100.0, high + pad) + pad * 0.5) + "]\n";
  // One line per activation bit width, points in weight-bit order; when no two
  // runs share one (e.g. W8A8, W6A6, W4A4) a single line through all of them.
  std::map<double, std::vector<AccuracyPoint>> series;
  for (const AccuracyPoint& p : points) series[p.abits].push_back(p);
  const bool one_line = series.size() == points.size();
  if (one_line) series = {{NAN, points}};
  std::string plot = "plot ";
  const char* colours[] = {kBlue, kOrange, kGreen, "#aa3377", "#66ccee", "#ccbb44"};
  int k = 0;
  for (auto& [abits, list] : series) {
    std::sort(list.begin(), list.end(), [](const AccuracyPoint& a, const AccuracyPoint& b) {
      return a.wbits < b.wbits || (a.wbits == b.wbits && a.abits < b.abits);
    });
    const std::string block = "$a" + std::to_string(k);
    s += block + " << EOD\n";
    for (const AccuracyPoint& p : list)
      s += number(p.wbits) + " " + number(p.top1) + " \"" + gnuplot_data_label(p.label) + "\"\n";
    s += "EOD\n";
    const std::string colour = colours[k % 6];
    const std::string title = one_line ? "integer" : "integer, " + number(abits) + "-bit activations";
    plot += std::string(k ? ", " : "") + block + " using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc rgb '" + colour +
            "' title " + gnuplot_string(title) + ", " + block +
            " using 1:2:3 with labels offset 0,1 font 'sans,10' tc rgb '" + colour + "' notitle";
    ++k;
  }
  if (fp32_top1)
    plot += ", " + number(*fp32_top1) + " with lines dt 2 lw 2 lc rgb '" + kGrey + "' title " +
            gnuplot_string("FP32 " + format_number(*fp32_top1, "%.2f") + " %");
  return s + plot + "\n";
}

}  // namespace dfq
