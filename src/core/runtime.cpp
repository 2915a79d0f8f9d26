#include "core/runtime.h"

#include <ATen/Parallel.h>

#include <string>
#include <thread>

#include "core/error.h"

namespace dfq {

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int set_threads(int threads) {
  if (threads < 0) fail("--threads", "0 (all cores) or a positive count", std::to_string(threads));
  const int effective = threads == 0 ? hardware_threads() : threads;
  at::set_num_threads(effective);
  return at::get_num_threads();
}

}  // namespace dfq
