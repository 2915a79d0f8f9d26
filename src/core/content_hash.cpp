#include "core/content_hash.h"

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "core/error.h"

namespace dfq {

namespace {

namespace fs = std::filesystem;

// Incremental SHA-256 over the EVP interface (OpenSSL 3).
class Sha256 {
 public:
  Sha256() : context_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    if (!context_ || EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr) != 1)
      fail("SHA-256", "an OpenSSL digest context", "none (OpenSSL failed to initialize)");
  }
  void update(const void* data, size_t size) { EVP_DigestUpdate(context_.get(), data, size); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_DigestFinal_ex(context_.get(), digest, &size);
    static const char* kDigits = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < size; ++i) out += kDigits[digest[i] >> 4], out += kDigits[digest[i] & 15];
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> context_;
};

}  // namespace

std::string sha256_hex(const std::string& bytes) {
  Sha256 h;
  h.update(bytes.data(), bytes.size());
  return h.hex();
}

std::string sha256_of_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("file '" + path + "'", "a readable file", "it cannot be opened");
  Sha256 h;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    h.update(buffer.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) fail("file '" + path + "'", "a readable file", "a read error");
  return h.hex();
}

std::string folder_fingerprint(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail("folder '" + root + "'", "a readable directory", "none there");
  std::vector<std::string> lines;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const auto modified = fs::last_write_time(it->path(), ec).time_since_epoch();
    lines.push_back(fs::relative(it->path(), root).string() + '\t' + std::to_string(it->file_size(ec)) + '\t' +
                    std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(modified).count()));
  }
  if (ec) fail("folder '" + root + "'", "a readable directory tree", ec.message());
  std::sort(lines.begin(), lines.end());
  Sha256 h;
  for (const std::string& line : lines) h.update(line.data(), line.size()), h.update("\n", 1);
  return h.hex();
}

}  // namespace dfq
