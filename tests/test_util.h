// Helpers shared by the GoogleTest suites.
#pragma once

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

}  // namespace dfq::testing
