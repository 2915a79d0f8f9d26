// dfq: data-free quantization of trained CNNs. Dispatches to sub-commands.
#include <c10/util/Exception.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "commands.h"
#include "core/error.h"
#include "core/runtime.h"

namespace {

const char* kHelp =
    "dfq - data-free quantization toolkit for trained CNNs\n\n"
    "usage: dfq <command> [options]      (dfq <command> --help for its options)\n\n"
    "commands:\n"
    "  eval      top-1/top-5 and images/s of a model (FP32, or a quantized .dfq) on an image folder\n"
    "  info      print the graph imported from a TorchScript model\n"
    "  synth     synthesize calibration images from the model's batch-norm statistics\n"
    "  quantize  quantize a model (W2-8 A2-8) calibrated on synthetic or real images\n"
    "  run       all of it in one run folder: synthesize, quantize, evaluate FP32 and integer, card, report\n"
    "  report    self-contained HTML report of a run folder (card, per-layer SQNR, plots, images)\n"
    "  export    a quantized model (.dfq) as an ONNX QDQ file for ONNX Runtime, TensorRT, OpenVINO\n\n"
    "example:\n"
    "  dfq eval --model ../shared/weights/cifar10-resnet20.pt --data ../shared/datasets/cifar10-test --preset cifar\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::fputs(kHelp, stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  dfq::keep_freed_memory_in_heap();
  // Past a file-size limit (ulimit -f) the kernel kills with SIGXFSZ; ignored,
  // the write fails with EFBIG and the error names the file like a full disk.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    if (command == "eval") return dfq::cli::run_eval(argc - 1, argv + 1);
    if (command == "info") return dfq::cli::run_info(argc - 1, argv + 1);
    if (command == "synth") return dfq::cli::run_synth(argc - 1, argv + 1);
    if (command == "quantize") return dfq::cli::run_quantize(argc - 1, argv + 1);
    if (command == "run") return dfq::cli::run_run(argc - 1, argv + 1);
    if (command == "report") return dfq::cli::run_report(argc - 1, argv + 1);
    if (command == "export") return dfq::cli::run_export(argc - 1, argv + 1);
    std::fprintf(stderr, "error: unknown command '%s': expected eval, info, synth, quantize, run, report or export (see dfq --help)\n",
                 command.c_str());
    return 2;
  } catch (const dfq::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  } catch (const c10::Error& e) {
    // LibTorch messages can span lines (context, hints); the contract is one line.
    const std::string what = e.what_without_backtrace();
    std::fprintf(stderr, "error: LibTorch: %s\n", what.substr(0, what.find('\n')).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 1;
}
