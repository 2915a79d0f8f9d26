// dfq run: synthesize -> quantize -> evaluate FP32 and integer -> card and
// report, all in one run folder. Each stage is the sub-command itself, called
// in-process with the options that belong to it, so every option is validated
// exactly once, where it is defined; stages pass files (ncnn-style pipeline).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "cli.h"
#include "commands.h"
#include "core/atomic_file.h"
#include "core/content_hash.h"
#include "core/error.h"
#include "core/version.h"
#include "quant/artifact.h"
#include "quant/export_onnx.h"
#include "report/card.h"
#include "report/run_report.h"

namespace dfq::cli {

namespace {

namespace fs = std::filesystem;

const char* kUsage =
    "usage: dfq run --model M.pt --data VAL_DIR --preset P [--wbits 8 | --size-budget B ...] [--abits 8] --out RUN [options]\n"
    "Synthesizes calibration images, quantizes, evaluates the FP32 model and the integer\n"
    "engine on VAL_DIR, and writes RUN/{card.md,card.json,report.html,model.dfq,model.onnx,*.json,synth/}.\n"
    "Every option of dfq synth, dfq quantize and dfq eval is accepted and handed to the\n"
    "stages that take it (synthesis count: --calib-count; batches: --synth-batch, --eval-batch).\n"
    "The synthetic set and the FP32 evaluation are cached by content (model SHA-256,\n"
    "options and the dfq build; the data folder's listing) and reused when they match.\n\n"
    "example:\n"
    "  dfq run --model ../shared/weights/cifar10-resnet20.pt --data ../shared/datasets/cifar10-test \\\n"
    "          --preset cifar --wbits 4 --abits 4 --out results/r20-w4a4\n";

struct RunCommand {
  std::string model, data, out, cache, calib, calib_data;
  int64_t calib_count = 256, synth_batch = 64, eval_batch = 256;
  int threads = 0;
  uint64_t seed = 0;
  bool no_cache = false, quiet = false;
};

// Options `dfq run` interprets itself; the rest are routed to the stages.
const std::set<std::string> kOwned = {"help", "model", "data", "out", "cache", "no-cache", "calib", "calib-data",
                                      "calib-count", "synth-batch", "eval-batch", "threads", "seed", "quiet"};
// Options of a stage that `dfq run` decides (a stage output, or the pipeline's shape).
const std::map<std::string, std::string> kRefused = {
    {"json", "dfq run writes every stage's JSON into the run folder"},
    {"count", "the synthetic set's size is --calib-count"},
    {"batch", "use --synth-batch (synthesis) or --eval-batch (evaluation)"},
    {"qmodel", "dfq run evaluates the model it quantizes"},
    {"engine", "dfq run evaluates with the integer engine (dfq eval --engine simulated on RUN/model.dfq for the other)"},
    {"dump-png", "dfq run always writes the synthetic images as PNGs (RUN/synth/png)"},
    {"synth-iters", "synthesis is a stage of its own here: use --iters"},
    {"save-generator", "a file outside the run folder; run dfq synth for that"},
    {"check-options", "dfq run checks the quantization options itself, before synthesis"},
    {"predictions", "dfq run evaluates twice (FP32, integer): run dfq eval --predictions on RUN/model.dfq"},
    {"save-inputs", "dfq run evaluates twice (FP32, integer): run dfq eval --save-inputs on RUN/model.dfq"},
    {"save-outputs", "dfq run evaluates twice (FP32, integer): run dfq eval --save-outputs on RUN/model.dfq"},
    {"shard", "dfq run is one job: split dfq synth and dfq eval themselves with --shard and --merge"},
    {"merge", "dfq run is one job: split dfq synth and dfq eval themselves with --shard and --merge"}};
// Quantize options that only shape the synthesis quantize would run itself
// (dfq quantize refuses them with given calibration): here synthesis is a stage.
const std::set<std::string> kSynthesisOnly = {"input-size"};
// The eval options that apply to one of the two evaluations only.
const std::set<std::string> kIntegerEvalOnly = {"kernels"};
const std::set<std::string> kFp32EvalOnly = {"no-fold-bn"};
// Options that do not change a stage's result (left out of cache keys).
const std::set<std::string> kNotInKey = {"quiet", "threads", "decode-threads", "predecode", "eval-batch"};

using Tokens = std::vector<std::string>;

// RUN/model.onnx beside RUN/model.dfq when the model can be exported (opset
// 17); otherwise the reason, for the card. Never fails the run.
void export_to_onnx(const std::string& run, RunRecord& record) {
  try {
    const std::string bytes = export_onnx(load_quantized_model(run + "/model.dfq"), OnnxExportOptions{});
    write_file_atomic(run + "/model.onnx", bytes);
    record.onnx_file = "model.onnx", record.onnx_bytes = static_cast<int64_t>(bytes.size());
    std::printf("wrote     %s/model.onnx (ONNX QDQ, opset 17, %zu bytes)\n", run.c_str(), bytes.size());
  } catch (const Error& e) {
    record.onnx_refusal = e.what();
    std::printf("note      not exported to ONNX: %s\n", e.what());
  }
}

// Calls a sub-command in-process with `tokens` as its command line.
void call(int (*command)(int, char**), const std::string& name, const Tokens& tokens) {
  std::vector<std::string> args{name};
  args.insert(args.end(), tokens.begin(), tokens.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  if (command(static_cast<int>(args.size()), argv.data()) != 0) fail("dfq run", "stage '" + name + "' to succeed", "a failure");
  std::fflush(stdout);
}

std::string default_cache_dir() {
  if (const char* dir = std::getenv("DFQ_CACHE_DIR"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/dfq";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/dfq";
  return "/tmp/dfq-cache";
}

// The cache key of a stage: its kind, its parts and the dfq build (version and
// git commit: a changed default or preprocessing must not reuse older results).
std::string key_of(const std::string& kind, const std::vector<std::string>& parts) {
  std::string text = kind + "\ndfq " + dfq_version() + " " + dfq_git_commit();
  for (const std::string& p : parts) text += '\n' + p;
  return kind + "-" + sha256_hex(text).substr(0, 24);
}

// Tokens that define a stage's result, for its cache key.
std::vector<std::string> key_tokens(const std::vector<std::pair<std::string, Tokens>>& options) {
  std::vector<std::string> parts;
  for (const auto& [name, values] : options) {
    if (kNotInKey.count(name)) continue;
    std::string part = name;
    for (const std::string& v : values) part += '=' + v;
    parts.push_back(part);
  }
  std::sort(parts.begin(), parts.end());
  return parts;
}

void append(Tokens& tokens, const std::string& name, const Tokens& values) {
  tokens.push_back("--" + name);
  tokens.insert(tokens.end(), values.begin(), values.end());
}

class Stopwatch {
 public:
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

void copy_tree(const std::string& from, const std::string& to) {
  std::error_code ec;
  const std::string tmp = to + ".tmp." + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  fs::copy(from, tmp, fs::copy_options::recursive, ec);
  if (!ec) fs::rename(tmp, to, ec);
  if (ec) {
    fs::remove_all(tmp);
    fail("'" + to + "'", "a copy of '" + from + "'", ec.message());
  }
}

void copy_file(const std::string& from, const std::string& to) {
  std::error_code ec;
  const std::string tmp = to + ".tmp." + std::to_string(::getpid());
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(tmp, to, ec);
  if (ec) {
    fs::remove(tmp);
    fail("'" + to + "'", "a copy of '" + from + "'", ec.message());
  }
}

const std::vector<std::string> kRunOutputs = {"synth",        "synth.json", "model.dfq", "model.onnx", "quantize.json", "fp32.json",
                                              "integer.json", "card.json",  "card.md",   "report.html",   ".dfq-run"};

// Prepares RUN: new, empty, or an earlier dfq run (whose outputs are removed,
// so a failed re-run never leaves a mix of two runs). Returns whether it was created.
bool prepare_run_folder(const std::string& run) {
  std::error_code ec;
  if (fs::exists(run, ec) && !fs::is_directory(run, ec)) fail("--out '" + run + "'", "a directory", "an existing file");
  const bool created = !fs::exists(run, ec);
  if (!created && !fs::is_empty(run, ec) && !fs::exists(run + "/.dfq-run", ec))
    fail("--out '" + run + "'", "a new or empty directory, or the folder of an earlier dfq run",
         "a non-empty directory that dfq run did not write");
  fs::create_directories(run, ec);
  if (ec) fail("--out '" + run + "'", "a directory that can be created", ec.message());
  for (const std::string& name : kRunOutputs) fs::remove_all(run + "/" + name, ec);
  write_file_atomic(run + "/.dfq-run", "a dfq run folder: dfq run may replace everything listed in its card\n");
  return created;
}

void remove_run_outputs(const std::string& run, bool created) {
  std::error_code ec;
  if (created) {
    fs::remove_all(run, ec);
    return;
  }
  for (const std::string& name : kRunOutputs) fs::remove_all(run + "/" + name, ec);
}

std::string quoted_command_line(int argc, char** argv) {
  std::string line = "dfq";
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    line += ' ';
    line += a.find_first_of(" \t'\"") == std::string::npos ? a : "'" + a + "'";
  }
  return line;
}

void heading(int index, const char* name) { std::printf("\n== %d/5 %s ==\n", index, name); }

}  // namespace

int run_run(int argc, char** argv) {
  RunCommand cmd;
  po::options_description own("dfq run options");
  own.add_options()
      ("help,h", "show this help")
      ("model", po::value(&cmd.model)->required(), "TorchScript model file (FP32, with batch-norm layers)")
      ("data", po::value(&cmd.data)->required(), "validation folder, one sub-folder per class")
      ("out", po::value(&cmd.out)->required(), "run folder (new, empty, or an earlier run's, which is replaced)")
      ("calib", po::value(&cmd.calib), "calibrate on this dfq synth folder or image folder instead of synthesizing")
      ("calib-data", po::value(&cmd.calib_data), "calibrate on this real image folder instead of synthesizing")
      ("calib-count", po::value(&cmd.calib_count)->default_value(cmd.calib_count), "calibration images (synthesized or drawn)")
      ("synth-batch", po::value(&cmd.synth_batch)->default_value(cmd.synth_batch), "images optimized together (dfq synth --batch)")
      ("eval-batch", po::value(&cmd.eval_batch)->default_value(cmd.eval_batch), "images per evaluation batch (dfq eval --batch)")
      ("cache", po::value(&cmd.cache), "cache folder (default $DFQ_CACHE_DIR, $XDG_CACHE_HOME/dfq or ~/.cache/dfq)")
      ("no-cache", po::bool_switch(&cmd.no_cache), "neither read nor write the cache")
      ("seed", po::value(&cmd.seed)->default_value(cmd.seed), "random seed of synthesis and calibration")
      ("threads", po::value(&cmd.threads)->default_value(cmd.threads), "compute threads (0: all cores)")
      ("quiet,q", po::bool_switch(&cmd.quiet), "no progress lines on stderr");
  // The union of the stages' options, each named once, grouped by the first stage that has it.
  po::options_description all;
  all.add(own);
  std::set<std::string> known = kOwned;
  const po::options_description stage_options[3] = {synth_options(), quantize_options(), eval_options()};
  const char* captions[3] = {"synthesis (dfq synth)", "quantization (dfq quantize)", "evaluation (dfq eval)"};
  std::map<std::string, std::set<int>> stages_of;
  for (int s = 0; s < 3; ++s) {
    po::options_description group(captions[s]);
    for (const auto& option : stage_options[s].options()) {
      const std::string name = option->long_name();
      stages_of[name].insert(s);
      if (known.insert(name).second && !kRefused.count(name)) group.add(option);
    }
    all.add(group);
  }
  po::options_description refused;  // accepted by the parser so they can be refused with a reason
  for (const auto& [name, why] : kRefused)
    for (int s = 0; s < 3; ++s)
      if (stages_of[name].count(s)) {
        for (const auto& option : stage_options[s].options())
          if (option->long_name() == name) refused.add(option);
        break;
      }
  po::options_description parser_options;
  parser_options.add(all).add(refused);

  std::vector<std::string> args(argv + 1, argv + argc);
  po::parsed_options parsed(&parser_options);
  po::variables_map vm;
  try {
    parsed = po::command_line_parser(args).options(parser_options).run();
    po::store(parsed, vm);
    if (vm.count("help")) {
      std::fputs(kUsage, stdout);
      std::cout << "\n" << all << std::flush;
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw Error(std::string(e.what()) + " (see dfq run --help)");
  }

  // Route every option given on the command line.
  std::vector<std::pair<std::string, Tokens>> synth, quantize, fp32_eval, integer_eval;
  for (const po::option& o : parsed.options) {
    const std::string& name = o.string_key;
    if (kOwned.count(name)) continue;
    if (auto r = kRefused.find(name); r != kRefused.end())
      throw Error("--" + name + ": not an option of dfq run: " + r->second);
    const std::set<int>& stages = stages_of[name];
    if (stages.count(0)) synth.emplace_back(name, o.value);
    if (stages.count(1) && !kSynthesisOnly.count(name)) quantize.emplace_back(name, o.value);
    if (stages.count(2) && !kIntegerEvalOnly.count(name)) fp32_eval.emplace_back(name, o.value);
    if (stages.count(2) && !kFp32EvalOnly.count(name)) integer_eval.emplace_back(name, o.value);
  }
  const bool given_calibration = !cmd.calib.empty() || !cmd.calib_data.empty();
  if (!cmd.calib.empty() && !cmd.calib_data.empty()) fail("--calib", "either --calib or --calib-data", "both");
  if (given_calibration)
    for (const auto& [name, values] : synth)
      if (kSynthesisOnly.count(name) || (!stages_of[name].count(1) && !stages_of[name].count(2)))
        fail("--" + name, "a synthesis option, used when dfq run synthesizes", "it combined with given calibration data");
  if (cmd.no_cache && vm.count("cache")) fail("--cache", "a cache folder, or --no-cache", "both");
  require_at_least("--calib-count", cmd.calib_count, 1);
  require_at_least("--synth-batch", cmd.synth_batch, 1);
  require_at_least("--eval-batch", cmd.eval_batch, 1);
  require_at_least("--threads", cmd.threads, 0);
  const int threads = cmd.threads > 0 ? cmd.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::string cache = cmd.no_cache ? "" : (cmd.cache.empty() ? default_cache_dir() : cmd.cache);
  const std::string run = cmd.out;

  RunRecord record;
  record.model_path = cmd.model, record.data_dir = cmd.data, record.seed = cmd.seed, record.threads = threads;
  record.command_line = quoted_command_line(argc, argv);
  record.model_sha256 = sha256_of_file(cmd.model);
  std::printf("run       %s -> %s\n", cmd.model.c_str(), run.c_str());
  std::printf("model     sha256 %s\n", record.model_sha256.c_str());
  std::printf("cache     %s\n", cache.empty() ? "off (--no-cache)" : cache.c_str());
  std::printf("threads   %d, seed %llu\n", threads, static_cast<unsigned long long>(cmd.seed));

  // Common tokens every stage gets.
  Tokens common{"--threads", std::to_string(threads)};
  if (cmd.quiet) common.push_back("--quiet");
  // The quantization options are checked before synthesis, which may take minutes.
  Tokens quantize_tokens;
  for (const auto& [name, values] : quantize) append(quantize_tokens, name, values);
  Tokens check{"--model", cmd.model, "--out", run + "/model.dfq", "--calib", run + "/synth", "--check-options"};
  check.insert(check.end(), quantize_tokens.begin(), quantize_tokens.end());
  call(run_quantize, "quantize", check);
  const bool created = prepare_run_folder(run);
  try {
    std::error_code ec;
    if (!cache.empty()) {
      fs::create_directories(cache, ec);
      if (ec) fail("--cache '" + cache + "'", "a directory that can be created", ec.message());
    }

    // 1. Synthesis (cached by model digest, options, seed and thread count).
    heading(1, "synthesis");
    Stopwatch synth_time;
    Tokens calibration;
    if (given_calibration) {
      std::printf("skipped   calibration data given (%s)\n", (cmd.calib.empty() ? cmd.calib_data : cmd.calib).c_str());
      calibration = cmd.calib.empty() ? Tokens{"--calib-data", cmd.calib_data} : Tokens{"--calib", cmd.calib};
      calibration.insert(calibration.end(), {"--calib-count", std::to_string(cmd.calib_count)});
    } else {
      std::vector<std::string> parts = key_tokens(synth);
      parts.insert(parts.end(), {record.model_sha256, "count=" + std::to_string(cmd.calib_count),
                                 "batch=" + std::to_string(cmd.synth_batch), "seed=" + std::to_string(cmd.seed),
                                 "threads=" + std::to_string(threads),
                                 // Direct synthesis seeds each batch from (seed, batch) since issue 20:
                                 // sets cached before then hold other images for the same options.
                                 "seeding=per-batch"});
      const std::string entry = cache.empty() ? "" : cache + "/" + key_of("synth", parts);
      bool cached = !entry.empty() && fs::exists(entry + "/synth.json", ec);
      if (cached) {
        std::printf("reused    synthetic set %s (same model SHA-256, synthesis options, seed and threads)\n", entry.c_str());
      } else {
        const std::string target = entry.empty() ? run + "/synth" : entry + ".tmp." + std::to_string(::getpid());
        Tokens t{"--model", cmd.model, "--out", target, "--count", std::to_string(cmd.calib_count), "--batch",
                 std::to_string(cmd.synth_batch), "--seed", std::to_string(cmd.seed), "--dump-png"};
        t.insert(t.end(), common.begin(), common.end());
        for (const auto& [name, values] : synth) append(t, name, values);
        try {
          call(run_synth, "synth", t);
        } catch (...) {
          if (!entry.empty()) fs::remove_all(target, ec);
          throw;
        }
        if (!entry.empty()) {
          fs::rename(target, entry, ec);
          if (ec) fs::remove_all(target, ec);  // another run published the same entry first
        }
      }
      if (!entry.empty()) copy_tree(entry, run + "/synth");
      copy_file(run + "/synth/synth.json", run + "/synth.json");
      record.synthesized = true;
      record.stages.push_back({"synthesis", synth_time.seconds(), cached});
      calibration = {"--calib", run + "/synth"};
    }

    // 2. Quantization.
    heading(2, "quantization");
    Stopwatch quantize_time;
    Tokens q{"--model", cmd.model, "--out", run + "/model.dfq", "--json", run + "/quantize.json", "--seed",
             std::to_string(cmd.seed)};
    q.insert(q.end(), calibration.begin(), calibration.end());
    q.insert(q.end(), common.begin(), common.end());
    q.insert(q.end(), quantize_tokens.begin(), quantize_tokens.end());
    call(run_quantize, "quantize", q);
    export_to_onnx(run, record);
    record.stages.push_back({"quantization", quantize_time.seconds(), false});

    // 3. FP32 evaluation (cached by model digest, data folder listing and options).
    heading(3, "FP32 evaluation");
    Stopwatch fp32_time;
    std::vector<std::string> parts = key_tokens(fp32_eval);
    parts.insert(parts.end(), {record.model_sha256, fs::absolute(cmd.data).lexically_normal().string(),
                               folder_fingerprint(cmd.data)});
    const std::string fp32_entry = cache.empty() ? "" : cache + "/" + key_of("fp32", parts) + ".json";
    const bool fp32_cached = !fp32_entry.empty() && fs::exists(fp32_entry, ec);
    if (fp32_cached) {
      std::printf("reused    FP32 evaluation %s (same model SHA-256, data folder listing and options; its\n"
                  "          images/s is that run's)\n", fp32_entry.c_str());
      copy_file(fp32_entry, run + "/fp32.json");
    } else {
      Tokens e{"--model", cmd.model, "--data", cmd.data, "--json", run + "/fp32.json", "--batch",
               std::to_string(cmd.eval_batch)};
      e.insert(e.end(), common.begin(), common.end());
      for (const auto& [name, values] : fp32_eval) append(e, name, values);
      call(run_eval, "eval", e);
      if (!fp32_entry.empty()) copy_file(run + "/fp32.json", fp32_entry);
    }
    record.stages.push_back({"FP32 evaluation", fp32_time.seconds(), fp32_cached});

    // 4. Integer evaluation.
    heading(4, "integer evaluation");
    Stopwatch integer_time;
    Tokens e{"--qmodel", run + "/model.dfq", "--data", cmd.data, "--json", run + "/integer.json", "--batch",
             std::to_string(cmd.eval_batch)};
    e.insert(e.end(), common.begin(), common.end());
    for (const auto& [name, values] : integer_eval) append(e, name, values);
    call(run_eval, "eval", e);
    record.stages.push_back({"integer evaluation", integer_time.seconds(), false});

    // 5. Card and report.
    heading(5, "card and report");
    write_quantization_card(run, record);
    for (const std::string& note : write_run_report(run, run + "/report.html", HtmlReportOptions{}))
      std::printf("note      report: %s\n", note.c_str());
    std::printf("wrote     %s/card.md, %s/card.json, %s/report.html\n", run.c_str(), run.c_str(), run.c_str());
  } catch (...) {
    remove_run_outputs(run, created);
    throw;
  }
  return 0;
}

}  // namespace dfq::cli
