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

// `text` with control characters replaced by '?': input quoted in a message
// (names and keys from a file, a library's error text) keeps it one line.
std::string one_line(std::string text);

}  // namespace dfq
