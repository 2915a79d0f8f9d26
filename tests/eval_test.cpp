// Image folder scanning, decoding and preprocessing, and the background batch
// loader, on fixture images written at test time (and ../shared data if present).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <zlib.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "eval/batch_loader.h"
#include "eval/evaluate.h"
#include "eval/image_folder.h"
#include "eval/preprocess.h"
#include "eval/saved_outputs.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace dfq;
using namespace dfq::testing;

// Expects `statement` to throw dfq::Error with a one-line message containing `fragment`.
#define EXPECT_DFQ_ERROR(statement, fragment)                                                \
  do {                                                                                       \
    std::string message_;                                                                    \
    EXPECT_THROW(                                                                            \
        {                                                                                    \
          try {                                                                              \
            statement;                                                                       \
          } catch (const dfq::Error& e) {                                                    \
            message_ = e.what();                                                             \
            throw;                                                                           \
          }                                                                                  \
        },                                                                                   \
        dfq::Error);                                                                         \
    EXPECT_NE(message_.find(fragment), std::string::npos) << "message: " << message_;        \
    EXPECT_EQ(message_.find('\n'), std::string::npos) << "multi-line message: " << message_; \
  } while (0)

namespace {


// A fresh directory under /tmp, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/dfq-eval-test-XXXXXX";
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// Writes with OpenCV, creating parent folders; JPEG at quality 100.
void write_image(const fs::path& path, const cv::Mat& image) {
  fs::create_directories(path.parent_path());
  const std::vector<int> params{cv::IMWRITE_JPEG_QUALITY, 100};
  if (!cv::imwrite(path.string(), image, params)) throw std::runtime_error("cannot write " + path.string());
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The header's formula, in double precision.
float normalized(int pixel, float mean, float std) {
  return static_cast<float>((pixel / 255.0 - static_cast<double>(mean)) / static_cast<double>(std));
}

// OpenCV colour order is BGR: Scalar(b, g, r).
cv::Mat constant_bgr(int rows, int cols, int r, int g, int b) {
  return cv::Mat(rows, cols, CV_8UC3, cv::Scalar(b, g, r));
}

// Every pixel different in every channel, so swapped axes or channels show.
cv::Mat gradient_bgr(int rows, int cols) {
  cv::Mat image(rows, cols, CV_8UC3);
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x)
      image.at<cv::Vec3b>(y, x) =
          cv::Vec3b(static_cast<uchar>((3 * x + 7 * y) % 256), static_cast<uchar>((5 * x + 2 * y + 40) % 256),
                    static_cast<uchar>((x * x + y) % 256));
  return image;
}

cv::Mat gradient_grey(int rows, int cols) {
  cv::Mat image(rows, cols, CV_8UC1);
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x) image.at<uchar>(y, x) = static_cast<uchar>((11 * x + 3 * y) % 256);
  return image;
}

std::vector<float> decode(const fs::path& path, const Preprocess& pre, int height, int width) {
  std::vector<float> out(static_cast<size_t>(pre.channels) * height * width, -1000.f);
  decode_image(path.string(), pre, height, width, out.data());
  return out;
}

// Expected CHW output for an 8-bit BGR (or grey) image, straight from the formula.
std::vector<float> reference(const cv::Mat& bgr_or_grey, const Preprocess& pre) {
  const int rows = bgr_or_grey.rows, cols = bgr_or_grey.cols;
  std::vector<float> out(static_cast<size_t>(pre.channels) * rows * cols);
  for (int c = 0; c < pre.channels; ++c)
    for (int y = 0; y < rows; ++y)
      for (int x = 0; x < cols; ++x) {
        const int pixel = bgr_or_grey.channels() == 1 ? bgr_or_grey.at<uchar>(y, x)
                                                      : bgr_or_grey.at<cv::Vec3b>(y, x)[2 - c];
        out[(static_cast<size_t>(c) * rows + y) * cols + x] = normalized(pixel, pre.mean[c], pre.std[c]);
      }
  return out;
}

void expect_near_all(const std::vector<float>& actual, const std::vector<float>& expected, float tolerance) {
  ASSERT_EQ(actual.size(), expected.size());
  size_t bad = 0;
  for (size_t i = 0; i < actual.size(); ++i)
    if (!(std::fabs(actual[i] - expected[i]) <= tolerance) && bad++ < 5)
      ADD_FAILURE() << "element " << i << ": " << actual[i] << " vs " << expected[i];
  EXPECT_EQ(bad, 0u);
}

Preprocess custom(int channels, int resize, int crop) {
  Preprocess pre = preset(channels == 1 ? "fashion-mnist" : "cifar");
  pre.name = "custom";
  pre.resize_shorter = resize;
  pre.crop = crop;
  return pre;
}

// ---------------------------------------------------------------- presets

TEST(Preset, FieldsAreAsDocumented) {
  const Preprocess cifar = preset("cifar");
  EXPECT_EQ(cifar.name, "cifar");
  EXPECT_EQ(cifar.channels, 3);
  EXPECT_EQ(cifar.resize_shorter, 0);
  EXPECT_EQ(cifar.crop, 0);
  EXPECT_EQ(cifar.mean, (std::vector<float>{0.485f, 0.456f, 0.406f}));
  EXPECT_EQ(cifar.std, (std::vector<float>{0.229f, 0.224f, 0.225f}));

  const Preprocess imagenet = preset("imagenet");
  EXPECT_EQ(imagenet.name, "imagenet");
  EXPECT_EQ(imagenet.channels, 3);
  EXPECT_EQ(imagenet.resize_shorter, 256);
  EXPECT_EQ(imagenet.crop, 224);
  EXPECT_EQ(imagenet.mean, cifar.mean);
  EXPECT_EQ(imagenet.std, cifar.std);

  const Preprocess fashion = preset("fashion-mnist");
  EXPECT_EQ(fashion.name, "fashion-mnist");
  EXPECT_EQ(fashion.channels, 1);
  EXPECT_EQ(fashion.resize_shorter, 0);
  EXPECT_EQ(fashion.crop, 0);
  EXPECT_EQ(fashion.mean, (std::vector<float>{0.2860f}));
  EXPECT_EQ(fashion.std, (std::vector<float>{0.3530f}));

  EXPECT_EQ(preset_names(), (std::vector<std::string>{"cifar", "imagenet", "fashion-mnist"}));
  for (const std::string& name : preset_names()) EXPECT_NO_THROW(validate(preset(name))) << name;
}

TEST(Preset, UnknownNameIsNamedWithTheKnownOnes) {
  EXPECT_DFQ_ERROR(preset("bogus"), "'bogus'");
  EXPECT_DFQ_ERROR(preset("bogus"), "cifar, imagenet, fashion-mnist");
  EXPECT_DFQ_ERROR(preset("CIFAR"), "'CIFAR'");
}

