// libFuzzer target: the image loader's per-file path (decode_image: the
// completeness check on the bytes, OpenCV's decoders, the channel rules,
// resize, centre crop and normalization) under the four preprocessings of
// replay.h's run_image. Every input is accepted or refused with dfq::Error;
// anything else is a finding.
#include <ATen/Parallel.h>
#include <opencv2/core.hpp>

#include <cstdint>

#include "memory_file.h"
#include "replay.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cv::setNumThreads(1);  // the machine is shared; OpenCV's resize would start a thread pool
  at::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dfq::fuzz::MemoryFile file;
  dfq::fuzz::run_image(file.write(data, size));
  return 0;
}
