// dfq info: the imported graph, one line per node.
#include <cstdio>
#include <iostream>

#include "cli.h"
#include "commands.h"
#include "core/error.h"
#include "core/import_torchscript.h"
#include "core/runtime.h"
#include "core/summary.h"

namespace dfq::cli {

namespace {

const char* kUsage =
    "usage: dfq info --model M.pt [--preset cifar|imagenet|fashion-mnist | --input-size HxW]\n"
    "Prints the graph dfq imported from the model: one line per node with its name, op,\n"
    "inputs, output shape, parameter count and attributes, then the batch-norm layers.\n"
    "Output shapes need an input size: from --input-size, or the preset's (32, 224, 28).\n\n"
    "example:\n"
    "  dfq info --model ../shared/weights/cifar10-resnet20.pt --preset cifar\n";

}  // namespace

int run_info(int argc, char** argv) {
  std::string model, input_size, preset_name;
  int threads = 0;
  po::options_description options("dfq info options");
  options.add_options()
      ("help,h", "show this help")
      ("model", po::value(&model)->required(), "TorchScript model file")
      ("preset", po::value(&preset_name), "take the input size from a preset: cifar 32, imagenet 224, fashion-mnist 28")
      ("input-size", po::value(&input_size), "input height x width for the shape column, e.g. 32x32")
      ("threads", po::value(&threads)->default_value(threads), "compute threads (0: all cores)");
  if (!parse(argc, argv, options, kUsage)) return 0;
  if (!preset_name.empty() && !input_size.empty())
    fail("--preset/--input-size", "at most one of them", "both");
  require_at_least("--threads", threads, 0);
  set_threads(threads);
  Graph graph = import_torchscript(model);
  std::vector<int64_t> shape;
  if (!input_size.empty() || !preset_name.empty()) {
    const std::vector<int64_t> hw = cli::input_size(preset_name, input_size);
    shape = {1, graph.input_channels, hw[0], hw[1]};
  }
  std::printf("model %s\n", model.c_str());
  if (shape.empty())
    std::printf("(no input size given: pass --preset or --input-size to see output shapes)\n");
  else
    std::printf("input 1x%lldx%lldx%lld\n", static_cast<long long>(shape[1]), static_cast<long long>(shape[2]),
                static_cast<long long>(shape[3]));
  std::fputs(format_summary(graph, summarize(graph, shape)).c_str(), stdout);
  return 0;
}

}  // namespace dfq::cli