TEST(Preset, ValidateRejectsInconsistentSettings) {
  Preprocess pre = preset("cifar");
  pre.channels = 2;
  EXPECT_DFQ_ERROR(validate(pre), "channels");
  pre = preset("cifar");
  pre.mean = {0.5f};
  EXPECT_DFQ_ERROR(validate(pre), "--mean");
  pre = preset("fashion-mnist");
  pre.std = {0.1f, 0.2f, 0.3f};
  EXPECT_DFQ_ERROR(validate(pre), "--std");
  pre = preset("cifar");
  pre.std[1] = 0.f;
  EXPECT_DFQ_ERROR(validate(pre), "--std");
  pre.std[1] = -1.f;
  EXPECT_DFQ_ERROR(validate(pre), "> 0");
  pre.std[1] = std::nanf("");
  EXPECT_DFQ_ERROR(validate(pre), "--std");
  pre = preset("cifar");
  pre.resize_shorter = -1;
  EXPECT_DFQ_ERROR(validate(pre), "--resize");
  pre = preset("cifar");
  pre.crop = -3;
  EXPECT_DFQ_ERROR(validate(pre), "--crop");
  pre = preset("imagenet");
  pre.crop = 257;
  EXPECT_DFQ_ERROR(validate(pre), "--crop");
  pre.crop = 256;  // equal is fine, and so is a crop without resize
  EXPECT_NO_THROW(validate(pre));
  pre.resize_shorter = 0;
  pre.crop = 300;
  EXPECT_NO_THROW(validate(pre));
}

TEST(Preset, OutputSizeFollowsResizeAndCrop) {
  const Preprocess imagenet = preset("imagenet");
  EXPECT_EQ(output_size(imagenet, 375, 500), std::make_pair(224, 224));
  EXPECT_EQ(output_size(imagenet, 500, 375), std::make_pair(224, 224));
  EXPECT_EQ(output_size(imagenet, 20, 30), std::make_pair(224, 224));
  EXPECT_EQ(output_size(preset("cifar"), 32, 32), std::make_pair(32, 32));
  EXPECT_EQ(output_size(preset("cifar"), 20, 30), std::make_pair(20, 30));
  EXPECT_EQ(output_size(preset("fashion-mnist"), 28, 28), std::make_pair(28, 28));
  // Resize only: the long side is truncated, as int(256 * 500 / 375) = 341 in torchvision.
  const Preprocess resize_only = custom(3, 256, 0);
  EXPECT_EQ(output_size(resize_only, 375, 500), std::make_pair(256, 341));
  EXPECT_EQ(output_size(resize_only, 500, 375), std::make_pair(341, 256));
  EXPECT_EQ(output_size(resize_only, 10, 21), std::make_pair(256, 537));  // 537.6
  EXPECT_EQ(output_size(resize_only, 300, 300), std::make_pair(256, 256));
  EXPECT_EQ(output_size(custom(3, 0, 24), 32, 40), std::make_pair(24, 24));
}

// ---------------------------------------------------------------- decoding

TEST(Decode, PngAndBmpAreExactInRgbOrder) {
  TempDir dir;
  const Preprocess pre = preset("cifar");
  const int r = 200, g = 100, b = 30;
  const int rgb[3] = {r, g, b};
  std::vector<float> expected;
  for (int c = 0; c < 3; ++c)
    expected.insert(expected.end(), 4 * 5, normalized(rgb[c], pre.mean[c], pre.std[c]));
  for (const std::string name : {"c.png", "c.bmp"}) {
    SCOPED_TRACE(name);
    write_image(dir / name, constant_bgr(4, 5, r, g, b));
    expect_near_all(decode(dir / name, pre, 4, 5), expected, 1e-6f);
  }
}

TEST(Decode, JpegIsCloseInRgbOrder) {
  TempDir dir;
  const Preprocess pre = preset("cifar");
  const int rgb[3] = {200, 100, 30};
  write_image(dir / "c.jpg", constant_bgr(16, 16, rgb[0], rgb[1], rgb[2]));
  const std::vector<float> out = decode(dir / "c.jpg", pre, 16, 16);
  for (int c = 0; c < 3; ++c) {
    const float tolerance = 3.0f / 255.f / pre.std[c];  // lossy: a few levels
    for (int i = 0; i < 256; ++i)
      ASSERT_NEAR(out[static_cast<size_t>(c) * 256 + i], normalized(rgb[c], pre.mean[c], pre.std[c]),
                  tolerance)
          << "channel " << c;
  }
}

TEST(Decode, GradientKeepsLayoutChannelsFirst) {
  TempDir dir;
  const Preprocess pre = preset("cifar");
  const cv::Mat image = gradient_bgr(6, 9);
  write_image(dir / "g.png", image);
  expect_near_all(decode(dir / "g.png", pre, 6, 9), reference(image, pre), 1e-6f);
}

TEST(Decode, AlphaChannelIsDropped) {
  TempDir dir;
  const Preprocess pre = preset("cifar");
  const cv::Mat image = gradient_bgr(5, 7);
  cv::Mat bgra;
  cv::cvtColor(image, bgra, cv::COLOR_BGR2BGRA);
  bgra.forEach<cv::Vec4b>([](cv::Vec4b& pixel, const int*) { pixel[3] = 17; });
  write_image(dir / "a.png", bgra);
  ASSERT_EQ(cv::imread((dir / "a.png").string(), cv::IMREAD_UNCHANGED).channels(), 4);
  expect_near_all(decode(dir / "a.png", pre, 5, 7), reference(image, pre), 1e-6f);
}

TEST(Decode, GreyscaleForOneChannelModel) {
  TempDir dir;
  const Preprocess pre = preset("fashion-mnist");
  const cv::Mat image = gradient_grey(28, 28);
  write_image(dir / "g.png", image);
  write_image(dir / "g.bmp", image);
  expect_near_all(decode(dir / "g.png", pre, 28, 28), reference(image, pre), 1e-6f);
  expect_near_all(decode(dir / "g.bmp", pre, 28, 28), reference(image, pre), 1e-6f);
}

TEST(Decode, ColourImageIsRefusedForOneChannelModel) {
  TempDir dir;
  write_image(dir / "colour.png", gradient_bgr(28, 28));
  const Preprocess pre = preset("fashion-mnist");
  EXPECT_DFQ_ERROR(decode(dir / "colour.png", pre, 28, 28), "colour.png");
  EXPECT_DFQ_ERROR(decode(dir / "colour.png", pre, 28, 28),
                   "expected a 1-channel (grayscale) image, found 3 channels");
}

