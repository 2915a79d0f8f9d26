// The grid of synthetic images: one row per target label, read from the PNG
// folders `dfq synth --dump-png` writes and embedded as PNG data.
#pragma once

#include <string>
#include <vector>

namespace dfq {

struct GridOptions {
  int per_class = 8;     // images per row
  int max_classes = 20;  // rows (a 1000-class model would make a huge page)
  int min_side = 84;     // smaller images are enlarged by an integer factor, nearest neighbour
  int max_side = 128;    // larger images are reduced (area averaging)
};

// One row: the first images (sorted by file name) of one label's folder.
struct ImageRow {
  std::string label;         // the sub-folder's name
  int shown = 0, total = 0;  // images in the row / in the folder
  std::string png;           // the row as one encoded PNG file
  int width = 0, height = 0;
};

// Rows for the sorted sub-folders of `dir` that hold images (.png .jpg .jpeg
// .bmp), at most options.max_classes. Throws dfq::Error naming an image that
// cannot be decoded.
std::vector<ImageRow> image_rows(const std::string& dir, const GridOptions& options);

// Number of sub-folders of `dir` holding at least one image.
int count_image_folders(const std::string& dir);

}  // namespace dfq
