// dfq report: the self-contained HTML report of a run folder.
#include <cstdio>
#include <filesystem>

#include "cli.h"
#include "commands.h"
#include "core/error.h"
#include "report/run_report.h"

namespace dfq::cli {

namespace {

const char* kUsage =
    "usage: dfq report --run DIR [--out FILE]\n"
    "Writes one self-contained HTML file (no scripts, fonts or external resources) from a\n"
    "run folder: DIR/card.json (required), DIR/quantize.json, DIR/synth.json, DIR/synth/png/,\n"
    "DIR/fp32.json and DIR/integer.json (each optional; what is missing is noted in the page).\n"
    "Runs of the same model in sibling folders (DIR/../*/card.json, same model.sha256) give the\n"
    "accuracy vs. bit width curve. Plots need gnuplot (Debian gnuplot-nox); without it they are\n"
    "left out with a note.\n\n"
    "example:\n"
    "  dfq report --run runs/resnet20-w4a4      (writes runs/resnet20-w4a4/report.html)\n";

}  // namespace

int run_report(int argc, char** argv) {
  std::string run, out;
  po::options_description options("dfq report options");
  options.add_options()
      ("help,h", "show this help")
      ("run", po::value(&run)->required(), "run folder (with card.json)")
      ("out", po::value(&out), "output HTML file (default: RUN/report.html)");
  if (!parse(argc, argv, options, kUsage)) return 0;
  if (out.empty()) out = (std::filesystem::path(run) / "report.html").string();
  const std::vector<std::string> notes = write_run_report(run, out, HtmlReportOptions{});
  for (const std::string& n : notes) std::printf("note      %s\n", n.c_str());
  std::printf("wrote     %s\n", out.c_str());
  return 0;
}

}  // namespace dfq::cli