TEST(Decode, GreyscaleIsReplicatedForThreeChannelModel) {
  TempDir dir;
  const Preprocess pre = preset("cifar");
  const cv::Mat grey = gradient_grey(8, 10);
  write_image(dir / "g.png", grey);
  cv::Mat as_bgr;
  cv::cvtColor(grey, as_bgr, cv::COLOR_GRAY2BGR);
  expect_near_all(decode(dir / "g.png", pre, 8, 10), reference(as_bgr, pre), 1e-6f);
}

// Resize + centre crop against cv::resize and crop offsets worked out by hand
// from torchvision's rules.
TEST(Decode, ImagenetResizeAndCropMatchTorchvisionGeometry) {
  TempDir dir;
  const Preprocess pre = preset("imagenet");
  struct Case {
    int rows, cols;  // source
    int resized_cols, resized_rows;
    int left, top;  // crop offset in the resized image
    int interpolation;
  };
  // 375x500 -> 256x341; margins 117 and 32: Python's round(58.5) is 58.
  const Case cases[] = {{375, 500, 341, 256, 58, 16, cv::INTER_AREA},
                        {500, 375, 256, 341, 16, 58, cv::INTER_AREA},
                        {100, 150, 384, 256, 80, 16, cv::INTER_LINEAR},  // enlarged
                        {256, 300, 300, 256, 38, 16, -1}};               // shorter side already 256
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.rows) + "x" + std::to_string(c.cols));
    const cv::Mat image = gradient_bgr(c.rows, c.cols);
    write_image(dir / "i.png", image);
    cv::Mat resized = image;
    if (c.interpolation >= 0)
      cv::resize(image, resized, cv::Size(c.resized_cols, c.resized_rows), 0, 0, c.interpolation);
    ASSERT_EQ(resized.size(), cv::Size(c.resized_cols, c.resized_rows));
    const cv::Mat crop = resized(cv::Rect(c.left, c.top, 224, 224)).clone();
    expect_near_all(decode(dir / "i.png", pre, 224, 224), reference(crop, pre), 1e-6f);
  }
}

TEST(Decode, CropOffsetRoundsHalvesToEven) {
  TempDir dir;
  const Preprocess pre = custom(3, 0, 4);
  const cv::Mat image = gradient_bgr(5, 7);  // margins 1 and 3: round(0.5) = 0, round(1.5) = 2
  write_image(dir / "i.png", image);
  expect_near_all(decode(dir / "i.png", pre, 4, 4), reference(image(cv::Rect(2, 0, 4, 4)).clone(), pre),
                  1e-6f);
}

TEST(Decode, SizeMismatchAndTooSmallForCropNameTheFile) {
  TempDir dir;
  write_image(dir / "small.png", gradient_bgr(4, 5));
  EXPECT_DFQ_ERROR(decode(dir / "small.png", preset("cifar"), 32, 32), "small.png");
  EXPECT_DFQ_ERROR(decode(dir / "small.png", preset("cifar"), 32, 32), "expected 32x32");
  EXPECT_DFQ_ERROR(decode(dir / "small.png", preset("cifar"), 32, 32), "found 4x5");
  EXPECT_DFQ_ERROR(decode(dir / "small.png", custom(3, 0, 8), 8, 8), "small.png");
  EXPECT_DFQ_ERROR(decode(dir / "small.png", custom(3, 0, 8), 8, 8), "centre-crop");
}

TEST(Decode, UnreadableFilesNameTheFile) {
  TempDir dir;
  std::mt19937 random(7);
  std::string noise(3000, '\0');
  for (char& byte : noise) byte = static_cast<char>(random() & 0xff);
  noise[0] = 'x';  // not accidentally a signature
  write_bytes(dir / "noise.jpg", noise);
  write_bytes(dir / "empty.png", "");
  write_image(dir / "whole.jpg", gradient_bgr(64, 64));
  const std::string jpeg = read_bytes(dir / "whole.jpg");
  write_bytes(dir / "half.jpg", jpeg.substr(0, jpeg.size() / 2));
  write_bytes(dir / "header-only.jpg", jpeg.substr(0, 2) + noise + "\xff\xd9");
  write_image(dir / "whole.png", gradient_bgr(64, 64));
  const std::string png = read_bytes(dir / "whole.png");
  write_bytes(dir / "half.png", png.substr(0, png.size() / 2));
  write_image(dir / "whole.bmp", gradient_bgr(64, 64));
  const std::string bmp = read_bytes(dir / "whole.bmp");
  write_bytes(dir / "half.bmp", bmp.substr(0, bmp.size() / 2));
  const Preprocess pre = preset("cifar");

  EXPECT_DFQ_ERROR(decode(dir / "noise.jpg", pre, 64, 64), "noise.jpg");
  EXPECT_DFQ_ERROR(decode(dir / "noise.jpg", pre, 64, 64), "expected a decodable JPEG/PNG/BMP image");
  EXPECT_DFQ_ERROR(decode(dir / "empty.png", pre, 64, 64), "empty.png");
  EXPECT_DFQ_ERROR(decode(dir / "empty.png", pre, 64, 64), "empty");
  EXPECT_DFQ_ERROR(decode(dir / "half.jpg", pre, 64, 64), "half.jpg");
  EXPECT_DFQ_ERROR(decode(dir / "half.jpg", pre, 64, 64), "truncated");
  EXPECT_DFQ_ERROR(decode(dir / "header-only.jpg", pre, 64, 64), "header-only.jpg");
  EXPECT_DFQ_ERROR(decode(dir / "half.png", pre, 64, 64), "half.png");
  EXPECT_DFQ_ERROR(decode(dir / "half.bmp", pre, 64, 64), "half.bmp");
  EXPECT_DFQ_ERROR(decode(dir / "missing.png", pre, 64, 64), "missing.png");
  EXPECT_NO_THROW(decode(dir / "whole.jpg", pre, 64, 64));
  EXPECT_NO_THROW(decode(dir / "whole.png", pre, 64, 64));
  EXPECT_NO_THROW(decode(dir / "whole.bmp", pre, 64, 64));
  // Padding after the end-of-image marker is tolerated.
  write_bytes(dir / "padded.jpg", jpeg + std::string("\0\0\n", 3));
  EXPECT_NO_THROW(decode(dir / "padded.jpg", pre, 64, 64));
}

