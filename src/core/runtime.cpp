#include "core/runtime.h"

#include <algorithm>

#include <ATen/Parallel.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <string>
#include <thread>

#include "core/error.h"

namespace dfq {

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int max_threads() { return std::max(64, 4 * hardware_threads()); }

int set_threads(int threads) {
  if (threads < 0 || threads > max_threads())
    fail("--threads", "0 (all cores) or 1.." + std::to_string(max_threads()) + " (this machine has " +
                          std::to_string(hardware_threads()) + " hardware threads)",
         std::to_string(threads));
  const int effective = threads == 0 ? hardware_threads() : threads;
  at::set_num_threads(effective);
  return at::get_num_threads();
}

void keep_freed_memory_in_heap() {
#if defined(__GLIBC__)
  // 1 GiB: larger than any single activation dfq allocates on these models.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

}  // namespace dfq
