// An ImageNet-style folder: one sub-folder per class, sorted names give labels.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dfq {

struct ImageEntry {
  std::string path;
  int64_t label = 0;
};

struct ImageFolder {
  std::string root;
  std::vector<std::string> classes;   // sorted by name (byte order); index = label
  std::vector<ImageEntry> images;     // class by class, files sorted by name
  std::vector<std::string> skipped;   // non-image files passed over (skip_bad only)
};

// Scans `root`. Sub-directories are classes; files named *.jpg, *.jpeg, *.png or
// *.bmp (any case) are images; names starting with '.' are ignored; plain files
// directly in `root` are ignored. Throws dfq::Error naming the path when root
// is missing or not a directory, has no class folders, a class folder holds no
// images, or a class folder holds any other file (unless skip_bad: then that
// file is listed in `skipped`).
ImageFolder scan_image_folder(const std::string& root, bool skip_bad);

}  // namespace dfq
