#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "core/error.h"

namespace dfq {
namespace fs = std::filesystem;
namespace {

std::string subject(const std::string& path) { return "output file '" + path + "'"; }

// Writes all of `content` to `fd`; returns 0 or the errno of the failing write.
int write_all(int fd, const std::string& content, size_t& written) {
  written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    written += static_cast<size_t>(n);
  }
  return 0;
}

// Writes `path`; with `sync`, also fsyncs so that a rename publishes complete data.
void write_checked(const std::string& path, const std::string& content, bool sync, const std::string& name) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(subject(name), "a writable location", std::strerror(errno));
  size_t written = 0;
  int error = write_all(fd, content, written);
  if (!error && sync && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && !error) error = errno;
  if (error) {
    ::unlink(path.c_str());
    fail(subject(name), std::to_string(content.size()) + " bytes written",
         std::to_string(written) + " (" + std::strerror(error) + ")");
  }
}

// A sibling of `path` that folder scans skip (leading dot) and that names its owner.
fs::path sibling(const std::string& path, const char* what) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "dir/" names dir
  return p.parent_path() / ("." + p.filename().string() + "." + what + "." + std::to_string(::getpid()));
}

}  // namespace

void write_file(const std::string& path, const std::string& content) { write_checked(path, content, false, path); }

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  write_checked(tmp, content, true, path);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail(subject(path), "a successful rename from its temporary", ec.message());
  }
}

void check_writable(const std::string& option, const std::string& path) {
  const std::string who = option + " '" + path + "'";
  const fs::path probe = sibling(path, "probe");
  const fs::path parent = probe.parent_path().empty() ? fs::path(".") : probe.parent_path();
  std::error_code ec;
  const fs::file_status status = fs::status(parent, ec);
  if (status.type() == fs::file_type::not_found)
    fail(who, "a writable location", "no directory '" + parent.string() + "'");
  if (!fs::is_directory(status)) fail(who, "a writable location", "'" + parent.string() + "', which is not a directory");
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail(who, "a writable location", std::strerror(errno));
  // One byte, so that a full file system shows now rather than after the work.
  int error = ::write(fd, "x", 1) == 1 ? 0 : errno;
  if (::close(fd) != 0 && !error) error = errno;
  ::unlink(probe.c_str());
  if (error) fail(who, "a writable location", std::strerror(error));
}

StagedOutputs::~StagedOutputs() {
  std::error_code ignored;
  for (const Item& item : items_) fs::remove_all(item.temp_path, ignored);
}

std::string StagedOutputs::stage(const std::string& path) {
  const std::string temp = sibling(path, "tmp").string();
  std::error_code ignored;
  fs::remove_all(temp, ignored);  // left by a killed run with the same pid
  items_.push_back({path, temp});
  return temp;
}

void StagedOutputs::commit() {
  for (const Item& item : items_) {
    std::error_code ec;
    const fs::path final_path = fs::path(item.final_path).lexically_normal();
    fs::path old;
    if (fs::is_directory(item.temp_path) && fs::is_directory(final_path)) {
      old = sibling(item.final_path, "old");
      fs::remove_all(old, ec);
      fs::rename(final_path, old, ec);
      if (ec) fail(subject(item.final_path), "an existing output that can be replaced", ec.message());
    }
    fs::rename(item.temp_path, final_path, ec);
    if (ec) {
      std::error_code ignored;
      if (!old.empty()) fs::rename(old, final_path, ignored);
      fail(subject(item.final_path), "a successful rename from " + item.temp_path, ec.message());
    }
    if (!old.empty()) fs::remove_all(old, ec);
  }
  items_.clear();
}

std::string StagedOutputs::final_names(std::string message) const {
  for (const Item& item : items_)
    for (size_t at = message.find(item.temp_path); at != std::string::npos;
         at = message.find(item.temp_path, at + item.final_path.size()))
      message.replace(at, item.temp_path.size(), item.final_path);
  return message;
}

}  // namespace dfq
