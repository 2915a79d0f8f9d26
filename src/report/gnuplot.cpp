#include "report/gnuplot.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "report/html.h"

extern char** environ;

namespace dfq {

namespace {

// A temporary file removed when it goes out of scope.
struct TempFile {
  std::string path;
  int fd = -1;
  TempFile() {
    std::string pattern = (std::filesystem::temp_directory_path() / "dfq-plot-XXXXXX").string();
    std::vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    fd = ::mkstemp(name.data());
    if (fd < 0) fail("temporary file for gnuplot", "a writable temporary directory", std::strerror(errno));
    path = name.data();
  }
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    ::unlink(path.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  std::string read() const {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
};

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

}  // namespace

std::optional<std::string> run_gnuplot(const std::string& program, const std::string& script) {
  TempFile input, output, errors;
  if (::write(input.fd, script.data(), script.size()) != static_cast<ssize_t>(script.size()) ||
      ::lseek(input.fd, 0, SEEK_SET) != 0)
    fail("temporary gnuplot script " + input.path, "a successful write", std::strerror(errno));

  // stdin from the script (gnuplot reads it to the end and exits), stdout and
  // stderr to files: no pipes, so no deadlock however large the output.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, input.fd, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, output.fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, errors.fd, STDERR_FILENO);
  std::vector<char*> argv = {const_cast<char*>(program.c_str()), nullptr};
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned == ENOENT || spawned == EACCES) return std::nullopt;
  if (spawned != 0) fail("plotting program '" + program + "'", "a program that starts", std::strerror(spawned));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) fail("plotting program '" + program + "'", "a child process to wait for", std::strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string message = errors.read();
    // gnuplot echoes the offending line first; its last non-empty line says what is wrong.
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
    const size_t last = message.rfind('\n');
    if (last != std::string::npos) message = message.substr(last + 1);
    fail("plotting program '" + program + "'", "a rendered plot",
         WIFEXITED(status) ? "exit code " + std::to_string(WEXITSTATUS(status)) + " (" + message + ")"
                           : std::string("a crash"));
  }
  std::string svg = output.read();
  if (svg.find("<svg") == std::string::npos)
    fail("plotting program '" + program + "'", "an SVG document on its output", std::to_string(svg.size()) + " bytes without <svg");
  return svg;
}

std::string gnuplot_string(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += "''";
    else if (static_cast<unsigned char>(c) < 32) out += ' ';
    else out += c;
  }
  return out + "'";
}

std::string gnuplot_data_label(const std::string& text) {
  std::string out;
  for (char c : text) {
    // gnuplot cannot escape a double quote inside a quoted data field.
    if (c == '"') out += '\'';
    else if (static_cast<unsigned char>(c) < 32) out += ' ';
    else out += c;
  }
  return out.empty() ? " " : out;
}

std::string inline_svg(const std::string& svg, const std::string& id_prefix, const std::string& title) {
  const size_t start = svg.find("<svg");
  std::string out = svg.substr(start == std::string::npos ? 0 : start);
  // Rewrite inside tags only: gnuplot escapes '<' in text, so '<' always opens a tag.
  std::string rewritten;
  rewritten.reserve(out.size() + 4096);
  size_t at = 0;
  while (at < out.size()) {
    const size_t open = out.find('<', at);
    if (open == std::string::npos) {
      rewritten.append(out, at, std::string::npos);
      break;
    }
    rewritten.append(out, at, open - at);
    const size_t close = out.find('>', open);
    std::string tag = out.substr(open, close == std::string::npos ? std::string::npos : close + 1 - open);
    tag = replace_all(tag, " xmlns=\"http://www.w3.org/2000/svg\"", "");
    tag = replace_all(tag, " xmlns:xlink=\"http://www.w3.org/1999/xlink\"", "");
    tag = replace_all(tag, "xlink:href=", "href=");
    for (const char* quote : {"'", "\""}) {
      tag = replace_all(tag, std::string(" id=") + quote, std::string(" id=") + quote + id_prefix);
      tag = replace_all(tag, std::string("href=") + quote + "#", std::string("href=") + quote + "#" + id_prefix);
    }
    tag = replace_all(tag, "url(#", "url(#" + id_prefix);
    rewritten += tag;
    if (close == std::string::npos) break;
    at = close + 1;
  }
  const size_t title_open = rewritten.find("<title>"), title_close = rewritten.find("</title>");
  if (title_open != std::string::npos && title_close != std::string::npos && title_close > title_open)
    rewritten.replace(title_open + 7, title_close - title_open - 7, escape_html(title));
  return rewritten;
}

}  // namespace dfq
