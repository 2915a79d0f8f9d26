// The dfq sub-commands. Each parses its own options, validates them, prints
// the effective configuration and calls the libraries; errors are thrown as
// dfq::Error and reported by main.
#pragma once

namespace dfq::cli {

int run_eval(int argc, char** argv);
int run_info(int argc, char** argv);
int run_synth(int argc, char** argv);
int run_quantize(int argc, char** argv);
int run_report(int argc, char** argv);

}  // namespace dfq::cli
