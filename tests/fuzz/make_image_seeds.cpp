// Writes the image fuzzer's seed corpus (make-seeds.sh builds and runs it): small
// JPEG/PNG/BMP files of the sizes, depths and channel counts decode_image meets.
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// A smooth pattern with some texture, so JPEG and PNG use more than one code path.
cv::Mat pattern(int rows, int cols, int type) {
  cv::Mat m(rows, cols, type);
  const int channels = m.channels();
  const double top = m.depth() == CV_16U ? 65535.0 : 255.0;
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x)
      for (int c = 0; c < channels; ++c) {
        const double v = top * (0.5 + 0.25 * std::sin(0.4 * x + 0.3 * c) * std::cos(0.5 * y) + 0.2 * ((x * 7 + y * 13 + c * 5) % 11) / 11.0 - 0.1);
        const double clamped = v < 0 ? 0 : v > top ? top : v;
        if (m.depth() == CV_16U) m.ptr<uint16_t>(y)[x * channels + c] = static_cast<uint16_t>(clamped);
        else m.ptr<uint8_t>(y)[x * channels + c] = static_cast<uint8_t>(clamped);
      }
  return m;
}

void write(const std::string& dir, const std::string& name, const cv::Mat& m, const std::vector<int>& params = {}) {
  const std::string path = dir + "/" + name;
  if (!cv::imwrite(path, m, params)) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_image_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  const cv::Mat gray = pattern(28, 28, CV_8UC1), color = pattern(32, 32, CV_8UC3);
  write(dir, "gray28.png", gray);
  write(dir, "gray28.jpg", gray, {cv::IMWRITE_JPEG_QUALITY, 90});
  write(dir, "gray28.bmp", gray);
  write(dir, "color32.png", color);
  write(dir, "color32.jpg", color, {cv::IMWRITE_JPEG_QUALITY, 90});
  write(dir, "color32-progressive.jpg", color, {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  write(dir, "color32.bmp", color);
  write(dir, "rgba32.png", pattern(32, 32, CV_8UC4));
  write(dir, "gray16bit.png", pattern(8, 8, CV_16UC1));   // refused: 16-bit samples
  write(dir, "color20x30.jpg", pattern(20, 30, CV_8UC3));  // the resize path enlarges, then crops
  cv::Mat rows(300, 260, CV_8UC1);  // shrinks; one value per row keeps the file small
  for (int y = 0; y < rows.rows; ++y) rows.row(y).setTo(y % 256);
  write(dir, "gray300x260.png", rows, {cv::IMWRITE_PNG_COMPRESSION, 9});
  write(dir, "color1x1.png", pattern(1, 1, CV_8UC3));
  return 0;
}
