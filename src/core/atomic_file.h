// Writing output files so that a failure never leaves a partial file behind.
#pragma once

#include <string>

namespace dfq {

// Writes `content` to `path` via a temporary file in the same directory and a
// rename. Throws dfq::Error naming the path if the directory is missing or not
// writable, or the write fails (e.g. disk full); the temporary is removed.
void write_file_atomic(const std::string& path, const std::string& content);

}  // namespace dfq
