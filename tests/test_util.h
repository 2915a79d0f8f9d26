// Helpers shared by the GoogleTest suites.
#pragma once

#include <filesystem>
#include <string>

#include "core/error.h"

namespace dfq::testing {

// Message of the dfq::Error thrown by `f`, or "" if none was thrown.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Where the suites find their inputs (every test binary is built with
// DFQ_SOURCE_DIR): the source tree, its fixture models, the embedded model,
// and ../shared beside the checkout (tests that need it skip when it is absent).
inline const std::filesystem::path kSource = DFQ_SOURCE_DIR;
inline const std::filesystem::path kFixtures = kSource / "tests" / "data" / "models";
inline const std::filesystem::path kShared = kSource / ".." / "shared";
inline const std::string kModel = (kSource / "weights" / "fashion_cnn.pt").string();

}  // namespace dfq::testing
