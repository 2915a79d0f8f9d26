// Content addresses: SHA-256 digests (OpenSSL) of files, strings and image
// folders, as lowercase hex. `dfq run` keys its stage cache with them and the
// quantization card names the model by its file's digest.
#pragma once

#include <string>

namespace dfq {

// Digest of `bytes`.
std::string sha256_hex(const std::string& bytes);

// Digest of the file's bytes; throws dfq::Error naming the file when it cannot be read.
std::string sha256_of_file(const std::string& path);

// Digest of a folder's listing: every regular file below `root` (relative
// path, size, modification time), sorted. Cheap (no file is read) and changes
// when a file is added, removed, renamed, resized or rewritten. Throws
// dfq::Error naming `root` when it is not a readable directory.
std::string folder_fingerprint(const std::string& root);

}  // namespace dfq