// Headers declaring far more pixels than the file's bytes can hold are refused
// before decoding (OpenCV would allocate the declared image first).
TEST(Decode, HeaderDeclaringMorePixelsThanItsBytesIsRefused) {
  TempDir dir;
  write_image(dir / "ok.png", gradient_bgr(16, 16));
  std::string png = read_bytes(dir / "ok.png");
  auto put32 = [](std::string& s, size_t at, uint32_t v) {
    for (int k = 0; k < 4; ++k) s[at + k] = static_cast<char>((v >> (24 - 8 * k)) & 0xff);
  };
  put32(png, 16, 60000), put32(png, 20, 60000);  // IHDR width, height; then its CRC
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(png.data() + 12), 17);
  put32(png, 29, static_cast<uint32_t>(crc));
  write_bytes(dir / "bomb.png", png);
  write_image(dir / "ok.jpg", gradient_bgr(16, 16));
  std::string jpeg = read_bytes(dir / "ok.jpg");
  const size_t sof = jpeg.find("\xff\xc0");
  ASSERT_NE(sof, std::string::npos);
  jpeg[sof + 5] = jpeg[sof + 7] = '\xea', jpeg[sof + 6] = jpeg[sof + 8] = '\x60';  // 60000 x 60000
  write_bytes(dir / "bomb.jpg", jpeg);
  write_image(dir / "ok.bmp", gradient_bgr(16, 16));
  std::string bmp = read_bytes(dir / "ok.bmp");
  for (size_t at : {18, 22}) bmp[at] = '\x60', bmp[at + 1] = '\xea', bmp[at + 2] = bmp[at + 3] = 0;
  write_bytes(dir / "bomb.bmp", bmp);
  for (const char* name : {"bomb.png", "bomb.jpg", "bomb.bmp"}) {
    SCOPED_TRACE(name);
    EXPECT_DFQ_ERROR(decode(dir / name, preset("cifar"), 16, 16), name);
    EXPECT_DFQ_ERROR(decode(dir / name, preset("cifar"), 16, 16), "found a header declaring 60000x60000 pixels");
    EXPECT_DFQ_ERROR(image_header_size((dir / name).string()), "at most 2^14 pixels per byte");
  }
  for (const char* name : {"ok.png", "ok.jpg", "ok.bmp"}) {
    EXPECT_EQ(image_header_size((dir / name).string()), std::make_pair(16, 16)) << name;
    EXPECT_NO_THROW(decode(dir / name, preset("cifar"), 16, 16));
  }
}

TEST(Decode, SixteenBitImageIsRefused) {
  TempDir dir;
  cv::Mat deep(4, 4, CV_16UC3, cv::Scalar(1000, 2000, 3000));
  write_image(dir / "deep.png", deep);
  EXPECT_DFQ_ERROR(decode(dir / "deep.png", preset("cifar"), 4, 4), "deep.png");
  EXPECT_DFQ_ERROR(decode(dir / "deep.png", preset("cifar"), 4, 4), "8-bit");
}

// ---------------------------------------------------------------- folders

TEST(Folder, ClassesAndFilesSortByByteOrder) {
  TempDir dir;
  for (const std::string cls : {"b", "a", "C", "a_2"})
    for (const std::string file : {"2.png", "10.png", "1.png"})
      write_image(dir / cls / file, gradient_bgr(2, 2));
  write_image(dir / "b" / "Z.JPEG", gradient_bgr(2, 2));  // extensions in any case
  write_image(dir / "b" / "y.Bmp", gradient_bgr(2, 2));
  write_image(dir / "b" / "x.jpeg", gradient_bgr(2, 2));
  write_image(dir / "b" / "w.JPG", gradient_bgr(2, 2));
  const ImageFolder folder = scan_image_folder(dir.path().string(), false);
  EXPECT_EQ(folder.root, dir.path().string());
  EXPECT_EQ(folder.classes, (std::vector<std::string>{"C", "a", "a_2", "b"}));
  ASSERT_EQ(folder.images.size(), 16u);
  const char* const expected_files[] = {"1.png", "10.png", "2.png"};
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(folder.images[i].label, static_cast<int64_t>(i / 3));
    EXPECT_EQ(folder.images[i].path, (dir / folder.classes[i / 3] / expected_files[i % 3]).string());
  }
  const char* const b_files[] = {"Z.JPEG", "w.JPG", "x.jpeg", "y.Bmp"};
  for (size_t i = 12; i < 16; ++i) {
    EXPECT_EQ(folder.images[i].label, 3);
    EXPECT_EQ(fs::path(folder.images[i].path).filename(), b_files[i - 12]);
  }
  EXPECT_TRUE(folder.skipped.empty());
}

TEST(Folder, HiddenEntriesAndLooseRootFilesAreIgnored) {
  TempDir dir;
  write_image(dir / "cat" / "1.png", gradient_bgr(2, 2));
  write_bytes(dir / "cat" / ".DS_Store", "junk");
  write_image(dir / ".thumbnails" / "1.png", gradient_bgr(2, 2));
  write_bytes(dir / "README.txt", "about this data");
  write_image(dir / "loose.png", gradient_bgr(2, 2));
  const ImageFolder folder = scan_image_folder(dir.path().string(), false);
  EXPECT_EQ(folder.classes, std::vector<std::string>{"cat"});
  ASSERT_EQ(folder.images.size(), 1u);
  EXPECT_EQ(folder.images[0].path, (dir / "cat" / "1.png").string());
}

TEST(Folder, BadLayoutsNameThePath) {
  TempDir dir;
  EXPECT_DFQ_ERROR(scan_image_folder((dir / "nowhere").string(), false), (dir / "nowhere").string());
  write_bytes(dir / "file.txt", "x");
  EXPECT_DFQ_ERROR(scan_image_folder((dir / "file.txt").string(), false), "file.txt");
  EXPECT_DFQ_ERROR(scan_image_folder((dir / "file.txt").string(), false), "a directory");
  // Root with no class folders (only a loose file).
  EXPECT_DFQ_ERROR(scan_image_folder(dir.path().string(), false), "no sub-folders");
  EXPECT_DFQ_ERROR(scan_image_folder(dir.path().string(), true), dir.path().string());
  // A class folder without images.
  write_image(dir / "a" / "1.png", gradient_bgr(2, 2));
  fs::create_directories(dir / "empty_class");
  EXPECT_DFQ_ERROR(scan_image_folder(dir.path().string(), false), "empty_class");
  EXPECT_DFQ_ERROR(scan_image_folder(dir.path().string(), true), "empty_class");
}

