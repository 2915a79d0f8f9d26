// make_test_image OUT HEIGHT WIDTH CHANNELS [SEED]: writes a random 8-bit image
// (format from OUT's extension: .png, .jpg, .bmp) so that shell tests can build
// image folders on the fly without Python imaging packages.
#include <cstdio>
#include <cstdlib>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

int main(int argc, char** argv) {
  if (argc < 5 || argc > 6) {
    std::fprintf(stderr, "usage: make_test_image OUT HEIGHT WIDTH CHANNELS(1|3|4) [SEED]\n");
    return 2;
  }
  const int height = std::atoi(argv[2]), width = std::atoi(argv[3]), channels = std::atoi(argv[4]);
  if (height <= 0 || width <= 0 || (channels != 1 && channels != 3 && channels != 4)) {
    std::fprintf(stderr, "make_test_image: expected positive sizes and 1, 3 or 4 channels\n");
    return 2;
  }
  cv::Mat image(height, width, CV_8UC(channels));
  cv::theRNG().state = argc == 6 ? std::strtoull(argv[5], nullptr, 10) + 1 : 1;
  cv::randu(image, cv::Scalar::all(0), cv::Scalar::all(256));
  if (!cv::imwrite(argv[1], image)) {
    std::fprintf(stderr, "make_test_image: could not write %s\n", argv[1]);
    return 1;
  }
  return 0;
}
