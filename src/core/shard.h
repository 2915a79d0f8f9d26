// One shard of a job split N ways (dfq synth --shard, dfq eval --shard).
//
// Work items (synthesis batches, evaluated images) are dealt round-robin: item
// k belongs to shard k mod N. Round-robin rather than contiguous blocks because
// it balances the shards without knowing the items' cost: the short last
// synthesis batch falls to one shard only, and images, which an image folder
// lists class by class, spread over every shard whatever their sizes.
#pragma once

#include <cstdint>

namespace dfq {

struct Shard {
  int64_t index = 0;  // 0 <= index < count
  int64_t count = 1;  // 1: the whole job

  bool holds(int64_t item) const { return item % count == index; }
  // Items of this shard among items 0 .. total-1.
  int64_t items_of(int64_t total) const { return total > index ? (total - index + count - 1) / count : 0; }
};

}  // namespace dfq