TEST(Folder, OtherFilesFailUnlessSkipBad) {
  TempDir dir;
  write_image(dir / "a" / "1.png", gradient_bgr(2, 2));
  write_bytes(dir / "a" / "notes.txt", "x");
  write_image(dir / "b" / "1.png", gradient_bgr(2, 2));
  fs::create_directories(dir / "b" / "nested");
  write_bytes(dir / "b" / "noext", "x");
  EXPECT_DFQ_ERROR(scan_image_folder(dir.path().string(), false), "notes.txt");
  const ImageFolder folder = scan_image_folder(dir.path().string(), true);
  EXPECT_EQ(folder.images.size(), 2u);
  EXPECT_EQ(folder.skipped,
            (std::vector<std::string>{(dir / "a" / "notes.txt").string(), (dir / "b" / "nested").string(),
                                      (dir / "b" / "noext").string()}));
  fs::remove(dir / "a" / "notes.txt");
  fs::remove(dir / "b" / "noext");
  EXPECT_DFQ_ERROR(scan_image_folder(dir.path().string(), false), "nested");
}

// ---------------------------------------------------------------- loader

// 3 classes with 4, 5 and 4 images (6 rows x 5 columns), each a distinct gradient.
struct LoaderFixture {
  TempDir dir;
  ImageFolder folder;
  LoaderFixture() {
    const int per_class[] = {4, 5, 4};
    int index = 0;
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < per_class[c]; ++i, ++index) {
        cv::Mat image = gradient_bgr(6, 5);
        image += cv::Scalar(index * 9, index * 5, index * 3);
        const char* extension = index % 3 == 0 ? ".png" : index % 3 == 1 ? ".bmp" : ".jpg";
        write_image(dir / ("class" + std::to_string(c)) / ("img" + std::to_string(i) + extension), image);
      }
    folder = scan_image_folder(dir.path().string(), false);
  }
};

struct Collected {
  std::vector<at::Tensor> images;  // one per image, cloned
  std::vector<int64_t> labels;
  std::vector<int64_t> counts;
};

Collected drain(BatchLoader& loader) {
  Collected out;
  Batch batch;
  while (loader.next(batch)) {
    EXPECT_EQ(batch.images.size(0), batch.count);
    EXPECT_EQ(batch.labels.size(0), batch.count);
    EXPECT_TRUE(batch.images.is_contiguous());
    EXPECT_EQ(batch.images.scalar_type(), at::kFloat);
    EXPECT_EQ(batch.labels.scalar_type(), at::kLong);
    out.counts.push_back(batch.count);
    for (int64_t i = 0; i < batch.count; ++i) {
      out.images.push_back(batch.images[i].clone());
      out.labels.push_back(batch.labels[i].item<int64_t>());
    }
  }
  EXPECT_FALSE(loader.next(batch));  // stays finished
  return out;
}

at::Tensor decoded(const ImageEntry& entry, const Preprocess& pre, int height, int width) {
  at::Tensor out = at::empty({pre.channels, height, width}, at::kFloat);
  decode_image(entry.path, pre, height, width, out.data_ptr<float>());
  return out;
}

TEST(Loader, DeliversEveryImageInOrderForAnyBatchAndThreadCount) {
  LoaderFixture data;
  const Preprocess pre = preset("cifar");
  for (int threads : {1, 2})
    for (int64_t batch_size : {1, 3, 7, 13, 50})
      for (int64_t limit : {0, 5, 100}) {
        SCOPED_TRACE("threads " + std::to_string(threads) + ", batch " + std::to_string(batch_size) +
                     ", limit " + std::to_string(limit));
        LoaderOptions options;
        options.batch_size = batch_size;
        options.decode_threads = threads;
        options.limit = limit;
        options.prefetch_batches = batch_size == 3 ? 1 : 2;
        BatchLoader loader(data.folder, pre, options);
        const int64_t expected_total = limit == 5 ? 5 : 13;
        EXPECT_EQ(loader.total(), expected_total);
        EXPECT_EQ(loader.height(), 6);
        EXPECT_EQ(loader.width(), 5);
        const Collected got = drain(loader);
        ASSERT_EQ(static_cast<int64_t>(got.labels.size()), expected_total);
        for (size_t i = 0; i < got.counts.size(); ++i)
          EXPECT_EQ(got.counts[i],
                    std::min<int64_t>(batch_size, expected_total - static_cast<int64_t>(i) * batch_size));
        for (int64_t i = 0; i < expected_total; ++i) {
          const ImageEntry& entry = data.folder.images[static_cast<size_t>(i)];
          EXPECT_EQ(got.labels[static_cast<size_t>(i)], entry.label);
          EXPECT_TRUE(at::equal(got.images[static_cast<size_t>(i)], decoded(entry, pre, 6, 5))) << entry.path;
        }
        EXPECT_TRUE(loader.skipped_files().empty());
      }
}

TEST(Loader, OneChannelAndCroppedBatchesHaveTheOutputShape) {
  TempDir dir;
  for (int i = 0; i < 5; ++i) write_image(dir / "a" / (std::to_string(i) + ".png"), gradient_grey(28, 28));
  const ImageFolder folder = scan_image_folder(dir.path().string(), false);
  LoaderOptions options;
  options.batch_size = 4;
  BatchLoader grey(folder, preset("fashion-mnist"), options);
  Batch batch;
  ASSERT_TRUE(grey.next(batch));
  EXPECT_EQ(batch.images.sizes(), (std::vector<int64_t>{4, 1, 28, 28}));
  BatchLoader cropped(folder, custom(3, 32, 30), options);
  EXPECT_EQ(cropped.height(), 30);
  ASSERT_TRUE(cropped.next(batch));
  EXPECT_EQ(batch.images.sizes(), (std::vector<int64_t>{4, 3, 30, 30}));
  ASSERT_TRUE(cropped.next(batch));
  EXPECT_EQ(batch.images.sizes(), (std::vector<int64_t>{1, 3, 30, 30}));
  EXPECT_FALSE(cropped.next(batch));
}

// A folder whose images 3, 6 and 7 (scan order) cannot be decoded.
struct BadFixture {
  TempDir dir;
  ImageFolder folder;
  std::vector<std::string> bad;
  BadFixture() {
    write_image(dir / "0" / "a.png", gradient_bgr(6, 5));
    write_image(dir / "0" / "b.png", gradient_bgr(6, 5));
    write_image(dir / "0" / "c.jpg", gradient_bgr(6, 5));
    write_bytes(dir / "0" / "d_noise.jpg", std::string(500, 'q'));
    write_image(dir / "1" / "a.bmp", gradient_bgr(6, 5));
    write_image(dir / "1" / "b.png", gradient_bgr(6, 5));
    write_bytes(dir / "1" / "c_empty.png", "");
    const std::string jpeg = read_bytes(dir / "0" / "c.jpg");
    write_bytes(dir / "1" / "d_truncated.jpg", jpeg.substr(0, jpeg.size() / 2));
    write_image(dir / "2" / "a.png", gradient_bgr(6, 5));
    write_image(dir / "2" / "b.png", gradient_bgr(6, 5));
    folder = scan_image_folder(dir.path().string(), false);
    bad = {(dir / "0" / "d_noise.jpg").string(), (dir / "1" / "c_empty.png").string(),
           (dir / "1" / "d_truncated.jpg").string()};
  }
};

