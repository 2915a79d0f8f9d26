#include "cli.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/execute.h"

namespace dfq::cli {
namespace {

std::vector<float> parse_floats(const std::string& option, const std::string& text) {
  std::vector<float> values;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    try {
      size_t used = 0;
      values.push_back(std::stof(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      fail(option, "comma-separated numbers such as 0.485,0.456,0.406", "'" + text + "'");
    }
  }
  if (values.empty()) fail(option, "at least one number", "'" + text + "'");
  return values;
}

}  // namespace

void add_preprocess_options(po::options_description& options, PreprocessOptions& target) {
  options.add_options()
      ("preset", po::value(&target.preset)->default_value(target.preset),
       "input preprocessing preset: cifar | imagenet | fashion-mnist")
      ("resize", po::value(&target.resize), "resize the shorter image side to N pixels (0: no resize)")
      ("crop", po::value(&target.crop), "centre-crop N x N pixels after resizing (0: no crop)")
      ("mean", po::value(&target.mean), "per-channel mean, e.g. 0.485,0.456,0.406")
      ("std", po::value(&target.std), "per-channel standard deviation, e.g. 0.229,0.224,0.225");
}

Preprocess resolve_preprocess(const PreprocessOptions& options, int64_t model_channels) {
  Preprocess pre = preset(options.preset);
  if (options.resize != PreprocessOptions::kUnset) pre.resize_shorter = options.resize;
  if (options.crop != PreprocessOptions::kUnset) pre.crop = options.crop;
  if (!options.mean.empty()) pre.mean = parse_floats("--mean", options.mean);
  if (!options.std.empty()) pre.std = parse_floats("--std", options.std);
  if (model_channels > 0 && model_channels != pre.channels) {
    if (pre.mean.size() != static_cast<size_t>(model_channels) || pre.std.size() != static_cast<size_t>(model_channels))
      fail("--preset " + options.preset, "a preset or --mean/--std for the model's " +
                                              std::to_string(model_channels) + " input channel(s)",
           std::to_string(pre.channels) + " channel(s)");
    pre.channels = static_cast<int>(model_channels);
  }
  validate(pre);
  return pre;
}

bool parse(int argc, char** argv, const po::options_description& options, const std::string& usage,
           po::variables_map* parsed) {
  po::variables_map local;
  po::variables_map& vm = parsed ? *parsed : local;
  try {
    po::store(po::command_line_parser(argc, argv).options(options).run(), vm);
    if (vm.count("help")) {
      std::cout << usage << "\n" << options << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw Error(std::string(e.what()) + " (see --help)");
  }
  return true;
}

void require_at_least(const std::string& option, int64_t value, int64_t minimum) {
  if (value < minimum) fail(option, "a value >= " + std::to_string(minimum), std::to_string(value));
}

void require_non_negative(const std::string& option, double value) {
  if (!(std::isfinite(value) && value >= 0)) {
    std::ostringstream found;
    found << value;
    fail(option, "a finite value >= 0", found.str());
  }
}

void check_output(const std::string& option, const std::string& path,
                  const std::vector<std::pair<std::string, std::string>>& inputs) {
  namespace fs = std::filesystem;
  for (const auto& [input_option, input] : inputs) {
    if (input.empty()) continue;
    std::error_code ec;
    const bool same = fs::exists(path, ec) && fs::exists(input, ec)
                          ? fs::equivalent(path, input, ec)
                          : fs::absolute(path, ec).lexically_normal() == fs::absolute(input, ec).lexically_normal();
    if (same) fail(option + " '" + path + "'", "a file other than " + input_option, "the same file");
  }
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(option + " '" + path + "'", "a file name", "an existing directory");
  check_writable(option, path);
}

std::vector<int64_t> input_size(const std::string& preset_name, const std::string& size_text) {
  if (!size_text.empty()) {
    int64_t h = 0, w = 0;
    char x = 0, rest = 0;
    std::istringstream in(size_text);
    if ((in >> h >> x >> w) && x == 'x' && !(in >> rest) && h > 0 && w > 0) return {h, w};
    std::istringstream single(size_text);
    if ((single >> h) && !(single >> rest) && h > 0) return {h, h};
    fail("--input-size", "HxW or N with positive sizes, e.g. 32x32", "'" + size_text + "'");
  }
  const Preprocess pre = preset(preset_name);  // throws for an unknown preset
  if (pre.crop > 0) return {pre.crop, pre.crop};
  if (preset_name == "cifar") return {32, 32};
  if (preset_name == "fashion-mnist") return {28, 28};
  fail("--input-size", "a size for preset " + preset_name, "none");
}

void fail_model_input(const std::string& model, const at::Tensor& input, const std::string& reason) {
  std::string shape;
  for (int64_t d = 1; d < input.dim(); ++d) shape += (d > 1 ? "x" : "") + std::to_string(input.size(d));
  fail("model '" + model + "'", "an input of the size it was built for",
       shape + " images (" + reason.substr(0, reason.find('\n')) + ")");
}

void check_input_fits(const Graph& graph, const std::string& model, const at::Tensor& images) {
  const at::Tensor first = images.narrow(0, 0, 1);
  try {
    c10::InferenceMode inference;
    forward(graph, first);
  } catch (const c10::Error& e) {
    fail_model_input(model, first, std::string("LibTorch: ") + e.what_without_backtrace());
  } catch (const Error& e) {
    fail_model_input(model, first, e.what());
  }
}

std::string join(const std::vector<float>& values) {
  std::ostringstream out;
  for (size_t i = 0; i < values.size(); ++i) out << (i ? "," : "") << values[i];
  return out.str();
}

void refuse_with_merge(const po::variables_map& vm, const std::vector<std::string>& allowed, const std::string& source) {
  for (const auto& [name, value] : vm)
    if (!value.defaulted() && std::find(allowed.begin(), allowed.end(), name) == allowed.end())
      fail("--" + name, "an option of a single run (--merge takes " + source + ")", "it combined with --merge");
}

Shard parse_shard(const std::string& text) {
  // Digits only: no sign, space or exponent, so "-1/2" or "1/2x" cannot slip through a stream parse.
  const size_t slash = text.find('/');
  const auto digits = [](const std::string& s) {
    return !s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos;
  };
  const std::string i = slash == std::string::npos ? "" : text.substr(0, slash);
  const std::string n = slash == std::string::npos ? "" : text.substr(slash + 1);
  Shard shard;
  if (digits(i) && digits(n)) shard = Shard{std::stoll(i), std::stoll(n)};
  if (!digits(i) || !digits(n) || shard.count < 1 || shard.index >= shard.count)
    fail("--shard", "I/N with 0 <= I < N, e.g. 0/4 (shard I of N)", "'" + one_line(text) + "'");
  return shard;
}

}  // namespace dfq::cli
