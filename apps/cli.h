// Pieces shared by the dfq sub-commands: option parsing helpers and the
// preprocessing options every command that reads images accepts.
#pragma once

#include <boost/program_options.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/graph.h"
#include "core/shard.h"
#include "eval/preprocess.h"

namespace at {
class Tensor;
}

namespace dfq::cli {

namespace po = boost::program_options;

// Preprocessing options as typed by the user; unset fields keep the preset's.
struct PreprocessOptions {
  static constexpr int kUnset = std::numeric_limits<int>::min();  // so that a negative value is refused, not ignored
  std::string preset = "cifar";
  int resize = kUnset;
  int crop = kUnset;
  std::string mean, std;  // comma-separated, one value per channel
};

void add_preprocess_options(po::options_description& options, PreprocessOptions& target);

// The preset with the user's overrides, for a model with `model_channels`
// input channels; throws dfq::Error when they do not fit together.
Preprocess resolve_preprocess(const PreprocessOptions& options, int64_t model_channels);

// Parses argv after the sub-command name. Returns false (after printing
// `usage` and the options) when --help was given. Throws dfq::Error for unknown
// options, missing required ones or malformed values.
bool parse(int argc, char** argv, const po::options_description& options, const std::string& usage,
           po::variables_map* parsed = nullptr);

// Input height and width for a model: from --input-size ("HxW" or "N") when
// given, else the preset's nominal size (cifar 32, imagenet 224 = its crop,
// fashion-mnist 28); throws dfq::Error when neither gives one.
std::vector<int64_t> input_size(const std::string& preset_name, const std::string& size_text);

// Throws dfq::Error("--name: expected ..., found ...") unless value >= minimum.
void require_at_least(const std::string& option, int64_t value, int64_t minimum);

// Throws dfq::Error unless value is finite and >= 0.
void require_non_negative(const std::string& option, double value);

// Checks an output file before any slow work: not a directory, writable
// (core/atomic_file.h check_writable) and not the same file as any of `inputs`
// ({option, path}), which writing would destroy. Throws dfq::Error naming the option.
void check_output(const std::string& option, const std::string& path,
                  const std::vector<std::pair<std::string, std::string>>& inputs = {});

// Throws dfq::Error("model '<model>': expected an input of the size it was
// built for, found CxHxW images (<reason>)"); `reason` is the first line of
// the error an op raised (LibTorch's or dfq's own).
[[noreturn]] void fail_model_input(const std::string& model, const at::Tensor& input, const std::string& reason);

// Runs `graph` on the first image of `images` so that calibration data of the
// wrong size fails at once, through fail_model_input, not deep inside a later step.
void check_input_fits(const Graph& graph, const std::string& model, const at::Tensor& images);

std::string join(const std::vector<float>& values);

// --shard I/N: two decimal integers, 0 <= I < N (core/shard.h). Throws
// dfq::Error("--shard: expected I/N with 0 <= I < N ..., found '<text>'").
Shard parse_shard(const std::string& text);

// --merge takes every setting from the shards it merges: throws dfq::Error
// ("--<name>: expected an option of a single run (--merge takes <source>),
// found it combined with --merge") for any option given but those `allowed`.
void refuse_with_merge(const po::variables_map& vm, const std::vector<std::string>& allowed, const std::string& source);

}  // namespace dfq::cli
