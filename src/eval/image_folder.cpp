#include "eval/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>

#include "core/error.h"

namespace dfq {
namespace fs = std::filesystem;
namespace {

const char* const kImageKinds = "*.jpg, *.jpeg, *.png or *.bmp";

bool is_image_name(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string extension = name.substr(dot + 1);
  for (char& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return extension == "jpg" || extension == "jpeg" || extension == "png" || extension == "bmp";
}

struct Entry {
  std::string name;
  fs::path path;
  bool directory = false;
};

// Visible entries of `dir`, sorted by name in byte order (std::string compares
// as unsigned bytes), so labels do not depend on the locale or the file system.
std::vector<Entry> sorted_entries(const fs::path& dir) {
  std::vector<Entry> entries;
  std::error_code error;
  fs::directory_iterator it(dir, error), end;
  for (; !error && it != end; it.increment(error)) {
    std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::error_code kind_error;  // follows symlinks: a linked class folder is a class folder
    const bool directory = it->is_directory(kind_error);
    entries.push_back({std::move(name), it->path(), directory});
  }
  if (error) fail("folder '" + dir.string() + "'", "a readable directory", error.message());
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return entries;
}

}  // namespace

ImageFolder scan_image_folder(const std::string& root, bool skip_bad) {
  const std::string subject = "data folder '" + root + "'";
  std::error_code error;
  const fs::file_status status = fs::status(root, error);
  if (status.type() == fs::file_type::not_found)
    fail(subject, "an existing directory", "no such file or directory");
  if (error) fail(subject, "an accessible directory", error.message());
  if (!fs::is_directory(status)) fail(subject, "a directory with one sub-folder per class", "a file");

  ImageFolder folder;
  folder.root = root;
  for (const Entry& class_entry : sorted_entries(root)) {
    if (!class_entry.directory) continue;  // loose files next to the class folders (README, labels) are fine
    const int64_t label = static_cast<int64_t>(folder.classes.size());
    folder.classes.push_back(class_entry.name);
    size_t images = 0;
    for (const Entry& file : sorted_entries(class_entry.path)) {
      if (!file.directory && is_image_name(file.name)) {
        folder.images.push_back({file.path.string(), label});
        ++images;
      } else if (skip_bad) {
        folder.skipped.push_back(file.path.string());
      } else {
        fail("file '" + file.path.string() + "'",
             std::string("an image named ") + kImageKinds +
                 " in a class folder (--skip-bad passes over others)",
             file.directory ? "a sub-folder" : "another kind of file");
      }
    }
    if (images == 0)
      fail("class folder '" + class_entry.path.string() + "'",
           std::string("at least one image named ") + kImageKinds, "none");
  }
  if (folder.classes.empty()) fail(subject, "one sub-folder per class", "no sub-folders");
  return folder;
}

}  // namespace dfq
