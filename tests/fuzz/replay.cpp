#include "replay.h"

#include <ATen/ATen.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "core/error.h"
#include "eval/preprocess.h"
#include "quant/artifact.h"
#include "quant/integer_engine.h"
#include "quant/simulate.h"

namespace dfq::fuzz {

void run_artifact(const std::string& path) {
  const QuantizedModel model = load_quantized_model(path);
  model.graph.output_width();  // dfq eval matches it against the class folders
  const SimulatedModel simulated(model);
  const IntegerEngine integer(model, IntKernel::kFast);
  // Channels beyond any real model would only make the probe large; such a
  // graph is still loaded and prepared above.
  const int64_t channels = model.graph.input_channels;
  if (channels < 1 || channels > 16) return;
  // A fixed, non-constant probe in the normalized input range (about [-2, 2]).
  const at::Tensor probe = at::arange(channels * 28 * 28, at::kFloat).remainder(29).div(7).sub(2).reshape({1, channels, 28, 28});
  simulated.forward(probe);
  integer.forward(probe);
}

int run_image(const std::string& path) {
  Preprocess gray_crop = preset("imagenet");
  gray_crop.name = "imagenet-gray";
  gray_crop.channels = 1;
  gray_crop.mean = {0.449f};
  gray_crop.std = {0.226f};
  struct Config {
    Preprocess pre;
    int height, width;
  };
  const std::vector<Config> configs = {
      {preset("fashion-mnist"), 28, 28}, {preset("cifar"), 32, 32}, {gray_crop, 224, 224}, {preset("imagenet"), 224, 224}};
  int accepted = 0;
  for (const Config& c : configs) {
    // Exactly the output's size, fresh each time, so ASan sees any write past it.
    std::vector<float> pixels(static_cast<size_t>(c.pre.channels) * c.height * c.width);
    try {
      decode_image(path, c.pre, c.height, c.width, pixels.data());
      ++accepted;
    } catch (const Error& e) {
      if (std::strchr(e.what(), '\n')) throw std::logic_error(std::string("multi-line dfq::Error: ") + e.what());
    }
  }
  return accepted;
}

}  // namespace dfq::fuzz
