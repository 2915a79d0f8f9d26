// dfq::Error: the one exception type that reaches the user.
//
// Contract: the message is one line that names the input (file, option, node)
// and says what was expected and what was found. `main` prints it and exits
// non-zero; library code never asserts on user input.
#pragma once

#include <stdexcept>
#include <string>

namespace dfq {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws Error("<subject>: expected <expected>, found <found>").
[[noreturn]] void fail(const std::string& subject, const std::string& expected,
                       const std::string& found);

}  // namespace dfq
