#include "eval/preprocess.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.h"

namespace dfq {
namespace {

const char* const kDecodable = "a decodable JPEG/PNG/BMP image";

// The most pixels a resize may produce. A file of about 100 bytes can hold a
// valid 1 x 20000 PNG, which resizing the shorter side to 256 would turn into
// 1.3 G pixels (3.9 GB); PIL similarly refuses images above ~179 M pixels.
constexpr int64_t kMaxResizedPixels = int64_t{1} << 27;

std::string image_subject(const std::string& path) { return "image '" + path + "'"; }

std::string size_text(int height, int width) { return std::to_string(height) + "x" + std::to_string(width); }

// torchvision's Resize(int): the shorter side becomes `resize_shorter`, the longer
// one is truncated (int(long * size / short)); integer arithmetic gives the same
// value. A longer side beyond INT_MAX (extreme aspect ratios) saturates.
std::pair<int, int> resized_size(const Preprocess& pre, int height, int width) {
  if (pre.resize_shorter <= 0 || height <= 0 || width <= 0) return {height, width};
  const int64_t target = pre.resize_shorter;
  auto longer = [&](int64_t side, int64_t shorter) {
    return static_cast<int>(std::min<int64_t>(side * target / shorter, std::numeric_limits<int>::max()));
  };
  if (height <= width) return {pre.resize_shorter, longer(width, height)};
  return {longer(height, width), pre.resize_shorter};
}

// torchvision's CenterCrop uses Python's round(), which sends halves to the even
// neighbour: a 117-pixel margin gives offset 58, not 59.
int centre_offset(int size, int crop) {
  const int margin = size - crop;
  const int half = margin / 2;
  return (margin % 2 == 1 && half % 2 == 1) ? half + 1 : half;
}

// Whole file into a buffer that each decoding thread keeps, so steady-state
// decoding allocates nothing here.
void read_file(const std::string& path, std::vector<unsigned char>& bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(image_subject(path), "a readable file", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0) fail(image_subject(path), "a readable file", std::strerror(errno));
  if (!S_ISREG(info.st_mode)) fail(image_subject(path), "a regular file", "another kind of file");
  bytes.resize(static_cast<size_t>(info.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail(image_subject(path), "a readable file", std::strerror(errno));
    if (got == 0) break;  // shrank while reading
    done += static_cast<size_t>(got);
  }
  bytes.resize(done);
}

uint32_t big_endian32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}

// Every chunk complete and intact (CRC-32) up to IEND: libpng would report a
// damaged chunk on stderr itself, breaking the one-line error.
// A chunk type as text for a message: its 4 bytes when they are letters (as
// the PNG specification requires), else their hex, so the message stays one line.
std::string chunk_name(const unsigned char* type) {
  std::string name;
  for (int i = 0; i < 4; ++i)
    if (!((type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z'))) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%02x%02x%02x%02x", type[0], type[1], type[2], type[3]);
      return hex;
    } else {
      name += static_cast<char>(type[i]);
    }
  return name;
}

void check_png_chunks(const std::string& path, const unsigned char* b, size_t size) {
  for (size_t at = 8;;) {
    if (size - at < 12) fail(image_subject(path), kDecodable, "a truncated PNG (no IEND chunk)");
    const uint32_t length = big_endian32(b + at);
    const unsigned char* type = b + at + 4;
    if (length > size - at - 12)
      fail(image_subject(path), kDecodable, "a truncated PNG (chunk " + chunk_name(type) + " cut off)");
    const uLong crc = crc32(crc32(0L, Z_NULL, 0), type, static_cast<uInt>(length) + 4);
    if (crc != big_endian32(type + 4 + length))
      fail(image_subject(path), kDecodable, "a corrupt PNG (CRC mismatch in chunk " + chunk_name(type) + ")");
    if (std::memcmp(type, "IEND", 4) == 0) return;
    at += 12 + static_cast<size_t>(length);
  }
}

// OpenCV decodes truncated JPEGs (and some truncated BMPs) into partially grey
// images with only a warning on stderr, so completeness is checked on the bytes.
void check_complete(const std::string& path, const std::vector<unsigned char>& bytes) {
  const size_t size = bytes.size();
  const unsigned char* b = bytes.data();
  if (size == 0) fail(image_subject(path), kDecodable, "an empty (0-byte) file");
  static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) {
    size_t end = size;  // some writers pad after the end-of-image marker
    while (end > 0 && (b[end - 1] == 0 || b[end - 1] == '\n' || b[end - 1] == '\r')) --end;
    if (end < 4 || b[end - 2] != 0xff || b[end - 1] != 0xd9)
      fail(image_subject(path), kDecodable, "a truncated JPEG (no end-of-image marker)");
  } else if (size >= 8 && std::memcmp(b, kPng, 8) == 0) {
    check_png_chunks(path, b, size);
  } else if (size >= 14 && b[0] == 'B' && b[1] == 'M') {
    const uint32_t declared = b[2] | (b[3] << 8) | (b[4] << 16) | (static_cast<uint32_t>(b[5]) << 24);
    if (declared > size)  // 0 ("unknown") is allowed by some writers
      fail(image_subject(path), kDecodable,
           "a truncated BMP (" + std::to_string(size) + " of " + std::to_string(declared) + " bytes)");
  } else {
    fail(image_subject(path), kDecodable, "unreadable or corrupt data (no JPEG, PNG or BMP signature)");
  }
}

// Height and width in the header of a complete JPEG (the first SOFn marker),
// PNG (IHDR) or BMP (info header) file; {0, 0} when a JPEG has no frame header
// (OpenCV then refuses it).
std::pair<int64_t, int64_t> header_size(const unsigned char* b, size_t size) {
  if (b[0] == 0xff && b[1] == 0xd8) {
    for (size_t at = 2; at + 9 <= size;) {
      if (b[at] != 0xff) return {0, 0};
      const unsigned char marker = b[at + 1];
      if (marker == 0xff) { ++at; continue; }  // fill byte
      const size_t length = (size_t{b[at + 2]} << 8) | b[at + 3];
      const bool frame = marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc;
      if (frame) return {(int64_t{b[at + 5]} << 8) | b[at + 6], (int64_t{b[at + 7]} << 8) | b[at + 8]};
      if (marker == 0xda || length < 2) return {0, 0};  // scan data before any frame header
      at += 2 + length;
    }
    return {0, 0};
  }
  if (b[0] == 0x89) return {big_endian32(b + 20), big_endian32(b + 16)};  // PNG: IHDR width, height
  if (size < 26) return {0, 0};  // BMP: a core header of 12 bytes is not read here
  auto le32 = [&](size_t at) {
    return static_cast<int32_t>(b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (static_cast<uint32_t>(b[at + 3]) << 24));
  };
  return {std::abs(int64_t{le32(22)}), std::abs(int64_t{le32(18)})};  // negative height: top-down rows
}

// No encoder packs more than ~8,300 pixels into a byte (deflate's 1032:1 on a
// 1-bit PNG; JPEG and BMP RLE far less): a header declaring more than 2^14 per
// byte of the file (or more than OpenCV's 2^30) is refused before the decoder
// allocates for it.
constexpr int64_t kMaxPixelsPerByte = int64_t{1} << 14, kMaxPixels = int64_t{1} << 30;

void check_declared_size(const std::string& path, const std::vector<unsigned char>& bytes) {
  const auto [height, width] = header_size(bytes.data(), bytes.size());
  const int64_t bytes_size = static_cast<int64_t>(bytes.size());
  if (height > 0 && width > 0 &&
      (height > kMaxPixels / width || height * width > kMaxPixelsPerByte * bytes_size))
    fail(image_subject(path), "a header declaring what its " + std::to_string(bytes_size) +
                                  " bytes can hold (at most 2^14 pixels per byte, 2^30 in all)",
         "a header declaring " + std::to_string(height) + "x" + std::to_string(width) + " pixels");
}

// (pixel / 255 - mean) / std for every 8-bit value, computed once per thread and
// preset: exact to the formula and one lookup per output value.
struct NormalizeTable {
  int channels = 0;
  std::vector<float> mean, std;
  std::array<std::array<float, 256>, 3> value{};

  const NormalizeTable& for_preprocess(const Preprocess& pre) {
    if (pre.channels == channels && pre.mean == mean && pre.std == std) return *this;
    validate(pre);
    channels = pre.channels;
    mean = pre.mean;
    std = pre.std;
    for (int c = 0; c < channels; ++c)
      for (int p = 0; p < 256; ++p)
        value[c][p] =
            static_cast<float>((p / 255.0 - static_cast<double>(mean[c])) / static_cast<double>(std[c]));
    return *this;
  }
};

// One pass from the decoded 8-bit pixels (BGR/BGRA order, or grey) to planar RGB floats.
template <int kSourceChannels>
void write_planes(const cv::Mat& image, int top, int left, int height, int width, int channels,
                  const NormalizeTable& table, float* dst) {
  const size_t plane = static_cast<size_t>(height) * width;
  const float* lut0 = table.value[0].data();
  const float* lut1 = table.value[1].data();
  const float* lut2 = table.value[2].data();
  for (int y = 0; y < height; ++y) {
    const unsigned char* row =
        image.ptr<unsigned char>(top + y) + static_cast<size_t>(left) * kSourceChannels;
    float* out = dst + static_cast<size_t>(y) * width;
    if (channels == 1) {
      for (int x = 0; x < width; ++x) out[x] = lut0[row[x]];
    } else if (kSourceChannels == 1) {
      for (int x = 0; x < width; ++x) {
        const unsigned char grey = row[x];
        out[x] = lut0[grey];
        out[plane + x] = lut1[grey];
        out[2 * plane + x] = lut2[grey];
      }
    } else {
      for (int x = 0; x < width; ++x) {
        const unsigned char* pixel = row + static_cast<size_t>(x) * kSourceChannels;
        out[x] = lut0[pixel[2]];
        out[plane + x] = lut1[pixel[1]];
        out[2 * plane + x] = lut2[pixel[0]];
      }
    }
  }
}

struct DecodeScratch {
  std::vector<unsigned char> bytes;
  cv::Mat resized;
  NormalizeTable table;
};

}  // namespace

Preprocess preset(const std::string& name) {
  const std::vector<float> imagenet_mean{0.485f, 0.456f, 0.406f};
  const std::vector<float> imagenet_std{0.229f, 0.224f, 0.225f};
  Preprocess pre;
  pre.name = name;
  if (name == "cifar") {
    pre.mean = imagenet_mean;
    pre.std = imagenet_std;
  } else if (name == "imagenet") {
    pre.resize_shorter = 256;
    pre.crop = 224;
    pre.mean = imagenet_mean;
    pre.std = imagenet_std;
  } else if (name == "fashion-mnist") {
    pre.channels = 1;
    pre.mean = {0.2860f};
    pre.std = {0.3530f};
  } else {
    std::string known;
    for (const std::string& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
    fail("preset '" + name + "'", "one of " + known, "an unknown preset");
  }
  return pre;
}

std::vector<std::string> preset_names() { return {"cifar", "imagenet", "fashion-mnist"}; }

void validate(const Preprocess& pre) {
  const std::string subject = "preprocessing '" + pre.name + "'";
  if (pre.channels != 1 && pre.channels != 3)
    fail(subject + " channels", "1 or 3", std::to_string(pre.channels));
  const std::string per_channel = std::to_string(pre.channels) + " value(s), one per input channel";
  if (pre.mean.size() != static_cast<size_t>(pre.channels))
    fail(subject + " --mean", per_channel, std::to_string(pre.mean.size()));
  if (pre.std.size() != static_cast<size_t>(pre.channels))
    fail(subject + " --std", per_channel, std::to_string(pre.std.size()));
  for (float s : pre.std)
    if (!(s > 0.f)) fail(subject + " --std", "values > 0", std::to_string(s));
  if (pre.resize_shorter < 0) fail(subject + " --resize", "a value >= 0", std::to_string(pre.resize_shorter));
  if (pre.crop < 0) fail(subject + " --crop", "a value >= 0", std::to_string(pre.crop));
  if (pre.crop > 0 && pre.resize_shorter > 0 && pre.crop > pre.resize_shorter)
    fail(subject + " --crop", "a value <= --resize " + std::to_string(pre.resize_shorter),
         std::to_string(pre.crop));
}

std::pair<int, int> image_header_size(const std::string& path) {
  std::vector<unsigned char> bytes;
  read_file(path, bytes);
  check_complete(path, bytes);
  check_declared_size(path, bytes);
  const auto [height, width] = header_size(bytes.data(), bytes.size());
  return {static_cast<int>(height), static_cast<int>(width)};
}

std::pair<int, int> output_size(const Preprocess& pre, int source_height, int source_width) {
  if (pre.crop > 0) return {pre.crop, pre.crop};
  return resized_size(pre, source_height, source_width);
}

void decode_image(const std::string& path, const Preprocess& pre, int height, int width, float* dst) {
  thread_local DecodeScratch scratch;
  const NormalizeTable& table = scratch.table.for_preprocess(pre);
  read_file(path, scratch.bytes);
  check_complete(path, scratch.bytes);
  check_declared_size(path, scratch.bytes);
  // A fresh Mat each time: on a header failure imdecode leaves its destination
  // untouched, so a reused one could pass off the previous image as this one.
  cv::Mat decoded;
  try {
    decoded = cv::imdecode(cv::Mat(1, static_cast<int>(scratch.bytes.size()), CV_8UC1, scratch.bytes.data()),
                           cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {  // e.g. a header declaring more pixels than OpenCV decodes (2^30)
    fail(image_subject(path), kDecodable, "data OpenCV refuses (" + one_line(e.err) + ")");
  }
  if (decoded.empty()) fail(image_subject(path), kDecodable, "unreadable or corrupt data");
  if (decoded.depth() != CV_8U)
    fail(image_subject(path), "an 8-bit image", std::to_string(decoded.elemSize1() * 8) + "-bit samples");
  const int source_channels = decoded.channels();
  if (pre.channels == 1 && source_channels != 1)
    fail(image_subject(path), "a 1-channel (grayscale) image", std::to_string(source_channels) + " channels");
  if (source_channels != 1 && source_channels != 3 && source_channels != 4)
    fail(image_subject(path), "a 1-, 3- or 4-channel image", std::to_string(source_channels) + " channels");

  const cv::Mat* image = &decoded;
  const auto [resized_height, resized_width] = resized_size(pre, decoded.rows, decoded.cols);
  if (resized_height != decoded.rows || resized_width != decoded.cols) {
    if (int64_t{resized_height} * resized_width > kMaxResizedPixels)
      fail(image_subject(path),
           "at most 2^27 pixels after resizing the shorter side to " + std::to_string(pre.resize_shorter),
           size_text(decoded.rows, decoded.cols) + " pixels, which would become " +
               size_text(resized_height, resized_width));
    const bool enlarging = resized_height > decoded.rows || resized_width > decoded.cols;
    cv::resize(decoded, scratch.resized, cv::Size(resized_width, resized_height), 0, 0,
               enlarging ? cv::INTER_LINEAR : cv::INTER_AREA);
    image = &scratch.resized;
  }
  int top = 0, left = 0, out_height = image->rows, out_width = image->cols;
  if (pre.crop > 0) {
    if (image->rows < pre.crop || image->cols < pre.crop)
      fail(image_subject(path), "at least " + size_text(pre.crop, pre.crop) + " pixels to centre-crop",
           size_text(image->rows, image->cols));
    top = centre_offset(image->rows, pre.crop);
    left = centre_offset(image->cols, pre.crop);
    out_height = out_width = pre.crop;
  }
  if (out_height != height || out_width != width)
    fail(image_subject(path), size_text(height, width) + " (height x width) after resize/crop",
         size_text(out_height, out_width));

  switch (source_channels) {
    case 1: write_planes<1>(*image, top, left, height, width, pre.channels, table, dst); break;
    case 3: write_planes<3>(*image, top, left, height, width, pre.channels, table, dst); break;
    default: write_planes<4>(*image, top, left, height, width, pre.channels, table, dst); break;
  }
}

}  // namespace dfq
