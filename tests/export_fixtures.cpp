// export_fixtures OUT_DIR: for tests/ort_export_test.sh, every supported op
// fixture (tests/data/models/manifest.json) quantized with a random
// calibration batch, exported to ONNX, with inputs and the simulated engine's
// outputs to compare ONNX Runtime against. Writes, per fixture and setting:
//   OUT_DIR/NAME.in.f32 (+ .json)   inputs, the format of dfq eval --save-inputs
//   OUT_DIR/NAME-SETTING.onnx       SETTING: w8a8-o17, w4a4-o17, w4a4-o21
//   OUT_DIR/NAME-SETTING.sim.f32    simulated-engine outputs (float32, N x K)
// and OUT_DIR/list.tsv: one line "onnx<TAB>inputs<TAB>sim" per file.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/import_torchscript.h"
#include "quant/export_onnx.h"
#include "quant/quantize.h"
#include "quant/simulate.h"

namespace {

void write_floats(const std::string& path, const at::Tensor& t) {
  const at::Tensor c = t.to(at::kFloat).contiguous();
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(c.data_ptr<float>()), c.numel() * 4);
}

void write_inputs(const std::string& path, const at::Tensor& x) {
  write_floats(path, x);
  nlohmann::json meta = {{"format", "dfq-inputs"}, {"version", 1}, {"dtype", "float32"}, {"shape", x.sizes().vec()}};
  for (int64_t i = 0; i < x.size(0); ++i) meta["paths"].push_back("image" + std::to_string(i)), meta["labels"].push_back(0);
  std::ofstream(path + ".json") << meta.dump();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: export_fixtures OUT_DIR\n");
    return 2;
  }
  const std::filesystem::path out = argv[1], fixtures = std::filesystem::path(DFQ_SOURCE_DIR) / "tests/data/models";
  std::filesystem::create_directories(out);
  std::ifstream in(fixtures / "manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(in);
  std::ofstream list(out / "list.tsv");
  for (const auto& entry : manifest) {
    if (!entry["supported"].get<bool>()) continue;
    const std::string file = entry["file"].get<std::string>(), name = file.substr(0, file.rfind('.'));
    const dfq::Graph g = dfq::import_torchscript((fixtures / file).string());
    std::vector<int64_t> shape = entry["input_shape"].get<std::vector<int64_t>>();
    shape[0] = 16;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
    const at::Tensor calib = at::randn(shape, gen), x = at::randn(shape, gen);
    const std::string inputs = (out / (name + ".in.f32")).string();
    write_inputs(inputs, x);
    for (auto [w, a, opset] : {std::tuple{8, 8, 17}, std::tuple{4, 4, 17}, std::tuple{4, 4, 21}}) {
      dfq::QuantizeOptions o;
      o.weight_objective = dfq::WeightObjective::kWeight;
      o.weight_bits = w, o.activation_bits = a;
      dfq::QuantizeReport report;
      const dfq::QuantizedModel q = dfq::quantize_model(g, calib, o, report);
      dfq::OnnxExportOptions e;
      e.opset = opset;
      const std::string base = (out / (name + "-w" + std::to_string(w) + "a" + std::to_string(a) + "-o" +
                                       std::to_string(opset))).string();
      std::ofstream(base + ".onnx", std::ios::binary) << dfq::export_onnx(q, e);
      c10::InferenceMode guard;
      write_floats(base + ".sim.f32", dfq::SimulatedModel(q).forward(x));
      list << base << ".onnx\t" << inputs << "\t" << base << ".sim.f32\n";
    }
  }
  return 0;
}
