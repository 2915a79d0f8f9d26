// The self-contained HTML report of a dfq run folder (RUN/report.html): the
// card's table, per-layer bits and SQNR charts, accuracy vs. bit width over
// the runs of the same model beside it, the synthesis BN-loss curve and a grid
// of synthetic images. One file with no scripts, fonts or external resources;
// plots are inline SVG from gnuplot, images PNG data URIs.
#pragma once

#include <string>
#include <vector>

#include "report/image_grid.h"

namespace dfq {

struct HtmlReportOptions {
  std::string gnuplot = "gnuplot";  // the plotting program; when missing, plots are left out with a note
  GridOptions grid;
};

struct HtmlReport {
  std::string html;
  std::vector<std::string> notes;  // each part left out and why (also shown in the page)
};

// Reads RUN/card.json (required) and the optional RUN/synth.json,
// RUN/quantize.json, RUN/fp32.json, RUN/integer.json and RUN/synth/png/.
// Throws dfq::Error naming a missing card, a malformed file or a field of the
// wrong type.
HtmlReport render_run_report(const std::string& run_dir, const HtmlReportOptions& options = {});

// Writes run_dir/report.html atomically.
void write_run_report(const std::string& run_dir);

// Writes the report of `run_dir` to `out` atomically; returns its notes.
std::vector<std::string> write_run_report(const std::string& run_dir, const std::string& out,
                                          const HtmlReportOptions& options);

}  // namespace dfq
