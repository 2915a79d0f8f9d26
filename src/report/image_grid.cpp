#include "report/image_grid.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "core/error.h"

namespace dfq {

namespace fs = std::filesystem;

namespace {

bool is_image(const fs::path& file) {
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

std::vector<fs::path> sorted_entries(const fs::path& dir, bool directories) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (directories ? it->is_directory(ec) : (it->is_regular_file(ec) && is_image(it->path())))
      out.push_back(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// 8-bit, 1 or 3 channels.
cv::Mat read_image(const fs::path& file) {
  cv::Mat image = cv::imread(file.string(), cv::IMREAD_UNCHANGED);
  if (image.empty()) fail("image " + file.string(), "a decodable PNG, JPEG or BMP file", "an unreadable file");
  if (image.depth() != CV_8U) {
    const double scale = image.depth() == CV_16U ? 1.0 / 257.0 : 1.0;
    image.convertTo(image, CV_8U, scale);
  }
  if (image.channels() == 4) cv::cvtColor(image, image, cv::COLOR_BGRA2BGR);
  if (image.channels() == 2) cv::extractChannel(image, image, 0);
  return image;
}

}  // namespace

int count_image_folders(const std::string& dir) {
  int count = 0;
  for (const fs::path& sub : sorted_entries(dir, true))
    if (!sorted_entries(sub, false).empty()) ++count;
  return count;
}

std::vector<ImageRow> image_rows(const std::string& dir, const GridOptions& options) {
  std::vector<ImageRow> rows;
  for (const fs::path& sub : sorted_entries(dir, true)) {
    if (static_cast<int>(rows.size()) >= options.max_classes) break;
    const std::vector<fs::path> files = sorted_entries(sub, false);
    if (files.empty()) continue;
    std::vector<cv::Mat> images;
    bool colour = false;
    for (size_t i = 0; i < files.size() && static_cast<int>(i) < options.per_class; ++i) {
      images.push_back(read_image(files[i]));
      colour = colour || images.back().channels() == 3;
    }
    // Every image of a row at the first one's size, scaled for visibility.
    const cv::Size base = images[0].size();
    int height = base.height, width = base.width;
    int interpolation = cv::INTER_NEAREST;
    if (base.height < options.min_side) {
      const int factor = (options.min_side + base.height - 1) / base.height;
      height *= factor, width *= factor;
    } else if (base.height > options.max_side) {
      width = std::max(1, base.width * options.max_side / base.height), height = options.max_side;
      interpolation = cv::INTER_AREA;
    }
    const int gap = 4;
    cv::Mat row(height, static_cast<int>(images.size()) * (width + gap) - gap, colour ? CV_8UC3 : CV_8UC1,
                cv::Scalar::all(255));
    for (size_t i = 0; i < images.size(); ++i) {
      cv::Mat image = images[i];
      if (colour && image.channels() == 1) cv::cvtColor(image, image, cv::COLOR_GRAY2BGR);
      cv::Mat scaled;
      cv::resize(image, scaled, cv::Size(width, height), 0, 0,
                 image.size() == base ? interpolation : cv::INTER_AREA);
      scaled.copyTo(row(cv::Rect(static_cast<int>(i) * (width + gap), 0, width, height)));
    }
    std::vector<uchar> png;
    if (!cv::imencode(".png", row, png)) fail("image row of " + sub.string(), "a PNG encoding", "an OpenCV failure");
    rows.push_back({sub.filename().string(), static_cast<int>(images.size()), static_cast<int>(files.size()),
                    std::string(png.begin(), png.end()), row.cols, row.rows});
  }
  return rows;
}

}  // namespace dfq