TEST(Loader, FirstBadImageIsRethrownInOrder) {
  BadFixture data;
  for (int threads : {1, 2}) {
    LoaderOptions options;
    options.batch_size = 2;
    options.decode_threads = threads;
    BatchLoader loader(data.folder, preset("cifar"), options);
    Batch batch;
    ASSERT_TRUE(loader.next(batch));                      // images 0, 1
    EXPECT_DFQ_ERROR(loader.next(batch), "d_noise.jpg");  // batch with images 2, 3
    EXPECT_DFQ_ERROR(loader.next(batch), "d_noise.jpg");  // sticky
  }
  LoaderOptions options;
  options.batch_size = 100;
  BatchLoader loader(data.folder, preset("cifar"), options);
  Batch batch;
  EXPECT_DFQ_ERROR(loader.next(batch), "d_noise.jpg");
}

TEST(Loader, SkipBadLeavesBadImagesOutAndKeepsLabels) {
  BadFixture data;
  for (int threads : {1, 2})
    for (int64_t batch_size : {1, 2, 3, 100}) {
      SCOPED_TRACE("threads " + std::to_string(threads) + ", batch " + std::to_string(batch_size));
      LoaderOptions options;
      options.batch_size = batch_size;
      options.decode_threads = threads;
      options.skip_bad = true;
      BatchLoader loader(data.folder, preset("cifar"), options);
      EXPECT_EQ(loader.total(), 10);
      const Collected got = drain(loader);
      EXPECT_EQ(got.labels, (std::vector<int64_t>{0, 0, 0, 1, 1, 2, 2}));
      for (int64_t count : got.counts) EXPECT_GT(count, 0);
      EXPECT_EQ(loader.skipped_files(), data.bad);
    }
}

TEST(Loader, ImageOfAnotherSizeIsNamed) {
  TempDir dir;
  write_image(dir / "a" / "1.png", gradient_bgr(6, 5));
  write_image(dir / "a" / "2.png", gradient_bgr(6, 5));
  write_image(dir / "b" / "odd_size.png", gradient_bgr(7, 5));
  write_image(dir / "b" / "3.png", gradient_bgr(6, 5));
  const ImageFolder folder = scan_image_folder(dir.path().string(), false);
  LoaderOptions options;
  options.batch_size = 3;
  {
    BatchLoader loader(folder, preset("cifar"), options);
    Batch batch;
    ASSERT_TRUE(loader.next(batch));  // 1.png, 2.png, 3.png
    EXPECT_DFQ_ERROR(loader.next(batch), "odd_size.png");
    EXPECT_DFQ_ERROR(loader.next(batch), "expected 6x5");
  }
  options.skip_bad = true;
  BatchLoader loader(folder, preset("cifar"), options);
  const Collected got = drain(loader);
  EXPECT_EQ(got.labels, (std::vector<int64_t>{0, 0, 1}));
  EXPECT_EQ(loader.skipped_files(), std::vector<std::string>{(dir / "b" / "odd_size.png").string()});
}

// Runs `work` on another thread and fails (then aborts: a hung thread cannot be
// recovered) if it has not finished within the time limit.
void expect_finishes(const std::function<void()>& work, const char* what) {
  std::packaged_task<void()> task(work);
  std::future<void> done = task.get_future();
  std::thread runner(std::move(task));
  if (done.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << what << " hung";
    std::abort();
  }
  runner.join();
  done.get();
}

TEST(Loader, DestroyingMidWayDoesNotHang) {
  LoaderFixture data;
  BadFixture bad;
  for (int threads : {1, 2})
    for (int prefetch : {1, 2}) {
      LoaderOptions options;
      options.batch_size = 1;
      options.decode_threads = threads;
      options.prefetch_batches = prefetch;
      expect_finishes([&] { BatchLoader loader(data.folder, preset("cifar"), options); },
                      "destroying unused");
      expect_finishes(
          [&] {
            BatchLoader loader(data.folder, preset("cifar"), options);
            Batch batch;
            EXPECT_TRUE(loader.next(batch));
            std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the workers fill every slot
          },
          "destroying after one batch");
      expect_finishes(
          [&] {
            BatchLoader loader(bad.folder, preset("cifar"), options);
            Batch batch;
            try {
              while (loader.next(batch)) {
              }
            } catch (const Error&) {
            }
          },
          "destroying after an error");
    }
}

TEST(Loader, OptionsAreValidated) {
  LoaderFixture data;
  const Preprocess pre = preset("cifar");
  LoaderOptions options;
  options.batch_size = 0;
  EXPECT_DFQ_ERROR(BatchLoader(data.folder, pre, options), "--batch");
  options = LoaderOptions{};
  options.limit = -1;
  EXPECT_DFQ_ERROR(BatchLoader(data.folder, pre, options), "--limit");
  options = LoaderOptions{};
  options.decode_threads = 0;
  EXPECT_DFQ_ERROR(BatchLoader(data.folder, pre, options), "--decode-threads");
  options = LoaderOptions{};
  options.prefetch_batches = 0;
  EXPECT_DFQ_ERROR(BatchLoader(data.folder, pre, options), "prefetch");
  Preprocess bad = pre;
  bad.channels = 4;
  EXPECT_DFQ_ERROR(BatchLoader(data.folder, bad, LoaderOptions{}), "channels");
}

// ---------------------------------------------------------------- ranking; the files of --predictions and --save-inputs

TEST(TopIndices, BestFirstTiesToTheLowerIndexNanOnTop) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor logits = at::tensor({1.f, 3.f, 3.f, 2.f, 3.f, 0.f,     // a three-way tie for the top
                                        5.f, 5.f, 5.f, 5.f, 5.f, 5.f,     // all equal
                                        0.f, nan, 1.f, nan, 2.f, -1.f,    // NaN above every number, as in argmax
                                        -1.f, -2.f, -3.f, -4.f, -5.f, -6.f})
                               .view({4, 6});
  const at::Tensor top = top_indices(logits, 5);
  ASSERT_EQ(top.sizes(), at::IntArrayRef({4, 5}));
  ASSERT_EQ(top.scalar_type(), at::kLong);
  const std::vector<std::vector<int64_t>> expected = {{1, 2, 4, 3, 0}, {0, 1, 2, 3, 4}, {1, 3, 4, 2, 0}, {0, 1, 2, 3, 4}};
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 5; ++j) EXPECT_EQ(top[i][j].item<int64_t>(), expected[i][j]) << "row " << i << " rank " << j;
  EXPECT_TRUE(at::equal(top.select(1, 0), logits.argmax(1)));
  EXPECT_TRUE(at::equal(top_indices(logits, 6).select(1, 0), logits.argmax(1)));
}

