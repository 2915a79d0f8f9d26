// simulate_precision Q.dfq INPUTS OUT_PREFIX: dfq's simulated engine on the
// tensors of `dfq eval --save-inputs INPUTS`, computed in float32 (what ONNX
// Runtime computes an exported file in) and in float64 (`dfq eval --engine
// simulated`); writes the logits as raw little-endian float32, N x K, to
// OUT_PREFIX.f32.bin and OUT_PREFIX.f64.bin. bench/ort_torchvision.sh uses it
// to tell ORT's differences from the simulation apart from float32's own: in
// networks that amplify small changes (random weights), the two precisions
// already round some points differently.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/execute.h"
#include "quant/artifact.h"
#include "quant/simulate.h"

namespace {

void write(const std::string& path, const at::Tensor& y) {
  const at::Tensor c = y.to(at::kFloat).contiguous();
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(c.data_ptr<float>()), c.numel() * 4);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: simulate_precision Q.dfq INPUTS OUT_PREFIX\n");
    return 2;
  }
  try {
    c10::InferenceMode guard;
    const dfq::QuantizedModel q = dfq::load_quantized_model(argv[1]);
    const nlohmann::json meta = nlohmann::json::parse(std::ifstream(std::string(argv[2]) + ".json"));
    const at::Tensor x = at::empty(meta.at("shape").get<std::vector<int64_t>>(), at::kFloat);
    std::ifstream in(argv[2], std::ios::binary);
    if (!in.read(reinterpret_cast<char*>(x.data_ptr<float>()), x.numel() * 4)) throw std::runtime_error("short inputs");
    dfq::FakeQuantizer observer(q);
    write(std::string(argv[3]) + ".f32.bin", dfq::forward(dfq::simulated_graph(q, at::kFloat), x, &observer));
    write(std::string(argv[3]) + ".f64.bin", dfq::SimulatedModel(q).forward(x));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simulate_precision: %s\n", e.what());
    return 1;
  }
  return 0;
}
