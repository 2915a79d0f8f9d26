// dfq export: a quantized model (.dfq) as an ONNX QDQ file (quant/export_onnx.h).
#include <cstdio>

#include "cli.h"
#include "commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "quant/artifact.h"
#include "quant/export_onnx.h"

namespace dfq::cli {

namespace {

const char* kUsage =
    "usage: dfq export --qmodel Q.dfq --out M.onnx [--opset 17|21] [--input-size HxW]\n"
    "Writes the quantized model as ONNX in the QDQ form (QuantizeLinear/DequantizeLinear at\n"
    "every point where dfq rounds, int8 weights per output channel, int32 biases), which\n"
    "ONNX Runtime, TensorRT and OpenVINO run. The file computes what `dfq eval --engine\n"
    "simulated` computes, up to rounding ties. Input N x C x H x W (N any), output the logits.\n\n"
    "example:\n"
    "  dfq export --qmodel resnet20-w4a4.dfq --out resnet20-w4a4.onnx\n";

std::string size_text(const std::vector<int64_t>& hw) {
  return hw.size() == 2 ? std::to_string(hw[0]) + "x" + std::to_string(hw[1]) : "none recorded";
}

}  // namespace

int run_export(int argc, char** argv) {
  std::string qmodel, out, input_size;
  OnnxExportOptions options;
  bool quiet = false;
  po::options_description desc("dfq export options");
  desc.add_options()
      ("help,h", "show this help")
      ("qmodel", po::value(&qmodel)->required(), "quantized model from dfq quantize (.dfq)")
      ("out", po::value(&out)->required(), "ONNX file to write")
      ("opset", po::value(&options.opset)->default_value(options.opset),
       "17: int8/uint8 Q/DQ, checked with onnx::checker | 21: also packed INT4 for <= 4-bit weights")
      ("input-size", po::value(&input_size),
       "input height x width, e.g. 32x32 (default: the size the model was calibrated at, recorded in the .dfq)")
      ("quiet", po::bool_switch(&quiet), "print nothing but errors");
  if (!parse(argc, argv, desc, kUsage)) return 0;
  if (options.opset != 17 && options.opset != 21)
    fail("--opset", "17 or 21", std::to_string(options.opset));
  check_output("--out", out, {{"--qmodel", qmodel}});
  const QuantizedModel model = load_quantized_model(qmodel);
  if (!input_size.empty()) options.input_size = cli::input_size("", input_size);
  if (options.input_size.empty() && model.config.input_size.empty())
    fail("--input-size", "the input height x width (" + qmodel + " predates recorded calibration sizes)", "none");
  if (!quiet)
    std::printf("export: %s -> %s, opset %d, input N x %lld x %s (%s)\n", qmodel.c_str(), out.c_str(), options.opset,
                static_cast<long long>(model.graph.input_channels),
                size_text(options.input_size.empty() ? model.config.input_size : options.input_size).c_str(),
                options.input_size.empty() ? "calibration size" : "--input-size");
  const std::string bytes = export_onnx(model, options);
  write_file_atomic(out, bytes);
  if (!quiet)
    std::printf("wrote %s: %zu bytes, %zu quantization points as QuantizeLinear/DequantizeLinear pairs\n", out.c_str(),
                bytes.size(), model.activations.size());
  return 0;
}

}  // namespace dfq::cli
