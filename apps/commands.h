// The dfq sub-commands. Each parses its own options, validates them, prints
// the effective configuration and calls the libraries; errors are thrown as
// dfq::Error and reported by main.
#pragma once

#include <boost/program_options.hpp>

namespace dfq::cli {

int run_eval(int argc, char** argv);
int run_info(int argc, char** argv);
int run_synth(int argc, char** argv);
int run_quantize(int argc, char** argv);
int run_report(int argc, char** argv);
int run_run(int argc, char** argv);
int run_export(int argc, char** argv);

// Each sub-command's options, bound to throwaway values: `dfq run` accepts
// their union and routes every option to the stages that take it.
boost::program_options::options_description synth_options();
boost::program_options::options_description quantize_options();
boost::program_options::options_description eval_options();

}  // namespace dfq::cli
