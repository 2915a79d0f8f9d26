// Process-wide runtime settings for LibTorch.
#pragma once

namespace dfq {

// Number of hardware threads (at least 1).
int hardware_threads();

// Sets LibTorch's intra-op thread count (Debian's LibTorch defaults to one);
// 0 means hardware_threads(). Returns the count in effect. Throws dfq::Error
// for a negative count.
int set_threads(int threads);

}  // namespace dfq
