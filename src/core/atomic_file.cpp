#include "core/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace dfq {

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("output file '" + path + "'", "a writable location", std::strerror(errno));
  const size_t written = std::fwrite(content.data(), 1, content.size(), f);
  const int write_errno = errno;
  const bool flushed = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const bool closed = std::fclose(f) == 0;
  if (written != content.size() || !flushed || !closed) {
    std::remove(tmp.c_str());
    fail("output file '" + path + "'", std::to_string(content.size()) + " bytes written",
         std::to_string(written) + " (" + std::strerror(write_errno ? write_errno : errno) + ")");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail("output file '" + path + "'", "a successful rename from its temporary", ec.message());
  }
}

}  // namespace dfq
