// Progress reporting for long loops, on stderr.
//
// Draws a single updating line ("label  k/n  12.3 it/s  ETA 0:41  extra")
// only when stderr is a terminal and not quiet; otherwise prints nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dfq {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool quiet);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Reports that `done` of `total` units are finished; `extra` is appended
  // (e.g. "loss 0.123"). Redraws at most ten times a second.
  void update(int64_t done, const std::string& extra = "");
  // Draws the final state and ends the line.
  void finish(const std::string& extra = "");

 private:
  void draw(int64_t done, const std::string& extra);

  std::string label_;
  int64_t total_;
  bool enabled_;
  bool finished_ = false;
  int64_t last_done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace dfq
