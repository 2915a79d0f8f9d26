// Writing output files so that a failure never leaves a partial file behind.
#pragma once

#include <string>
#include <vector>

namespace dfq {

// Writes `content` to `path` via a temporary file in the same directory and a
// rename. Throws dfq::Error naming the path if the directory is missing or not
// writable, or the write fails (e.g. disk full); the temporary is removed.
void write_file_atomic(const std::string& path, const std::string& content);

// Writes `content` to `path` directly, checking every write and the close, so
// a full disk is an error (dfq::Error naming the path) and not a short file.
// For files inside a staged directory, which is removed as a whole on failure.
void write_file(const std::string& path, const std::string& content);

// Throws dfq::Error("<option> '<path>': expected a writable location, found
// <reason>") unless a file can be created (and written) beside `path`; checked
// before slow work so an unwritable output fails at once, not after minutes.
void check_writable(const std::string& option, const std::string& path);

// The outputs of one command, written under temporary sibling names and
// renamed into place together by commit(): an error (or a full disk) before
// commit() leaves no output at all, and an existing output stays as it was.
// Uncommitted temporaries are removed by the destructor.
class StagedOutputs {
 public:
  StagedOutputs() = default;
  StagedOutputs(const StagedOutputs&) = delete;
  StagedOutputs& operator=(const StagedOutputs&) = delete;
  ~StagedOutputs();

  // The temporary path to write `path` to: a file, or a directory to create
  // and fill. Its parent directory must exist.
  std::string stage(const std::string& path);

  // Renames every staged temporary to its final path, in staging order. A
  // directory replaces an existing directory of the same name (swapped in, the
  // old one removed afterwards). Throws dfq::Error naming the path on failure.
  void commit();

  // `message` with every staged temporary path replaced by its final path, so
  // that an error raised while writing a temporary names the user's output.
  std::string final_names(std::string message) const;

 private:
  struct Item {
    std::string final_path, temp_path;
  };
  std::vector<Item> items_;
};

}  // namespace dfq