TEST(TopIndices, ColumnZeroIsArgmaxOnManyTies) {
  at::manual_seed(3);
  for (at::ScalarType type : {at::kFloat, at::kDouble}) {
    const at::Tensor logits = at::randint(0, 3, {500, 10}).to(type);  // ties in almost every row
    const at::Tensor top = top_indices(logits, 5);
    EXPECT_TRUE(at::equal(top.select(1, 0), logits.argmax(1)));
    // Best first: values never rise along a row.
    const at::Tensor values = logits.gather(1, top);
    EXPECT_TRUE((values.narrow(1, 0, 4) >= values.narrow(1, 1, 4)).all().item<bool>());
  }
}

TEST(TopIndices, BadShapesAreNamed) {
  EXPECT_DFQ_ERROR(top_indices(at::zeros({4}), 1), "model output: expected N x classes logits, found 1 dimensions");
  EXPECT_DFQ_ERROR(top_indices(at::zeros({2, 3}), 5), "expected a count from 1 to the model's 3 outputs, found 5");
}

TEST(CsvField, QuotesOnlyWhenNeededAndDoublesQuotes) {
  EXPECT_EQ(csv_field("cat/001.png"), "cat/001.png");
  EXPECT_EQ(csv_field("a,b/x.png"), "\"a,b/x.png\"");
  EXPECT_EQ(csv_field("say \"hi\".png"), "\"say \"\"hi\"\".png\"");
  EXPECT_EQ(csv_field("two\nlines.png"), "\"two\nlines.png\"");
  EXPECT_EQ(csv_field("cr\r.png"), "\"cr\r.png\"");
  EXPECT_EQ(csv_field(""), "");
}

namespace {

// Three classes whose folders map to outputs 2, 0 and 1 (as --class-names can).
struct RecorderFixture {
  ImageFolder folder{"/data", {"b,ird", "cat", "dog"}, {}, {}};
  std::vector<int64_t> outputs{2, 0, 1};
  RecorderFixture() {
    folder.images = {{"/data/b,ird/1.png", 0}, {"/data/b,ird/2.png", 0}, {"/data/cat/\"q\".png", 1},
                     {"/data/cat/4.png", 1},   {"/data/dog/5.png", 2}};
  }
};

// Logits of a batch: row i is `rows[first + i]`; inputs hold the image number.
BatchModel table_model(const std::vector<std::vector<float>>& rows, int64_t& first) {
  return [&rows, &first](const at::Tensor& x) {
    at::Tensor logits = at::empty({x.size(0), static_cast<int64_t>(rows[0].size())});
    for (int64_t i = 0; i < x.size(0); ++i)
      for (size_t k = 0; k < rows[0].size(); ++k) logits[i][static_cast<int64_t>(k)] = rows[static_cast<size_t>(first + i)][k];
    first += x.size(0);
    return logits;
  };
}

at::Tensor numbered_inputs(int64_t first, int64_t count) {
  return at::arange(first * 12, (first + count) * 12, at::kFloat).view({count, 3, 2, 2});
}

}  // namespace

TEST(EvaluatedImages, LimitAndSkippedImagesAreLeftOutAndLabelsMapped) {
  RecorderFixture f;
  const EvaluatedImages all = evaluated_images(f.folder, f.outputs, 0, {});
  EXPECT_EQ(all.paths, (std::vector<std::string>{"b,ird/1.png", "b,ird/2.png", "cat/\"q\".png", "cat/4.png", "dog/5.png"}));
  EXPECT_EQ(all.labels, (std::vector<int64_t>{2, 2, 0, 0, 1}));
  const EvaluatedImages some = evaluated_images(f.folder, f.outputs, 4, {"/data/b,ird/2.png"});
  EXPECT_EQ(some.paths, (std::vector<std::string>{"b,ird/1.png", "cat/\"q\".png", "cat/4.png"}));
  EXPECT_EQ(some.labels, (std::vector<int64_t>{2, 0, 0}));
}

TEST(OutputRecorder, PredictionsCsvIsExactAndRanksLikeEvaluate) {
  RecorderFixture f;
  TempDir dir;
  const std::vector<std::vector<float>> rows = {
      {0.f, 1.f, 9.f}, {4.f, 4.f, 1.f}, {7.f, 7.f, 7.f}, {1.f, 2.f, 3.f}, {0.f, 5.f, 5.f}};
  int64_t first = 0;
  OutputRecorder::Keep keep;
  keep.ranking = true;
  OutputRecorder recorder(keep);
  const BatchModel model = recorder.wrap(table_model(rows, first));
  model(numbered_inputs(0, 2));
  model(numbered_inputs(2, 3));
  EXPECT_EQ(recorder.images(), 5);
  const EvaluatedImages images = evaluated_images(f.folder, f.outputs, 0, {});
  recorder.write_predictions((dir / "p.csv").string(), images, "--predictions 'p.csv'");
  EXPECT_EQ(read_bytes(dir / "p.csv"),
            "path,label,prediction,top5\n"
            "\"b,ird/1.png\",2,2,2 1 0\n"
            "\"b,ird/2.png\",2,0,0 1 2\n"
            "\"cat/\"\"q\"\".png\",0,0,0 1 2\n"
            "cat/4.png,0,2,2 1 0\n"
            "dog/5.png,1,1,1 2 0\n");
  // Inputs were not kept: --save-inputs from this recorder is refused, not written empty.
  EXPECT_DFQ_ERROR(recorder.write_inputs((dir / "x").string(), (dir / "x.json").string(), images, "--save-inputs 'x'"),
                   "--save-inputs 'x': expected a recorder that kept the inputs");
  const EvaluatedImages fewer = evaluated_images(f.folder, f.outputs, 3, {});
  EXPECT_DFQ_ERROR(recorder.write_predictions((dir / "q.csv").string(), fewer, "--predictions 'q.csv'"),
                   "--predictions 'q.csv': expected 3 recorded images (the folder's, less those skipped), found 5");
  EXPECT_FALSE(fs::exists(dir / "x"));
  EXPECT_FALSE(fs::exists(dir / "q.csv"));
}

