#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace dfq {

namespace {
std::string format_seconds(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%ld:%02ld", s / 60, s % 60);
  return buffer;
}
}  // namespace

Progress::Progress(std::string label, int64_t total, bool quiet)
    : label_(std::move(label)),
      total_(total),
      enabled_(!quiet && isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (enabled_ && !finished_) std::fputc('\n', stderr);
}

void Progress::update(int64_t done, const std::string& extra) {
  last_done_ = done;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100) && done < total_) return;
  last_draw_ = now;
  draw(done, extra);
}

void Progress::finish(const std::string& extra) {
  if (!enabled_ || finished_) return;
  draw(last_done_, extra);
  std::fputc('\n', stderr);
  finished_ = true;
}

void Progress::draw(int64_t done, const std::string& extra) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
  std::string eta = rate > 0 && done < total_ ? "ETA " + format_seconds(static_cast<double>(total_ - done) / rate)
                                              : "took " + format_seconds(elapsed);
  std::fprintf(stderr, "\r\033[K%s  %lld/%lld  %.1f/s  %s%s%s", label_.c_str(), static_cast<long long>(done),
               static_cast<long long>(total_), rate, eta.c_str(), extra.empty() ? "" : "  ", extra.c_str());
  std::fflush(stderr);
}

}  // namespace dfq
