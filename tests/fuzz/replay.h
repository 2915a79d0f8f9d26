// What the fuzzers run on one input file, shared with the regression test that
// replays their findings through the normal (GCC) build. Contract of both: an
// input is accepted or refused with dfq::Error; any other exception, crash or
// sanitizer report is a bug (tests/fuzz/README.md).
#pragma once

#include <string>

namespace dfq::fuzz {

// What `dfq eval --qmodel` does with the file before and while it runs:
// load_quantized_model, the output width, the simulated and the integer
// engine (fast kernels), then one probe image (1 x C x 28 x 28, C the model's
// input channels) through both engines. Throws dfq::Error when refused.
void run_artifact(const std::string& path);

// decode_image on the file with each preprocessing the image fuzzer covers:
// fashion-mnist (1 channel, 28x28) and cifar (3 channels, 32x32) without
// resize, and the imagenet preset's resize 256 + centre crop 224 with 1 and 3
// channels. Returns how many accepted the image; refusals are dfq::Errors
// caught here (a multi-line message, against core/error.h, is rethrown as
// std::logic_error).
int run_image(const std::string& path);

}  // namespace dfq::fuzz
