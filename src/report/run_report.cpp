#include "report/run_report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <utility>

#include "core/atomic_file.h"
#include "core/error.h"
#include "report/charts.h"
#include "report/gnuplot.h"
#include "report/html.h"
#include "report/json_input.h"
#include "report/siblings.h"

namespace dfq {

namespace fs = std::filesystem;

namespace {

using Json = nlohmann::json;
using Row = std::vector<std::string>;
using Pairs = std::vector<std::pair<std::string, std::string>>;

struct Inputs {
  std::string dir;
  JsonInput card;
  std::optional<JsonInput> synth, quantize, fp32, integer;
};

// The page being built: its sections' HTML, the notes on what was left out,
// and the plotting state.
struct Page {
  const HtmlReportOptions& options;
  std::string body;
  std::vector<std::string> notes;
  int plots = 0;
  bool gnuplot_missing = false;
};

// A visible note in place; `summary` (default: the same text) goes to the list at the top once.
void note(Page& page, const std::string& text, const std::string& summary = "") {
  page.body += "<p class=\"note\">" + escape_html(text) + "</p>\n";
  const std::string line = summary.empty() ? text : summary;
  if (std::find(page.notes.begin(), page.notes.end(), line) == page.notes.end()) page.notes.push_back(line);
}

void plot(Page& page, const std::string& script, const std::string& title, const std::string& caption = "") {
  std::optional<std::string> svg;
  if (!page.gnuplot_missing) svg = run_gnuplot(page.options.gnuplot, script);
  if (!svg) {
    page.gnuplot_missing = true;
    const std::string missing = "the plotting program '" + page.options.gnuplot +
                                "' was not found (Debian: apt-get install gnuplot-nox)";
    note(page, "Plot \"" + title + "\" left out: " + missing + ".", "Plots left out: " + missing + ".");
    return;
  }
  ++page.plots;
  page.body += "<figure class=\"plot\"><div class=\"scroll\">" +
               inline_svg(*svg, "p" + std::to_string(page.plots) + "-", title) + "</div>";
  if (!caption.empty()) page.body += "<figcaption>" + escape_html(caption) + "</figcaption>";
  page.body += "</figure>\n";
}

// A number, possibly with a unit ("81.03 %", "1.5 points"): right-aligned in tables.
bool numeric(std::string cell) {
  for (const char* unit : {" %", " points"}) {
    const std::string u = unit;
    if (cell.size() > u.size() && cell.compare(cell.size() - u.size(), u.size(), u) == 0) cell.resize(cell.size() - u.size());
  }
  const size_t k = !cell.empty() && (cell[0] == '-' || cell[0] == '+') ? 1 : 0;
  if (k >= cell.size() || !std::isdigit(static_cast<unsigned char>(cell[k]))) return false;
  return cell.find_first_not_of("0123456789.,e+-", k) == std::string::npos;
}

// Columns whose cells are all numbers (or empty) are right-aligned, header included.
std::string table(const Row& head, const std::vector<Row>& rows, const std::vector<bool>& strong = {}) {
  std::vector<bool> right(head.size(), true);
  for (size_t c = 0; c < head.size(); ++c) {
    bool any = false;
    for (const Row& row : rows) {
      if (c >= row.size() || row[c].empty() || row[c] == "n/a") continue;
      any = true;
      if (!numeric(row[c])) right[c] = false;
    }
    right[c] = right[c] && any;
  }
  auto cell = [&](const char* tag, size_t c, const std::string& text) {
    return std::string("<") + tag + (c < right.size() && right[c] ? " class=\"num\">" : ">") + escape_html(text) + "</" +
           tag + ">";
  };
  std::string s = "<table><thead><tr>";
  for (size_t c = 0; c < head.size(); ++c) s += cell("th", c, head[c]);
  s += "</tr></thead><tbody>\n";
  for (size_t r = 0; r < rows.size(); ++r) {
    s += r < strong.size() && strong[r] ? "<tr class=\"current\">" : "<tr>";
    for (size_t c = 0; c < rows[r].size(); ++c) s += cell("td", c, rows[r][c]);
    s += "</tr>\n";
  }
  return s + "</tbody></table>\n";
}

std::string pairs_table(const Pairs& rows) {
  std::string s = "<table class=\"pairs\"><tbody>\n";
  for (const auto& [key, value] : rows) s += "<tr><th>" + escape_html(key) + "</th><td>" + escape_html(value) + "</td></tr>\n";
  return s + "</tbody></table>\n";
}

std::string fmt(std::optional<double> value, const char* format, const std::string& suffix = "") {
  return value ? format_number(*value, format) + suffix : "n/a";
}

std::string bits_label(double wbits, double abits) {
  return "W" + format_number(wbits, "%g") + "A" + format_number(abits, "%g");
}

// The run's bit widths as the card names them ("W4A4", "W mixed A mixed"), else from wbits/abits; "" if neither.
std::string scheme_label(const JsonInput& c) {
  if (auto scheme = string_field(c, c.doc, "scheme")) return *scheme;
  const std::optional<double> wbits = number_field(c, c.doc, "wbits"), abits = number_field(c, c.doc, "abits");
  return wbits && abits ? bits_label(*wbits, *abits) : "";
}

std::string file_name(const JsonInput& in) { return fs::path(in.path).filename().string(); }

void open_section(Page& page, const std::string& id, const std::string& title) {
  page.body += "<section id=\"" + id + "\"><h2>" + escape_html(title) + "</h2>\n";
}

// ---- the quantization card ----------------------------------------------

void card_section(Page& page, const Inputs& in) {
  const JsonInput& c = in.card;
  const Json& d = c.doc;
  open_section(page, "card", "Quantization card");

  Pairs run;
  if (auto v = string_field(c, d, "model.name")) run.push_back({"model", *v});
  if (auto v = string_field(c, d, "model.path")) run.push_back({"model file", *v});
  if (auto v = string_field(c, d, "model.sha256")) run.push_back({"model SHA-256", *v});
  const std::optional<double> wbits = number_field(c, d, "wbits"), abits = number_field(c, d, "abits");
  const std::string scheme = scheme_label(c);
  const bool mixed = scheme.find("mixed") != std::string::npos;
  if (!scheme.empty()) run.push_back({"scheme", scheme});
  if (wbits) run.push_back({"weight bits", format_number(*wbits, "%g") + (mixed ? " per weight on average (per layer below)" : "")});
  if (abits) run.push_back({"activation bits", format_number(*abits, "%g")});
  if (auto v = number_field(c, d, "seed")) run.push_back({"seed", format_number(*v, "%.0f")});
  if (auto v = number_field(c, d, "threads")) run.push_back({"threads", format_number(*v, "%.0f")});
  if (auto v = string_field(c, d, "machine")) run.push_back({"machine", *v});
  const std::optional<std::string> tool = string_field(c, d, "tool.name"), version = string_field(c, d, "tool.version");
  const std::optional<std::string> commit = string_field(c, d, "tool.commit");
  if (tool || version)
    run.push_back({"tool", tool.value_or("dfq") + " " + version.value_or("") + (commit ? " (commit " + *commit + ")" : "")});
  if (run.empty()) note(page, "card.json names no model, bit widths or run settings.");
  else page.body += "<h3>Model and run</h3>\n" + pairs_table(run);

  page.body += "<h3>Choices</h3>\n";
  const Json* choices = array_field(c, d, "choices");
  if (!choices || choices->empty()) {
    note(page, "card.json has no \"choices\": the quantization choices are not listed.");
  } else {
    std::vector<Row> rows;
    for (size_t i = 0; i < choices->size(); ++i) {
      const Json& entry = (*choices)[i];
      const std::string where = "choices[" + std::to_string(i) + "].";
      if (!entry.is_object()) fail(c.path + " field 'choices[" + std::to_string(i) + "]'", "an object {name, value}", entry.dump());
      const std::optional<std::string> name = string_field(c, entry, "name", where);
      std::optional<std::string> value = scalar_text(entry, "value");
      if (!value && entry.contains("value") && !entry["value"].is_null()) value = entry["value"].dump();
      rows.push_back({name.value_or("(unnamed)"), value.value_or("n/a")});
    }
    page.body += table({"choice", "value"}, rows);
  }

  page.body += "<h3>Results</h3>\n";
  if (!object_field(c, d, "results")) {
    note(page, "card.json has no \"results\": see the evaluation section for what was measured.");
  } else {
    std::vector<Row> rows;
    for (const char* engine : {"fp32", "integer"}) {
      const std::string key = std::string("results.") + engine;
      if (!object_field(c, d, key)) continue;
      rows.push_back({engine == std::string("fp32") ? "FP32" : "integer (" + (scheme.empty() ? "quantized" : scheme) + ")",
                      fmt(number_field(c, d, key + ".top1"), "%.2f", " %"), fmt(number_field(c, d, key + ".top5"), "%.2f", " %"),
                      fmt(number_field(c, d, key + ".images"), "%.0f")});
    }
    const std::optional<double> drop1 = number_field(c, d, "results.drop_top1"), drop5 = number_field(c, d, "results.drop_top5");
    if (drop1 || drop5) rows.push_back({"drop (FP32 - integer)", fmt(drop1, "%.2f", " points"), fmt(drop5, "%.2f", " points"), ""});
    if (rows.empty()) note(page, "card.json's \"results\" holds no FP32 or integer figures.");
    else page.body += table({"", "top-1", "top-5", "images"}, rows);
  }

  page.body += "<h3>Sizes</h3>\n";
  const std::optional<double> fp32_bytes = number_field(c, d, "sizes.fp32_bytes");
  const std::optional<double> artifact_bytes = number_field(c, d, "sizes.artifact_bytes");
  if (!fp32_bytes && !artifact_bytes) {
    note(page, "card.json has no \"sizes\".");
  } else {
    Pairs sizes;
    if (fp32_bytes) sizes.push_back({"FP32 parameters", format_bytes(*fp32_bytes)});
    if (artifact_bytes) sizes.push_back({"quantized artifact (.dfq)", format_bytes(*artifact_bytes)});
    if (fp32_bytes && artifact_bytes && *artifact_bytes > 0)
      sizes.push_back({"compression", format_number(*fp32_bytes / *artifact_bytes, "%.1f") + "x smaller"});
    const std::optional<std::string> onnx = string_field(c, d, "onnx.file");
    const std::optional<double> onnx_bytes = number_field(c, d, "onnx.bytes");
    if (onnx) sizes.push_back({"ONNX QDQ (" + *onnx + ")", onnx_bytes ? format_bytes(*onnx_bytes) : "?"});
    else if (auto refused = string_field(c, d, "onnx.refused")) sizes.push_back({"ONNX", "not exported: " + *refused});
    page.body += pairs_table(sizes);
  }

  page.body += "<h3>Stages</h3>\n";
  const Json* stages = array_field(c, d, "stages");
  if (!stages || stages->empty()) {
    note(page, "card.json has no \"stages\": stage times are not known.");
  } else {
    std::vector<Row> rows;
    double total = 0;
    for (size_t i = 0; i < stages->size(); ++i) {
      const Json& entry = (*stages)[i];
      const std::string where = "stages[" + std::to_string(i) + "].";
      if (!entry.is_object()) fail(c.path + " field 'stages[" + std::to_string(i) + "]'", "an object {name, seconds, cached}", entry.dump());
      const std::optional<double> seconds = number_field(c, entry, "seconds", where);
      const std::optional<bool> cached = bool_field(c, entry, "cached", where);
      if (seconds) total += *seconds;
      rows.push_back({string_field(c, entry, "name", where).value_or("(unnamed)"), fmt(seconds, "%.1f"),
                      cached ? (*cached ? "yes (reused)" : "no") : "n/a"});
    }
    rows.push_back({"total", format_number(total, "%.1f"), ""});
    page.body += table({"stage", "seconds", "cached"}, rows);
  }
  page.body += "</section>\n";
}

// ---- per-layer bits and SQNR ---------------------------------------------

struct LayerRow {
  std::string name;
  std::optional<double> weight_bits, activation_bits, parameters, weight_sqnr, clip;
  std::optional<bool> residual;
};

// Card layers first (the card is the record of the run), quantize.json's added by name.
std::vector<LayerRow> merge_layers(const Inputs& in) {
  std::vector<LayerRow> rows;
  std::map<std::string, size_t> index;
  if (const Json* layers = array_field(in.card, in.card.doc, "layers")) {
    for (size_t i = 0; i < layers->size(); ++i) {
      const Json& l = (*layers)[i];
      const std::string where = "layers[" + std::to_string(i) + "].";
      if (!l.is_object()) fail(in.card.path + " field 'layers[" + std::to_string(i) + "]'", "an object", l.dump());
      LayerRow r;
      r.name = string_field(in.card, l, "name", where).value_or("layer " + std::to_string(i));
      r.weight_bits = number_field(in.card, l, "weight_bits", where);
      r.activation_bits = number_field(in.card, l, "activation_bits", where);
      r.residual = bool_field(in.card, l, "residual", where);
      index[r.name] = rows.size();
      rows.push_back(r);
    }
  }
  if (in.quantize) {
    if (const Json* layers = array_field(*in.quantize, in.quantize->doc, "layers")) {
      for (size_t i = 0; i < layers->size(); ++i) {
        const Json& l = (*layers)[i];
        const std::string where = "layers[" + std::to_string(i) + "].";
        if (!l.is_object()) fail(in.quantize->path + " field 'layers[" + std::to_string(i) + "]'", "an object", l.dump());
        const std::string name = string_field(*in.quantize, l, "name", where).value_or("layer " + std::to_string(i));
        auto it = index.find(name);
        if (it == index.end()) {
          it = index.emplace(name, rows.size()).first;
          rows.push_back({name, {}, {}, {}, {}, {}, {}});
        }
        LayerRow& r = rows[it->second];
        if (!r.weight_bits) r.weight_bits = number_field(*in.quantize, l, "bits", where);
        if (!r.residual) r.residual = bool_field(*in.quantize, l, "residual", where);
        r.parameters = number_field(*in.quantize, l, "parameters", where);
        r.weight_sqnr = number_field(*in.quantize, l, "weight_sqnr_db", where);
        r.clip = number_field(*in.quantize, l, "clip_ratio", where);
      }
    }
  }
  return rows;
}

void layers_section(Page& page, const Inputs& in) {
  open_section(page, "layers", "Per-layer quantization");
  const std::vector<LayerRow> rows = merge_layers(in);

  page.body += "<h3>Bit width per layer</h3>\n";
  std::vector<LayerBits> bits;
  for (const LayerRow& r : rows)
    if (r.weight_bits) bits.push_back({r.name, *r.weight_bits, r.activation_bits.value_or(NAN)});
  if (bits.empty()) note(page, "Neither card.json nor quantize.json lists per-layer bit widths.");
  else plot(page, layer_bits_script(bits), "Bit width per layer",
            "Activation bits are those of the quantized activation the layer reads (its input; 8 bits for the "
            "network input), the factor of its bit-operations.");

  page.body += "<h3>Weight SQNR per layer</h3>\n";
  std::vector<LayerBar> sqnr;
  for (const LayerRow& r : rows)
    if (r.weight_sqnr) sqnr.push_back({r.name, *r.weight_sqnr, r.residual.value_or(false)});
  if (!in.quantize) note(page, "No quantize.json in the run folder: weight and activation SQNR are not known.");
  else if (sqnr.empty()) note(page, "quantize.json lists no per-layer weight SQNR.");
  else plot(page, layer_bars_script("SQNR (dB)", sqnr, "weights", "weights + residual tensor"),
            "Weight SQNR per layer", "Signal-to-quantization-noise ratio of each layer's quantized weights; higher is better.");

  std::vector<Row> point_rows;
  if (in.quantize) {
    page.body += "<h3>Activation SQNR per quantization point</h3>\n";
    std::vector<LayerBar> points;
    std::vector<std::string> exact;
    const Json* list = array_field(*in.quantize, in.quantize->doc, "points");
    for (size_t i = 0; list && i < list->size(); ++i) {
      const Json& p = (*list)[i];
      const std::string where = "points[" + std::to_string(i) + "].";
      if (!p.is_object()) fail(in.quantize->path + " field 'points[" + std::to_string(i) + "]'", "an object", p.dump());
      const std::string name = string_field(*in.quantize, p, "name", where).value_or("point " + std::to_string(i));
      const std::optional<double> db = number_field(*in.quantize, p, "activation_sqnr_db", where);
      // dfq quantize writes 999 for a point represented exactly (infinite SQNR).
      const bool is_exact = db && *db >= 999;
      if (db && !is_exact) points.push_back({name, *db, false});
      if (is_exact) exact.push_back(name);
      point_rows.push_back({name, string_field(*in.quantize, p, "range", where).value_or("n/a"),
                            fmt(number_field(*in.quantize, p, "scale", where), "%.4g"),
                            fmt(number_field(*in.quantize, p, "clip", where), "%.4g"),
                            is_exact ? "exact" : fmt(db, "%.2f")});
    }
    if (points.empty()) {
      note(page, "quantize.json lists no activation SQNR.");
    } else {
      std::string caption = "SQNR of each quantized activation on the calibration set.";
      if (!exact.empty()) {
        caption += " Represented exactly (not drawn):";
        for (const std::string& e : exact) caption += " " + e;
        caption += ".";
      }
      plot(page, layer_bars_script("SQNR (dB)", points, "activations", ""),
           "Activation SQNR per quantization point", caption);
    }
  }

  if (!rows.empty()) {
    std::vector<Row> table_rows;
    for (const LayerRow& r : rows)
      table_rows.push_back({r.name, fmt(r.weight_bits, "%g"), fmt(r.activation_bits, "%g"),
                            r.residual ? (*r.residual ? "yes" : "no") : "n/a", fmt(r.parameters, "%.0f"),
                            fmt(r.weight_sqnr, "%.2f"), fmt(r.clip, "%.3f")});
    page.body += "<details><summary>Layer table (" + std::to_string(rows.size()) + " layers)</summary>\n" +
                 table({"layer", "weight bits", "activation bits", "residual tensor", "parameters", "weight SQNR (dB)",
                        "clip / max"},
                       table_rows) +
                 "</details>\n";
  }
  if (!point_rows.empty())
    page.body += "<details><summary>Quantization points (" + std::to_string(point_rows.size()) + ")</summary>\n" +
                 table({"point", "range", "scale", "clip", "activation SQNR (dB)"}, point_rows) + "</details>\n";
  page.body += "</section>\n";
}

// ---- accuracy vs. bit width over the runs of the same model ----------------

void accuracy_section(Page& page, const Inputs& in) {
  open_section(page, "accuracy", "Accuracy vs. bit width");
  const std::optional<std::string> sha = string_field(in.card, in.card.doc, "model.sha256");
  if (!sha || sha->empty()) {
    note(page, "card.json has no model.sha256: runs of the same model cannot be recognized, so there is no accuracy "
               "vs. bit width curve.");
    page.body += "</section>\n";
    return;
  }
  std::vector<std::string> skipped;
  const std::vector<SameModelRun> runs = same_model_runs(in.dir, *sha, skipped);
  for (const std::string& s : skipped) note(page, s);
  const std::string parent = (fs::path(in.dir) / "..").lexically_normal().string();
  if (runs.size() < 2) {
    note(page, "Only " + std::string(runs.empty() ? "no run with integer results" : "this run") + " of the model (SHA-256 " +
                   sha->substr(0, 12) + "...) is in " + parent +
                   ": runs with other --wbits/--abits in sibling folders give an accuracy vs. bit width curve.",
         "Accuracy vs. bit width: no other run of this model in the parent folder, so no curve.");
    page.body += "</section>\n";
    return;
  }
  std::vector<AccuracyPoint> points;
  std::optional<double> fp32;
  std::vector<Row> rows;
  std::vector<bool> current;
  for (const SameModelRun& r : runs) {
    points.push_back({r.wbits, r.abits, *r.integer_top1, bits_label(r.wbits, r.abits)});
    if (r.fp32_top1 && (!fp32 || r.current)) fp32 = r.fp32_top1;
    rows.push_back({r.folder + (r.current ? " (this run)" : ""), bits_label(r.wbits, r.abits), fmt(r.integer_top1, "%.2f", " %"),
                    fmt(r.integer_top5, "%.2f", " %"), fmt(r.fp32_top1, "%.2f", " %"), fmt(r.images, "%.0f")});
    current.push_back(r.current);
  }
  plot(page, accuracy_vs_bits_script(points, fp32), "Integer top-1 vs. weight bits",
       std::to_string(runs.size()) + " runs of this model (same SHA-256) in " + parent + ".");
  page.body += table({"run folder", "bits", "integer top-1", "integer top-5", "FP32 top-1", "images"}, rows, current);
  page.body += "</section>\n";
}

// ---- synthesis ------------------------------------------------------------

void synthesis_section(Page& page, const Inputs& in) {
  open_section(page, "synthesis", "Synthesis of calibration images");
  if (!in.synth) {
    note(page, "No synth.json in the run folder: calibration did not use dfq synth's images (real data, or the file "
               "was removed), so there is no BN-loss curve.",
         "No synth.json: no synthesis summary or BN-loss curve.");
    page.body += "</section>\n";
    return;
  }
  const JsonInput& s = *in.synth;
  const Json& d = s.doc;
  const std::optional<std::string> method = string_field(s, d, "method");
  Pairs rows;
  if (method) rows.push_back({"method", *method});
  if (auto v = number_field(s, d, "count")) rows.push_back({"images", format_number(*v, "%.0f")});
  if (auto v = number_field(s, d, "iterations")) rows.push_back({"iterations", format_number(*v, "%.0f")});
  if (auto v = number_field(s, d, "batch")) rows.push_back({"batch", format_number(*v, "%.0f")});
  const std::optional<double> before = number_field(s, d, "initial_bn_loss"), after = number_field(s, d, "final_bn_loss");
  if (before || after) {
    std::string text = fmt(before, "%.4g") + " -> " + fmt(after, "%.4g");
    if (auto drop = number_field(s, d, "bn_loss_drop")) text += " (" + format_number(*drop, "%.1f") + "x lower)";
    rows.push_back({"BN loss", text});
  }
  if (auto v = number_field(s, d, "label_agreement"))
    rows.push_back({"FP32 model agrees with the target label", format_number(*v, "%.1f") + " %"});
  if (const Json* histogram = array_field(s, d, "class_histogram")) {
    std::string text;
    for (const Json& h : *histogram) text += (text.empty() ? "" : " ") + (h.is_number() ? h.dump() : std::string("?"));
    rows.push_back({"images per predicted class", text});
  }
  const std::optional<double> diversity = number_field(s, d, "diversity"), within = number_field(s, d, "diversity_within_class");
  if (diversity || within) rows.push_back({"diversity (overall / within a label)", fmt(diversity, "%.3f") + " / " + fmt(within, "%.3f")});
  if (auto v = number_field(s, d, "seconds")) {
    std::string text = format_number(*v, "%.1f") + " s";
    if (auto speed = number_field(s, d, "image_iterations_per_second")) text += " (" + format_number(*speed, "%.0f") + " image-iterations/s)";
    rows.push_back({"time", text});
  }
  if (!rows.empty()) page.body += pairs_table(rows);

  const Json* curve = array_field(s, d, "loss_curve");
  std::vector<double> loss;
  for (size_t i = 0; curve && i < curve->size(); ++i) {
    if (!(*curve)[i].is_number() && !(*curve)[i].is_null())
      fail(s.path + " field 'loss_curve[" + std::to_string(i) + "]'", "a number", (*curve)[i].dump());
    loss.push_back((*curve)[i].is_number() ? (*curve)[i].get<double>() : NAN);
  }
  const bool drawable = std::any_of(loss.begin(), loss.end(), [](double v) { return std::isfinite(v) && v > 0; });
  if (!drawable) {
    note(page, file_name(s) + " has no \"loss_curve\" with positive values: the BN-loss curve is left out.");
  } else {
    const bool generator = method && *method == "generator";
    plot(page, loss_curve_script(generator ? "BN loss per generator step" : "BN loss per step (first batch)", loss),
         "BN loss during synthesis",
         generator ? "Batch-norm statistics loss of each generator training step."
                   : "Batch-norm statistics loss of the first batch of images at each optimization step.");
  }
  page.body += "</section>\n";
}

void images_section(Page& page, const Inputs& in) {
  open_section(page, "images", "Synthetic images");
  const fs::path dir = fs::path(in.dir) / "synth" / "png";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    note(page, "No " + dir.string() + ": the calibration images were not dumped as PNG (dfq synth --dump-png), or "
               "calibration used real images.",
         "No synth/png folder: no grid of synthetic images.");
    page.body += "</section>\n";
    return;
  }
  const std::vector<ImageRow> rows = image_rows(dir.string(), page.options.grid);
  if (rows.empty()) {
    note(page, dir.string() + " holds no label folders with images: no grid of synthetic images.");
    page.body += "</section>\n";
    return;
  }
  const int folders = count_image_folders(dir.string());
  page.body += "<p>Up to " + std::to_string(page.options.grid.per_class) +
               " images per target label, enlarged without smoothing.</p>\n<div class=\"grid\">\n";
  for (const ImageRow& r : rows) {
    const std::string label = r.label == "unlabeled" ? r.label : "label " + r.label;
    page.body += "<div class=\"grid-row\"><div class=\"label\">" + escape_html(label) + "<small>" + std::to_string(r.shown) +
                 " of " + std::to_string(r.total) + "</small></div><img alt=\"" + escape_html("synthetic images, " + label) +
                 "\" width=\"" + std::to_string(r.width) + "\" height=\"" + std::to_string(r.height) +
                 "\" src=\"data:image/png;base64," + base64(r.png) + "\"></div>\n";
  }
  page.body += "</div>\n";
  if (folders > static_cast<int>(rows.size()))
    note(page, "Showing the first " + std::to_string(rows.size()) + " of " + std::to_string(folders) + " labels.");
  page.body += "</section>\n";
}

// ---- evaluation -----------------------------------------------------------

void evaluation_section(Page& page, const Inputs& in) {
  open_section(page, "evaluation", "Evaluation");
  std::vector<const JsonInput*> files;
  Row head = {""};
  for (const auto& [input, title] : {std::pair{&in.fp32, "FP32 (fp32.json)"}, std::pair{&in.integer, "quantized (integer.json)"}}) {
    if (*input) {
      files.push_back(&**input);
      head.push_back(title);
    }
  }
  if (!in.fp32) note(page, "No fp32.json in the run folder: the FP32 evaluation is not shown.");
  if (!in.integer) note(page, "No integer.json in the run folder: the quantized model's evaluation is not shown.");
  if (!files.empty()) {
    std::vector<Row> rows;
    auto add = [&](const std::string& label, const std::string& key, const char* format, const std::string& suffix) {
      Row row = {label};
      bool any = false;
      for (const JsonInput* f : files) {
        const std::optional<double> v = number_field(*f, f->doc, key);
        row.push_back(fmt(v, format, suffix));
        any = any || v;
      }
      if (any) rows.push_back(row);
    };
    auto add_text = [&](const std::string& label, const std::string& key) {
      Row row = {label};
      bool any = false;
      for (const JsonInput* f : files) {
        const std::optional<std::string> v = scalar_text(f->doc, key);
        row.push_back(v.value_or("n/a"));
        any = any || v;
      }
      if (any) rows.push_back(row);
    };
    add_text("engine", "engine");
    add("top-1", "top1", "%.2f", " %");
    add("top-5", "top5", "%.2f", " %");
    add("correct (top-1)", "correct", "%.0f", "");
    add("images", "images", "%.0f", "");
    add("seconds", "seconds", "%.2f", "");
    add("images/s", "images_per_second", "%.0f", "");
    add("threads", "threads", "%.0f", "");
    add("batch", "batch", "%.0f", "");
    add_text("preset", "preset");
    add_text("data", "data");
    add_text("model", "model");
    page.body += table(head, rows);
  }
  if (in.integer) {
    if (const Json* acc = array_field(*in.integer, in.integer->doc, "accumulators"); acc && !acc->empty()) {
      std::vector<Row> rows;
      double widest = 0;
      std::string widest_name;
      int over = 0;
      for (size_t i = 0; i < acc->size(); ++i) {
        const Json& a = (*acc)[i];
        const std::string where = "accumulators[" + std::to_string(i) + "].";
        if (!a.is_object()) fail(in.integer->path + " field 'accumulators[" + std::to_string(i) + "]'", "an object", a.dump());
        const std::string name = string_field(*in.integer, a, "name", where).value_or("?");
        const std::optional<double> bits = number_field(*in.integer, a, "bits", where);
        const bool overflow = bool_field(*in.integer, a, "overflows_int16", where).value_or(false);
        if (bits && *bits > widest) widest = *bits, widest_name = name;
        over += overflow;
        rows.push_back({name, fmt(bits, "%.0f"), fmt(number_field(*in.integer, a, "worst_case", where), "%.0f"),
                        overflow ? "yes" : "no"});
      }
      page.body += "<p>Worst-case accumulator: " + format_number(widest, "%.0f") + " bits (" + escape_html(widest_name) +
                   "); " + std::to_string(over) + " of " + std::to_string(acc->size()) +
                   " layers need more than 16 bits.</p>\n<details><summary>Accumulator widths</summary>\n" +
                   table({"layer", "bits", "worst case |sum|", "over int16"}, rows) + "</details>\n";
    }
  }
  page.body += "</section>\n";
}

// ---- the page ---------------------------------------------------------------

const char* kStyle = R"css(
:root { color-scheme: light; }
body { margin: 0; background: #f4f5f7; color: #1d2329;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; }
header { background: #1f3b57; color: #fff; padding: 20px 32px 18px; }
header h1 { margin: 0 0 4px; font-size: 24px; font-weight: 600; }
header p { margin: 0; opacity: .85; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 14px; }
.tile { background: rgba(255,255,255,.12); border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.tile b { display: block; font-size: 22px; font-weight: 600; }
.tile span { font-size: 13px; opacity: .85; }
nav { background: #fff; border-bottom: 1px solid #dfe3e8; padding: 8px 32px; position: sticky; top: 0; z-index: 1; }
nav a { color: #1f5f99; margin-right: 18px; text-decoration: none; font-size: 14px; }
main { max-width: 1240px; margin: 0 auto; padding: 4px 24px 32px; }
section, .notes { background: #fff; border: 1px solid #dfe3e8; border-radius: 8px; padding: 6px 24px 18px; margin: 18px 0; }
h2 { font-size: 20px; font-weight: 600; margin: 14px 0 8px; }
h3 { font-size: 16px; font-weight: 600; margin: 18px 0 6px; color: #33414e; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 14px; }
th, td { padding: 4px 12px 4px 0; border-bottom: 1px solid #edf0f2; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #cfd6dd; }
table.pairs th { font-weight: normal; color: #55616d; padding-right: 24px; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.current td { font-weight: 600; }
td { overflow-wrap: anywhere; }
.note { background: #fff7e0; border-left: 4px solid #e8a800; padding: 6px 10px; margin: 8px 0; font-size: 14px; }
.notes ul { margin: 6px 0; padding-left: 20px; }
figure.plot { margin: 8px 0 14px; }
figcaption { color: #55616d; font-size: 13px; margin-top: 2px; }
.scroll { overflow-x: auto; }
.scroll svg { display: block; }
details { margin: 6px 0; }
summary { cursor: pointer; color: #1f5f99; }
.grid-row { display: flex; align-items: center; gap: 14px; margin: 6px 0; }
.grid-row .label { width: 90px; flex: none; font-size: 14px; }
.grid-row small { display: block; color: #6b7782; }
.grid-row img { image-rendering: pixelated; border: 1px solid #dfe3e8; }
footer { color: #6b7782; font-size: 13px; text-align: center; padding: 0 24px 24px; }
)css";

std::string tile(const std::string& label, const std::string& value, const std::string& detail) {
  return "<div class=\"tile\"><span>" + escape_html(label) + "</span><b>" + escape_html(value) + "</b><span>" +
         escape_html(detail) + "</span></div>";
}

std::string header_html(const Inputs& in) {
  const JsonInput& c = in.card;
  const std::string model = string_field(c, c.doc, "model.name").value_or(
      fs::path(string_field(c, c.doc, "model.path").value_or("unnamed model")).stem().string());
  const std::string bits = scheme_label(c);
  std::string s = "<header><h1>" + escape_html(model + (bits.empty() ? "" : " " + bits)) + "</h1><p>dfq run report of " +
                  escape_html(in.dir) + "</p>\n<div class=\"tiles\">";
  // The card's results, else the evaluation files'.
  auto top1 = [&](const char* engine, const std::optional<JsonInput>& file) -> std::optional<double> {
    if (auto v = number_field(c, c.doc, std::string("results.") + engine + ".top1")) return v;
    return file ? number_field(*file, file->doc, "top1") : std::nullopt;
  };
  const std::optional<double> fp32 = top1("fp32", in.fp32), integer = top1("integer", in.integer);
  if (fp32) s += tile("FP32 top-1", format_number(*fp32, "%.2f") + " %", "float model");
  if (integer) s += tile("integer top-1", format_number(*integer, "%.2f") + " %", bits.empty() ? "quantized model" : bits + ", integer-only");
  if (fp32 && integer) s += tile("top-1 drop", format_number(*fp32 - *integer, "%.2f"), "points");
  const std::optional<double> fp32_bytes = number_field(c, c.doc, "sizes.fp32_bytes");
  const std::optional<double> artifact_bytes = number_field(c, c.doc, "sizes.artifact_bytes");
  if (fp32_bytes && artifact_bytes && *artifact_bytes > 0)
    s += tile("size", format_number(*fp32_bytes / *artifact_bytes, "%.1f") + "x smaller",
              format_number(*artifact_bytes / 1024.0, "%.0f") + " KiB vs " + format_number(*fp32_bytes / 1024.0, "%.0f") + " KiB");
  return s + "</div></header>\n";
}

Inputs read_inputs(const std::string& run_dir) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec))
    fail("run folder '" + run_dir + "'", "an existing folder", fs::exists(run_dir, ec) ? "a file" : "nothing there");
  const std::string card_path = (fs::path(run_dir) / "card.json").string();
  std::optional<JsonInput> card = read_json_input(card_path);
  if (!card) fail(card_path, "the run's quantization card (written by dfq run)", "no such file");
  Inputs in{run_dir, std::move(*card), {}, {}, {}, {}};
  in.synth = read_json_input((fs::path(run_dir) / "synth.json").string());
  in.quantize = read_json_input((fs::path(run_dir) / "quantize.json").string());
  in.fp32 = read_json_input((fs::path(run_dir) / "fp32.json").string());
  in.integer = read_json_input((fs::path(run_dir) / "integer.json").string());
  return in;
}

}  // namespace

HtmlReport render_run_report(const std::string& run_dir, const HtmlReportOptions& options) {
  const Inputs in = read_inputs(run_dir);
  Page page{options, "", {}, 0, false};
  card_section(page, in);
  layers_section(page, in);
  accuracy_section(page, in);
  synthesis_section(page, in);
  images_section(page, in);
  evaluation_section(page, in);

  const std::string title = string_field(in.card, in.card.doc, "model.name").value_or("dfq run");
  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      // Nothing may load from elsewhere and nothing may run, even if a name slipped through unescaped.
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<link rel=\"icon\" href=\"data:,\">\n"
      "<title>" + escape_html("dfq report: " + title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n" +
      header_html(in) +
      "<nav><a href=\"#card\">Card</a><a href=\"#layers\">Layers</a><a href=\"#accuracy\">Accuracy vs. bits</a>"
      "<a href=\"#synthesis\">Synthesis</a><a href=\"#images\">Images</a><a href=\"#evaluation\">Evaluation</a></nav>\n<main>\n";
  if (!page.notes.empty()) {
    html += "<div class=\"notes\"><h2>Left out of this report</h2><ul>\n";
    for (const std::string& n : page.notes) html += "<li>" + escape_html(n) + "</li>\n";
    html += "</ul></div>\n";
  }
  html += page.body + "</main>\n<footer>Written by dfq report from " + escape_html(in.dir) +
          ". One self-contained file: no scripts, fonts or external resources; plots rendered by gnuplot.</footer>\n"
          "</body>\n</html>\n";
  return {html, page.notes};
}

std::vector<std::string> write_run_report(const std::string& run_dir, const std::string& out,
                                          const HtmlReportOptions& options) {
  HtmlReport report = render_run_report(run_dir, options);
  write_file_atomic(out, report.html);
  return report.notes;
}

void write_run_report(const std::string& run_dir) {
  write_run_report(run_dir, (fs::path(run_dir) / "report.html").string(), HtmlReportOptions{});
}

}  // namespace dfq