TEST(OutputRecorder, SavedInputsAreRawLittleEndianFloatsWithAJsonIndex) {
  RecorderFixture f;
  TempDir dir;
  const std::vector<std::vector<float>> rows(5, std::vector<float>{1.f, 0.f});
  int64_t first = 0;
  OutputRecorder::Keep keep;
  keep.inputs = true;
  OutputRecorder recorder(keep);
  const BatchModel model = recorder.wrap(table_model(rows, first));
  model(numbered_inputs(0, 3));
  model(numbered_inputs(3, 1));
  const EvaluatedImages images = evaluated_images(f.folder, f.outputs, 0, {"/data/cat/4.png"});
  recorder.write_inputs((dir / "in.f32").string(), (dir / "in.f32.json").string(), images, "--save-inputs 'in.f32'");
  const std::string raw = read_bytes(dir / "in.f32");
  ASSERT_EQ(raw.size(), 4u * 3 * 2 * 2 * sizeof(float));
  for (size_t i = 0; i < 48; ++i) {  // the value i, little-endian
    const auto* b = reinterpret_cast<const unsigned char*>(raw.data() + 4 * i);
    const uint32_t bits = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
    float value = 0;
    std::memcpy(&value, &bits, 4);
    ASSERT_EQ(value, static_cast<float>(i)) << "value " << i;
  }
  const nlohmann::json index = nlohmann::json::parse(read_bytes(dir / "in.f32.json"));
  EXPECT_EQ(index["format"], "dfq-inputs");
  EXPECT_EQ(index["version"], 1);
  EXPECT_EQ(index["dtype"], "float32");
  EXPECT_EQ(index["shape"], nlohmann::json({4, 3, 2, 2}));
  EXPECT_EQ(index["paths"], nlohmann::json({"b,ird/1.png", "b,ird/2.png", "cat/\"q\".png", "dog/5.png"}));
  EXPECT_EQ(index["labels"], nlohmann::json({2, 2, 0, 1}));
  EXPECT_DFQ_ERROR(recorder.write_predictions((dir / "p.csv").string(), images, "--predictions 'p.csv'"),
                   "expected a recorder that kept the ranking");
}

// evaluate() and the predictions file agree even when every logit ties.
TEST(OutputRecorder, EvaluateScoresTopOneLikeThePredictionsFile) {
  TempDir dir;
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 3; ++i) write_image(dir / std::to_string(c) / (std::to_string(i) + ".png"), gradient_grey(4, 4));
  const ImageFolder folder = scan_image_folder(dir.path().string(), false);
  OutputRecorder::Keep keep;
  keep.ranking = true;
  OutputRecorder recorder(keep);
  const BatchModel ties = [](const at::Tensor& x) { return at::zeros({x.size(0), 3}); };
  LoaderOptions options;
  options.batch_size = 4;
  const EvalResult result = evaluate(recorder.wrap(ties), folder, {0, 1, 2}, custom(1, 0, 0), options, true);
  recorder.write_predictions((dir / "p.csv").string(), evaluated_images(folder, {0, 1, 2}, 0, {}), "--predictions");
  std::istringstream csv(read_bytes(dir / "p.csv"));
  std::string line;
  std::getline(csv, line);
  int64_t rows = 0, hits = 0;
  while (std::getline(csv, line)) {
    ++rows;
    std::vector<std::string> cells;
    std::istringstream fields(line);
    for (std::string cell; std::getline(fields, cell, ',');) cells.push_back(cell);
    ASSERT_EQ(cells.size(), 4u) << line;
    EXPECT_EQ(cells[2], "0") << "ties go to the lowest index";
    EXPECT_EQ(cells[3], "0 1 2");
    hits += cells[1] == cells[2];
  }
  EXPECT_EQ(rows, result.images);
  EXPECT_EQ(hits, result.correct_top1);
  EXPECT_EQ(result.correct_top1, 3);
}

// ---------------------------------------------------------------- ../shared data

TEST(SharedData, Cifar10TestFolder) {
  const fs::path root = kShared / "datasets" / "cifar10-test";
  if (!fs::is_directory(root)) GTEST_SKIP() << "../shared not found: " << root;
  const ImageFolder folder = scan_image_folder(root.string(), false);
  ASSERT_EQ(folder.classes.size(), 10u);
  EXPECT_EQ(folder.classes.front(), "airplane");
  EXPECT_EQ(folder.classes.back(), "truck");
  ASSERT_EQ(folder.images.size(), 10000u);
  std::map<int64_t, int> per_label;
  for (const ImageEntry& entry : folder.images) ++per_label[entry.label];
  ASSERT_EQ(per_label.size(), 10u);
  for (const auto& [label, count] : per_label) {
    EXPECT_GE(label, 0);
    EXPECT_LE(label, 9);
    EXPECT_EQ(count, 1000) << "label " << label;
  }
  LoaderOptions options;
  options.batch_size = 32;
  options.limit = 100;
  options.decode_threads = 2;
  const Preprocess pre = preset("cifar");
  BatchLoader loader(folder, pre, options);
  EXPECT_EQ(loader.total(), 100);
  const Collected got = drain(loader);
  ASSERT_EQ(got.labels.size(), 100u);
  for (size_t i = 0; i < 100; ++i) {
    EXPECT_EQ(got.labels[i], folder.images[i].label);
    EXPECT_EQ(got.images[i].sizes(), (std::vector<int64_t>{3, 32, 32}));
    EXPECT_TRUE(at::equal(got.images[i], decoded(folder.images[i], pre, 32, 32)));
  }
}

TEST(SharedData, ImagenetSampleFolder) {
  const fs::path root = kShared / "datasets" / "imagenet-sample";
  if (!fs::is_directory(root)) GTEST_SKIP() << "../shared not found: " << root;
  const ImageFolder folder = scan_image_folder(root.string(), false);
  ASSERT_EQ(folder.classes.size(), 20u);
  LoaderOptions options;
  options.batch_size = 8;
  options.decode_threads = 2;
  BatchLoader loader(folder, preset("imagenet"), options);
  const Collected got = drain(loader);
  ASSERT_EQ(got.labels.size(), folder.images.size());
  for (size_t i = 0; i < got.images.size(); ++i) {
    EXPECT_EQ(got.labels[i], folder.images[i].label);
    EXPECT_EQ(got.images[i].sizes(), (std::vector<int64_t>{3, 224, 224}));
    EXPECT_TRUE(at::isfinite(got.images[i]).all().item<bool>());
    // Normalized pixels stay within (0 - 0.485) / 0.229 .. (1 - 0.406) / 0.225.
    EXPECT_GE(got.images[i].min().item<float>(), -2.12f);
    EXPECT_LE(got.images[i].max().item<float>(), 2.65f);
  }
}

}  // namespace
