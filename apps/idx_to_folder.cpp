// idx-to-folder IMAGES.gz LABELS.gz OUT_DIR --classes a,b,...: turns gzip'ed IDX
// files (MNIST, Fashion-MNIST) into an image folder, OUT_DIR/<class>/<index>.png.
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <sstream>

#include "core/error.h"

namespace fs = std::filesystem;
using dfq::fail;

namespace {

std::string read_gzip(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) fail("file '" + path + "'", "a readable gzip file", std::strerror(errno));
  std::string data;
  char buffer[1 << 16];
  int got = 0;
  while ((got = gzread(file, buffer, sizeof buffer)) > 0) data.append(buffer, static_cast<size_t>(got));
  int code = 0;
  const std::string message = got < 0 ? gzerror(file, &code) : "";
  gzclose(file);
  if (got < 0) fail("file '" + path + "'", "valid gzip data", message);
  return data;
}

// Checks magic 0x000008<dims> (unsigned bytes) and the total size; returns the dimensions.
std::vector<size_t> idx_dims(const std::string& path, const std::string& data, size_t dims) {
  auto be32 = [&](size_t at) {
    const auto* b = reinterpret_cast<const unsigned char*>(data.data()) + at;
    return size_t{b[0]} << 24 | size_t{b[1]} << 16 | size_t{b[2]} << 8 | size_t{b[3]};
  };
  auto hex = [](size_t value) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%08zx", value);
    return std::string(text);
  };
  const size_t header = 4 + 4 * dims;
  if (data.size() < header || be32(0) != (0x800 | dims))
    fail("file '" + path + "'", "an IDX file of unsigned bytes (magic " + hex(0x800 | dims) + ")",
         data.size() < header ? std::to_string(data.size()) + " bytes" : "magic " + hex(be32(0)));
  std::vector<size_t> sizes;
  size_t items = 1;
  for (size_t d = 0; d < dims; ++d) items *= sizes.emplace_back(be32(4 + 4 * d));
  if (data.size() != header + items)
    fail("file '" + path + "'", std::to_string(header + items) + " bytes", std::to_string(data.size()));
  return sizes;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> args(argv + 1, argv + argc), classes;
    const auto option = std::find(args.begin(), args.end(), "--classes");
    if (option != args.end() && option + 1 != args.end()) {
      std::stringstream list(*(option + 1));
      for (std::string name; std::getline(list, name, ',');) classes.push_back(name);
      args.erase(option, option + 2);
    }
    if (args.size() != 3 || classes.empty())
      fail("usage", "idx-to-folder IMAGES.gz LABELS.gz OUT_DIR --classes a,b,...", "other arguments");
    const std::string images = read_gzip(args[0]), labels = read_gzip(args[1]);
    const std::vector<size_t> dims = idx_dims(args[0], images, 3);
    const size_t count = dims[0], pixels = dims[1] * dims[2];
    if (idx_dims(args[1], labels, 1)[0] != count)
      fail("file '" + args[1] + "'", std::to_string(count) + " labels, one per image",
           std::to_string(labels.size() - 8));
    for (size_t i = 0; i < count; ++i)
      if (static_cast<unsigned char>(labels[8 + i]) >= classes.size())
        fail("file '" + args[1] + "' label " + std::to_string(i),
             "one of the " + std::to_string(classes.size()) + " --classes",
             std::to_string(static_cast<unsigned char>(labels[8 + i])));

    const fs::path out = args[2];
    if (fs::exists(out)) {
      size_t existing = 0;
      if (fs::is_directory(out))
        for (const auto& entry : fs::recursive_directory_iterator(out))
          existing += entry.path().extension() == ".png";
      if (existing != count)
        fail("output folder '" + out.string() + "'", std::to_string(count) + " images or no folder",
             std::to_string(existing) + " images; remove it to convert again");
      std::printf("%s already holds %zu images; nothing to do\n", out.c_str(), count);
      return 0;
    }
    // Written aside and renamed at the end, so an interrupted run never leaves a partial folder.
    const fs::path temp = out.string() + ".tmp";
    fs::remove_all(temp);
    for (const std::string& name : classes) fs::create_directories(temp / name);
    char file[32];
    for (size_t i = 0; i < count; ++i) {
      std::snprintf(file, sizeof file, "%05zu.png", i);
      const fs::path path = temp / classes[static_cast<unsigned char>(labels[8 + i])] / file;
      const cv::Mat image(static_cast<int>(dims[1]), static_cast<int>(dims[2]), CV_8UC1,
                          const_cast<char*>(images.data()) + 16 + i * pixels);
      if (!cv::imwrite(path.string(), image))
        fail("file '" + path.string() + "'", "a writable PNG", "an error");
    }
    fs::rename(temp, out);
    std::printf("wrote %zu images of %zux%zu in %zu classes to %s\n", count, dims[1], dims[2], classes.size(),
                out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
