// Pieces shared by the dfq sub-commands: option parsing helpers and the
// preprocessing options every command that reads images accepts.
#pragma once

#include <boost/program_options.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "eval/preprocess.h"

namespace dfq::cli {

namespace po = boost::program_options;

// Preprocessing options as typed by the user; unset fields keep the preset's.
struct PreprocessOptions {
  std::string preset = "cifar";
  int resize = -1;
  int crop = -1;
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

std::string join(const std::vector<float>& values);

}  // namespace dfq::cli
