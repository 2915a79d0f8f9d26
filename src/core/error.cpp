#include "core/error.h"

namespace dfq {

void fail(const std::string& subject, const std::string& expected, const std::string& found) {
  throw Error(subject + ": expected " + expected + ", found " + found);
}

}  // namespace dfq
