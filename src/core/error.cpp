#include "core/error.h"

namespace dfq {

void fail(const std::string& subject, const std::string& expected, const std::string& found) {
  throw Error(subject + ": expected " + expected + ", found " + found);
}

std::string one_line(std::string text) {
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return text;
}

}  // namespace dfq
