// libFuzzer target: the .dfq reader and what dfq eval --qmodel builds from a
// loaded model (replay.h: run_artifact).
//
// A fuzzer that flips bytes would fail the CRC-32 check almost every time, so
// the target writes the correct CRC into the last four bytes before reading
// (the CRC check itself is a few lines the unit tests cover), and the custom
// mutator below knows the layout (artifact.h): it mutates the header JSON as
// text or as a tree, or the tensor data, and then rewrites the header length,
// so most mutants reach the header parser and the model checks rather than
// the length check.
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "memory_file.h"
#include "replay.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

constexpr char kMagic[8] = {'D', 'F', 'Q', 'M', 'O', 'D', 'E', 'L'};
constexpr size_t kFixed = 8 + 4 + 8;  // magic, version, header length

uint32_t crc_of(const uint8_t* data, size_t size) {
  return static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(data), static_cast<uInt>(size)));
}

// An input split at the layout's boundaries (the version is kept as is).
struct Parts {
  uint32_t version = 0;
  std::string header, data;
};

bool split(const uint8_t* bytes, size_t size, Parts* p) {
  if (size < kFixed + 4 || std::memcmp(bytes, kMagic, sizeof kMagic) != 0) return false;
  uint64_t header_length = 0;
  std::memcpy(&p->version, bytes + 8, 4);
  std::memcpy(&header_length, bytes + 12, 8);
  if (header_length > size - kFixed - 4) return false;
  p->header.assign(reinterpret_cast<const char*>(bytes) + kFixed, header_length);
  p->data.assign(reinterpret_cast<const char*>(bytes) + kFixed + header_length, size - kFixed - header_length - 4);
  return true;
}

std::string join(const Parts& p) {
  std::string out(kMagic, sizeof kMagic);
  const uint64_t header_length = p.header.size();
  out.append(reinterpret_cast<const char*>(&p.version), 4);
  out.append(reinterpret_cast<const char*>(&header_length), 8);
  out += p.header;
  out += p.data;
  const uint32_t crc = crc_of(reinterpret_cast<const uint8_t*>(out.data()), out.size());
  out.append(reinterpret_cast<const char*>(&crc), 4);
  return out;
}

// libFuzzer's own byte mutations on a part of the input.
void mutate_bytes(std::string& s, size_t max_size) {
  if (s.empty()) s = "{";
  const size_t limit = std::max(max_size, s.size() + 64);
  std::vector<uint8_t> buffer(s.begin(), s.end());
  buffer.resize(limit);
  buffer.resize(LLVMFuzzerMutate(buffer.data(), s.size(), limit));
  s.assign(buffer.begin(), buffer.end());
}

void collect(nlohmann::json& j, std::vector<nlohmann::json*>& out) {
  out.push_back(&j);
  if (j.is_structured())
    for (auto& child : j) collect(child, out);
}

// Values at the edges of what the reader and the engines accept.
nlohmann::json interesting_number(std::minstd_rand& rng) {
  static const std::vector<nlohmann::json> values = {
      0, -1, 1, 2, 3, 4, 7, 8, 9, 15, 16, 31, 32, 33, 62, 63, 64, 127, 128, 255, 256, 1 << 16,
      std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min(), int64_t{1} << 32,
      int64_t{1} << 53, std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min(),
      std::numeric_limits<uint64_t>::max(), 0.5, -0.5, 1e-30, 1e30, 1e300, -1e300, 6.0};
  return values[rng() % values.size()];
}

nlohmann::json interesting_string(std::minstd_rand& rng) {
  static const std::vector<std::string> values = {
      "", "input", "conv2d", "batch_norm", "relu", "clamp", "add", "slice", "pad", "max_pool2d", "avg_pool2d",
      "adaptive_avg_pool2d", "flatten", "reshape", "linear", "cat", "mean", "Float", "Char", "Long", "Int", "Byte",
      "Double", "Half", "weight", "bias", "running_mean", "running_var", "alpha", "min", "max", "value", "eps"};
  return values[rng() % values.size()];
}

// One structural change of the header's JSON tree.
void mutate_tree(nlohmann::json& root, std::minstd_rand& rng) {
  std::vector<nlohmann::json*> nodes;
  collect(root, nodes);
  nlohmann::json& j = *nodes[rng() % nodes.size()];
  const nlohmann::json& other = *nodes[rng() % nodes.size()];
  switch (rng() % 8) {
    case 0:  // a subtree copied from elsewhere (e.g. one node's entry over another's)
      if (&other != &j) j = nlohmann::json(other);
      return;
    case 1:  // a value of another type
      j = std::vector<nlohmann::json>{nullptr, nlohmann::json::array(), nlohmann::json::object(), "x", true,
                                      0}[rng() % 6];
      return;
    default: break;
  }
  if (j.is_number()) {
    if (rng() % 2) j = interesting_number(rng);
    else if (j.is_number_float()) j = j.get<double>() * (rng() % 2 ? -1.0 : 2.0);
    else j = static_cast<int64_t>(j.get<uint64_t>() + rng() % 5 - 2);  // wraps, no signed overflow
  } else if (j.is_string()) {
    j = interesting_string(rng);
  } else if (j.is_boolean()) {
    j = !j.get<bool>();
  } else if (j.is_array()) {
    switch (rng() % 4) {
      case 0:
        if (!j.empty()) j.erase(rng() % j.size());
        break;
      case 1:
        if (!j.empty()) j.push_back(j[rng() % j.size()]);
        break;
      case 2: j.push_back(interesting_number(rng)); break;
      default: j.clear(); break;
    }
  } else if (j.is_object() && !j.empty()) {
    auto it = j.begin();
    std::advance(it, static_cast<long>(rng() % j.size()));
    if (rng() % 2) {
      j.erase(it);
    } else {
      const nlohmann::json value = it.value();
      j[interesting_string(rng).get<std::string>()] = value;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  at::set_num_threads(1);  // the machine is shared; one thread also keeps runs repeatable
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dfq::fuzz::MemoryFile file;
  std::vector<uint8_t> bytes(data, data + size);
  if (size >= 4) {
    const uint32_t crc = crc_of(bytes.data(), size - 4);
    std::memcpy(bytes.data() + size - 4, &crc, 4);
  }
  try {
    dfq::fuzz::run_artifact(file.write(bytes.data(), bytes.size()));
  } catch (const dfq::Error& e) {
    // Refused: the expected outcome for almost every mutant; the message must be one line (core/error.h).
    if (std::strchr(e.what(), '\n')) {
      std::fprintf(stderr, "multi-line dfq::Error: %s\n", e.what());
      std::abort();
    }
  }
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  std::minstd_rand rng(seed);
  Parts p;
  if (rng() % 16 == 0 || !split(data, size, &p)) return LLVMFuzzerMutate(data, size, max_size);
  switch (rng() % 3) {
    case 0: mutate_bytes(p.header, max_size); break;
    case 1: {
      nlohmann::json tree = nlohmann::json::parse(p.header, nullptr, /*allow_exceptions=*/false);
      if (tree.is_discarded()) mutate_bytes(p.header, max_size);
      else {
        for (unsigned n = 1 + rng() % 3; n > 0; --n) mutate_tree(tree, rng);
        p.header = tree.dump();
      }
      break;
    }
    default: mutate_bytes(p.data, max_size); break;
  }
  const std::string out = join(p);
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}
