// How an image file becomes a normalized model input.
//
// Decoding: OpenCV, 8-bit images only. A 3-channel model gets RGB (BGR from
// OpenCV is swapped; a grayscale file is replicated to 3 channels, an alpha
// channel dropped, as PIL's convert("RGB") does). A 1-channel model accepts
// only grayscale files. Then, in order: resize so the shorter side equals
// `resize_shorter` (long side = floor(long * resize_shorter / short), as
// torchvision; bilinear when enlarging, area averaging when shrinking, which
// approximates PIL's antialiased bilinear), centre-crop `crop` x `crop`
// (offset round((size - crop) / 2), halves to even as Python's round() in
// torchvision), scale to [0, 1] and normalize per channel:
//   input = (pixel / 255 - mean[c]) / std[c].
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace dfq {

struct Preprocess {
  std::string name = "custom";  // preset it came from, for reports
  int channels = 3;             // 1 (grayscale) or 3 (RGB)
  int resize_shorter = 0;       // 0: no resize
  int crop = 0;                 // 0: no crop (all images must then have the same size)
  std::vector<float> mean{0.f, 0.f, 0.f};  // one entry per channel
  std::vector<float> std{1.f, 1.f, 1.f};   // one entry per channel, > 0
};

// "cifar": 3 channels, no resize, no crop, ImageNet mean/std (0.485, 0.456,
// 0.406) / (0.229, 0.224, 0.225); "imagenet": resize 256, crop 224, same
// mean/std; "fashion-mnist": 1 channel, no resize, mean 0.2860, std 0.3530.
// Throws dfq::Error naming the known presets for any other name.
Preprocess preset(const std::string& name);
std::vector<std::string> preset_names();

// Throws dfq::Error unless channels is 1 or 3, mean and std have `channels`
// entries, every std > 0, resize_shorter >= 0, crop >= 0, and
// crop <= resize_shorter when both are set.
void validate(const Preprocess& pre);

// Decoded and normalized size (height, width) for an image of the given
// source size, following the resize and crop rules above.
std::pair<int, int> output_size(const Preprocess& pre, int source_height, int source_width);

// Height and width an image file's header declares, read without decoding:
// {0, 0} when it declares none that dfq reads (then decoding tells). Throws
// dfq::Error naming the file when it cannot be read, is not a complete JPEG,
// PNG or BMP, or declares more pixels than its bytes can hold (2^14 per byte,
// 2^30 in all): the check decode_image makes before it decodes anything.
std::pair<int, int> image_header_size(const std::string& path);

// Decodes the image file at `path` and writes channels x height x width
// floats (CHW, normalized) to `dst`. Throws dfq::Error naming the file when it
// cannot be read or decoded, declares more pixels than its bytes can hold (see
// image_header_size), has an unsupported depth or channel count, would
// exceed 2^27 pixels when resized (an extreme aspect ratio), or does not decode
// to exactly height x width after resize/crop.
void decode_image(const std::string& path, const Preprocess& pre, int height, int width, float* dst);

}  // namespace dfq
