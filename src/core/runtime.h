// Process-wide runtime settings for LibTorch.
#pragma once

namespace dfq {

// Number of hardware threads (at least 1).
int hardware_threads();

// The most threads dfq starts for one pool: max(64, 4 x hardware_threads()),
// so that a mistyped count fails at once instead of creating thousands.
int max_threads();

// Sets LibTorch's intra-op thread count (Debian's LibTorch defaults to one);
// 0 means hardware_threads(). Returns the count in effect. Throws dfq::Error
// naming --threads for a negative count or one above max_threads().
int set_threads(int threads);

// Keeps freed large buffers in the process heap instead of returning them to
// the kernel. LibTorch allocates and frees every activation per pass; with
// glibc's default mmap threshold each 4 MB activation costs fresh zeroed pages
// (page faults) every iteration — measured ~13 % of synthesis time on
// ResNet-20. Call once at start-up; harmless to call again.
void keep_freed_memory_in_heap();

}  // namespace dfq
