// dfq eval: FP32 top-1/top-5 of a TorchScript model on an image folder.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "commands.h"
#include "core/atomic_file.h"
#include "core/content_hash.h"
#include "core/error.h"
#include "core/execute.h"
#include "core/passes.h"
#include "core/import_torchscript.h"
#include "core/runtime.h"
#include "core/version.h"
#include "eval/evaluate.h"
#include "eval/saved_outputs.h"
#include "eval/shards.h"
#include "quant/artifact.h"
#include "quant/integer_engine.h"
#include "quant/simulate.h"

#include <memory>

namespace dfq::cli {

namespace {

struct EvalCommand {
  std::string model, qmodel, engine = "integer", kernels = "fast", data, json, class_names, save_outputs, save_inputs,
      predictions, shard;
  std::vector<std::string> merge;
  PreprocessOptions preprocess;
  int64_t batch = 256, limit = 0;
  int threads = 0, decode_threads = 1;
  bool skip_bad = false, quiet = false, no_fold_bn = false, predecode = false;
};

const char* kUsage =
    "usage: dfq eval (--model M.pt | --qmodel Q.dfq [--engine integer|simulated]) --data DIR [--preset P] [options]\n"
    "Evaluates the model (FP32 TorchScript, or a quantized model from dfq quantize) on an\n"
    "ImageNet-style folder (one sub-folder per class, sorted names give the label index)\n"
    "and prints top-1, top-5 and images/s.\n"
    "--shard I/N evaluates only the images k (scan order) with k mod N == I and writes a\n"
    "shard result (--json); dfq eval --merge SHARD.json... [--json F] [--predictions F.csv]\n"
    "checks that the N results are one run and writes the unsharded run's counts and CSV.\n\n"
    "example:\n"
    "  dfq eval --model ../shared/weights/cifar10-resnet20.pt --data ../shared/datasets/cifar10-test \\\n"
    "           --preset cifar --json results/resnet20-fp32.json\n";

// Refuses, before the slow work, an output that cannot be written or that is
// an input or another output (--save-inputs FILE also writes FILE.json).
void check_outputs(const EvalCommand& cmd) {
  std::vector<std::pair<std::string, std::string>> taken = {
      {"--model", cmd.model}, {"--qmodel", cmd.qmodel}, {"--class-names", cmd.class_names}};
  const std::pair<std::string, std::string> outputs[] = {
      {"--json", cmd.json},
      {"--save-outputs", cmd.save_outputs},
      {"--save-inputs", cmd.save_inputs},
      {"--save-inputs", cmd.save_inputs.empty() ? "" : cmd.save_inputs + ".json"},
      {"--predictions", cmd.predictions}};
  for (const auto& [option, path] : outputs) {
    if (path.empty()) continue;
    check_output(option, path, taken);
    taken.emplace_back(option, path);
  }
}

// What the requested outputs need kept while evaluating (inputs are large).
OutputRecorder::Keep recorded(const EvalCommand& cmd) {
  OutputRecorder::Keep keep;
  keep.inputs = !cmd.save_outputs.empty() || !cmd.save_inputs.empty();
  keep.logits = !cmd.save_outputs.empty();
  keep.ranking = !cmd.predictions.empty() || !cmd.shard.empty();  // a shard result holds the predictions
  return keep;
}

// Writes every requested file; they appear together at the end, or none does
// (core/atomic_file.h StagedOutputs), and an earlier output stays as it was.
void write_outputs(const EvalCommand& cmd, const nlohmann::json& metrics, const OutputRecorder& recorder,
                   const EvaluatedImages& images) {
  StagedOutputs staged;
  try {
    // Invalid UTF-8 in a file name becomes U+FFFD rather than failing the run at its end.
    if (!cmd.json.empty())
      write_file(staged.stage(cmd.json), metrics.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    if (!cmd.save_outputs.empty())
      recorder.write_outputs(staged.stage(cmd.save_outputs), images, "--save-outputs '" + cmd.save_outputs + "'");
    if (!cmd.save_inputs.empty()) {
      const std::string data_file = staged.stage(cmd.save_inputs);
      const std::string json_file = staged.stage(cmd.save_inputs + ".json");
      recorder.write_inputs(data_file, json_file, images, "--save-inputs '" + cmd.save_inputs + "'");
    }
    if (!cmd.predictions.empty())
      recorder.write_predictions(staged.stage(cmd.predictions), images, "--predictions '" + cmd.predictions + "'");
    staged.commit();
  } catch (const Error& e) {
    throw Error(staged.final_names(e.what()));
  }
  const long long n = recorder.images();
  if (!cmd.save_outputs.empty()) std::printf("outputs   %lld inputs and logits written to %s\n", n, cmd.save_outputs.c_str());
  if (!cmd.save_inputs.empty())
    std::printf("inputs    %lld inputs written to %s (raw float32) and %s.json\n", n, cmd.save_inputs.c_str(),
                cmd.save_inputs.c_str());
  if (!cmd.predictions.empty()) std::printf("csv       %lld predictions written to %s\n", n, cmd.predictions.c_str());
}

}  // namespace

static void describe_options(po::options_description& options, EvalCommand& cmd) {
  options.add_options()
      ("help,h", "show this help")
      ("model", po::value(&cmd.model), "TorchScript model file (torch.jit.trace + save), evaluated in FP32")
      ("qmodel", po::value(&cmd.qmodel), "quantized model from dfq quantize (.dfq)")
      ("engine", po::value(&cmd.engine)->default_value(cmd.engine),
       "for --qmodel: integer (integer-only arithmetic, the accuracy of integer hardware) | simulated (float with "
       "quantize-dequantize at every point)")
      ("kernels", po::value(&cmd.kernels)->default_value(cmd.kernels),
       "for --engine integer: fast (vectorized int8 kernels, threads) | reference (plain loops, slow; bit-exact with fast)")
      ("predecode", po::bool_switch(&cmd.predecode),
       "decode every image before timing, so images/s measures the model alone")
      ("data", po::value(&cmd.data), "validation folder, one sub-folder per class")
      ("batch", po::value(&cmd.batch)->default_value(cmd.batch), "images per batch")
      ("limit", po::value(&cmd.limit)->default_value(cmd.limit), "evaluate only the first N images (0: all)")
      ("threads", po::value(&cmd.threads)->default_value(cmd.threads), "compute threads (0: all cores)")
      ("decode-threads", po::value(&cmd.decode_threads)->default_value(cmd.decode_threads),
       "image decoding threads, running alongside the model")
      ("class-names", po::value(&cmd.class_names),
       "text file naming the model's outputs, line k = output k (first word per line); class folders\n"
       "are matched by name, so a folder subset (e.g. a few ImageNet synsets) can be evaluated")
      ("skip-bad", po::bool_switch(&cmd.skip_bad), "skip unreadable images and non-image files, and count them")
      ("json", po::value(&cmd.json), "write the metrics as JSON to this file")
      ("save-outputs", po::value(&cmd.save_outputs),
       "write every input as the model saw it and its logits to this file (Python: torch.load gives a dict\n"
       "{inputs: N x C x H x W, logits: N x K, labels: output index, paths: relative to --data}); held in\n"
       "memory until the end (12 MB per 20 ImageNet images): use --limit on large folders")
      ("save-inputs", po::value(&cmd.save_inputs),
       "write the inputs as the model saw them to FILE (raw little-endian float32 N x C x H x W, no header) and "
       "FILE.json (shape, paths, labels), for other runtimes; held in memory (123 MB per 10,000 CIFAR images)")
      ("predictions", po::value(&cmd.predictions),
       "write a CSV, one row per evaluated image: path,label,prediction,top5 (output indices; top5 best first)")
      ("no-fold-bn", po::bool_switch(&cmd.no_fold_bn),
       "run batch norm as a separate op instead of folding it into the preceding convolution")
      ("shard", po::value(&cmd.shard),
       "evaluate only the images k (scan order, within --limit) with k mod N == I (I/N, 0 <= I < N); --json then "
       "writes a shard result for --merge")
      ("merge", po::value(&cmd.merge)->multitoken(),
       "merge the shard results (--json files) of one --shard run: writes their --json and --predictions")
      ("quiet,q", po::bool_switch(&cmd.quiet), "no progress line on stderr");
  add_preprocess_options(options, cmd.preprocess);
}

po::options_description eval_options() {
  static EvalCommand ignored;
  po::options_description options("dfq eval options");
  describe_options(options, ignored);
  return options;
}

// The option combinations dfq eval refuses, and its outputs (check_outputs).
static void validate(const EvalCommand& cmd, const po::variables_map& vm) {
  if (cmd.data.empty()) throw Error("the option '--data' is required but missing (see --help)");
  if (cmd.model.empty() == cmd.qmodel.empty())
    fail("model", "exactly one of --model (FP32) and --qmodel (quantized)", cmd.model.empty() ? "neither" : "both");
  if (cmd.qmodel.empty() && !vm["engine"].defaulted()) fail("--engine", "--qmodel (a quantized model)", "--model");
  if (cmd.engine != "simulated" && cmd.engine != "integer") fail("--engine", "integer or simulated", "'" + cmd.engine + "'");
  if (cmd.kernels != "fast" && cmd.kernels != "reference") fail("--kernels", "fast or reference", "'" + cmd.kernels + "'");
  if (!vm["kernels"].defaulted() && cmd.engine != "integer")
    fail("--kernels", "--qmodel with --engine integer", cmd.qmodel.empty() ? "--model" : "--engine " + cmd.engine);
  if (!cmd.qmodel.empty() && cmd.no_fold_bn) fail("--no-fold-bn", "--model (a quantized model is always folded)", "--qmodel");
  require_at_least("--batch", cmd.batch, 1);
  require_at_least("--limit", cmd.limit, 0);
  require_at_least("--threads", cmd.threads, 0);
  require_at_least("--decode-threads", cmd.decode_threads, 1);
  if (!cmd.shard.empty()) {
    parse_shard(cmd.shard);
    if (cmd.json.empty()) fail("--shard", "--json FILE (the shard result dfq eval --merge reads)", "no --json");
  }
  check_outputs(cmd);
}

static void print_result(const EvalResult& result, size_t non_image_files_skipped) {
  std::printf("top-1     %.2f %% (%lld/%lld)\n", result.top1(), static_cast<long long>(result.correct_top1),
              static_cast<long long>(result.images));
  std::printf("top-5     %.2f %% (%lld/%lld)\n", result.top5(), static_cast<long long>(result.correct_top5),
              static_cast<long long>(result.images));
  std::printf("images    %lld (%zu unreadable skipped, %zu non-image files skipped)\n",
              static_cast<long long>(result.images), static_cast<size_t>(result.skipped), non_image_files_skipped);
  std::printf("seconds   %.3f\nimages/s  %.1f\n", result.seconds, result.images_per_second());
}

// The --json file: the metrics of `result` and how they were obtained.
static nlohmann::json metrics_json(const EvalCommand& cmd, const EvalResult& result, const IntegerEngine* integer,
                                   const std::string& preset, int threads, size_t folded, const ImageFolder& folder) {
  nlohmann::json j = to_json(result);
  j["model"] = !cmd.qmodel.empty() ? cmd.qmodel : cmd.model;
  j["engine"] = !cmd.qmodel.empty() ? cmd.engine : "fp32";
  if (integer) {
    j["kernels"] = cmd.kernels;
    nlohmann::json acc = nlohmann::json::array();
    for (const AccumulatorReport& r : integer->accumulators())
      acc.push_back({{"name", r.name}, {"worst_case", r.worst_case}, {"bits", r.bits}, {"overflows_int16", r.overflows_int16}});
    j["accumulators"] = acc;
    j["kernel_weight_bytes"] = integer->weight_bytes();
  }
  j["predecoded"] = cmd.predecode;
  j["data"] = cmd.data;
  j["preset"] = preset;
  j["threads"] = threads;
  j["batch"] = cmd.batch;
  j["bn_folded"] = folded;
  j["non_image_files_skipped"] = folder.skipped.size();
  return j;
}

// The images this process evaluates: the first --limit of the folder, or with
// --shard I/N its share of them (eval/shards.h).
struct EvalPart {
  Shard shard;
  ImageFolder folder;
  std::vector<int64_t> positions;  // of folder's images in the whole folder's scan order
  int64_t total = 0;               // images of the whole run
};

static EvalPart eval_part(const EvalCommand& cmd, const ImageFolder& folder) {
  EvalPart part;
  if (!cmd.shard.empty()) part.shard = parse_shard(cmd.shard);
  part.folder = shard_of_folder(folder, cmd.limit, part.shard, &part.positions);
  const int64_t size = static_cast<int64_t>(folder.images.size());
  part.total = cmd.limit > 0 ? std::min(cmd.limit, size) : size;
  // A shard without an image would have nothing to measure.
  if (part.shard.count > part.total)
    fail("--shard " + cmd.shard, "at most as many shards as images (" + std::to_string(part.total) + ")",
         std::to_string(part.shard.count) + " shards");
  if (!cmd.shard.empty())
    std::printf("shard     %s: %zu of the %lld images (positions k with k mod %lld = %lld; merge with --merge)\n",
                cmd.shard.c_str(), part.folder.images.size(), static_cast<long long>(part.total),
                static_cast<long long>(part.shard.count), static_cast<long long>(part.shard.index));
  return part;
}

// What a shard's predictions depend on, which every shard of one run must
// share (eval/shards.h). Not the thread count, batch size or decoding: an
// image's prediction does not depend on them.
static nlohmann::json shard_settings(const EvalCommand& cmd, const Preprocess& pre, const ImageFolder& folder,
                                     const std::vector<int64_t>& outputs, int64_t total) {
  const bool quantized = !cmd.qmodel.empty();
  const nlohmann::json preprocess = {{"preset", pre.name}, {"channels", pre.channels}, {"resize", pre.resize_shorter},
                                     {"crop", pre.crop}, {"mean", pre.mean}, {"std", pre.std}};
  return {{"model_sha256", sha256_of_file(quantized ? cmd.qmodel : cmd.model)},
          {"engine", quantized ? cmd.engine : "fp32"},
          {"kernels", quantized && cmd.engine == "integer" ? cmd.kernels : ""},
          {"fold_bn", !quantized && !cmd.no_fold_bn},
          {"data_fingerprint", folder_fingerprint(cmd.data)},
          {"classes", folder.classes.size()},
          {"outputs", outputs},
          {"class_names_sha256", cmd.class_names.empty() ? "" : sha256_of_file(cmd.class_names)},
          {"limit", cmd.limit},
          {"images_attempted", total},
          {"skip_bad", cmd.skip_bad},
          {"preprocess", preprocess},
          {"dfq_version", dfq_version()}};
}

// dfq eval --merge: the shard results of one run become its --json and --predictions.
static int run_merge(const EvalCommand& cmd, const po::variables_map& vm) {
  refuse_with_merge(vm, {"merge", "json", "predictions", "quiet"}, "the evaluation options from the shard results");
  std::vector<std::pair<std::string, std::string>> inputs;
  for (const std::string& file : cmd.merge) inputs.emplace_back("--merge", file);
  if (!cmd.json.empty()) check_output("--json", cmd.json, inputs);
  inputs.emplace_back("--json", cmd.json);
  if (!cmd.predictions.empty()) check_output("--predictions", cmd.predictions, inputs);
  std::vector<EvalShardFile> shards;
  for (const std::string& file : cmd.merge) shards.push_back(read_eval_shard(file));
  const MergedEval merged = merge_eval_shards(shards);
  std::printf("merged    %lld shard results: model %s, data %s\n", static_cast<long long>(merged.shards),
              merged.metrics.value("model", std::string("?")).c_str(), merged.metrics.value("data", std::string("?")).c_str());
  print_result(merged.result, static_cast<size_t>(merged.non_image_files_skipped));
  StagedOutputs staged;  // both files appear together, or neither does
  try {
    if (!cmd.json.empty())
      write_file(staged.stage(cmd.json),
                 merged.metrics.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    if (!cmd.predictions.empty()) write_file(staged.stage(cmd.predictions), predictions_csv(merged.rows));
    staged.commit();
  } catch (const Error& e) {
    throw Error(staged.final_names(e.what()));
  }
  if (!cmd.predictions.empty())
    std::printf("csv       %zu predictions written to %s\n", merged.rows.size(), cmd.predictions.c_str());
  return 0;
}

int run_eval(int argc, char** argv) {
  EvalCommand cmd;
  po::options_description options("dfq eval options");
  describe_options(options, cmd);
  po::variables_map vm;
  if (!parse(argc, argv, options, kUsage, &vm)) return 0;
  if (!cmd.merge.empty()) return run_merge(cmd, vm);
  validate(cmd, vm);

  const int threads = set_threads(cmd.threads);
  std::unique_ptr<SimulatedModel> simulated;
  std::unique_ptr<IntegerEngine> integer;
  Graph imported, graph;
  const bool quantized = !cmd.qmodel.empty();
  if (quantized) {
    QuantizedModel q = load_quantized_model(cmd.qmodel);
    imported = graph = q.graph;
    if (cmd.engine == "simulated") simulated = std::make_unique<SimulatedModel>(q);
    else integer = std::make_unique<IntegerEngine>(q, cmd.kernels == "fast" ? IntKernel::kFast : IntKernel::kReference);
  } else {
    imported = import_torchscript(cmd.model);
    // Folding is exact in real arithmetic (float results differ by ~1e-6) and saves
    // one pass over every convolution's output; channels-last saves layout reorders.
    graph = cmd.no_fold_bn ? imported : fold_batch_norms(imported);
    use_channels_last(graph);
  }
  Preprocess pre = resolve_preprocess(cmd.preprocess, graph.input_channels);
  ImageFolder folder = scan_image_folder(cmd.data, cmd.skip_bad);
  const std::vector<int64_t> outputs = class_outputs(folder, cmd.class_names, graph.output_width());

  const size_t folded = imported.batch_norm_nodes().size() - graph.batch_norm_nodes().size();
  if (quantized)
    std::printf("model     %s (quantized, %zu nodes, engine %s%s)\n", cmd.qmodel.c_str(), graph.nodes.size(),
                cmd.engine.c_str(),
                integer ? (", " + cmd.kernels + " kernels" +
                           (cmd.kernels == "fast" ? std::string(" (") + int_kernel_path() + ")" : ""))
                              .c_str()
                        : "");
  else
    std::printf("model     %s (%zu nodes, %zu batch-norm layers, %zu folded into convolutions)\n", cmd.model.c_str(),
                imported.nodes.size(), imported.batch_norm_nodes().size(), folded);
  std::printf("data      %s (%zu classes, %zu images%s)\n", cmd.data.c_str(), folder.classes.size(),
              folder.images.size(), folder.skipped.empty() ? "" : ", non-image files skipped");
  if (!cmd.class_names.empty()) std::printf("classes   mapped to outputs by %s\n", cmd.class_names.c_str());
  std::printf("preset    %s: %d channel(s), resize %d, crop %d, mean %s, std %s\n", pre.name.c_str(), pre.channels,
              pre.resize_shorter, pre.crop, join(pre.mean).c_str(), join(pre.std).c_str());
  std::printf("run       batch %lld, limit %lld, threads %d, decode threads %d, skip-bad %s, layout %s\n",
              static_cast<long long>(cmd.batch), static_cast<long long>(cmd.limit), threads, cmd.decode_threads,
              cmd.skip_bad ? "on" : "off", simulated ? "NCHW" : "NHWC");
  if (cmd.predecode) std::printf("timing    images decoded before timing (model only)\n");
  if (integer) {
    int wide = 0;
    for (const AccumulatorReport& r : integer->accumulators()) wide += r.overflows_int16;
    std::printf("accum     %zu layers, %d need more than 16 bits in the worst case (int32 used)\n",
                integer->accumulators().size(), wide);
  }
  const EvalPart part = eval_part(cmd, folder);
  std::fflush(stdout);

  LoaderOptions loader;
  loader.batch_size = cmd.batch;
  loader.limit = 0;  // part.folder holds the first --limit images (or the shard's share of them) already
  loader.skip_bad = cmd.skip_bad;
  loader.decode_threads = cmd.decode_threads;
  const BatchModel engine = simulated ? BatchModel([&](const at::Tensor& x) { return simulated->forward(x); })
                           : integer ? BatchModel([&](const at::Tensor& x) { return integer->forward(x); })
                                     : BatchModel([&](const at::Tensor& x) { return forward(graph, to_channels_last(x)); });
  // Images of a size the model cannot take surface as a LibTorch error in some op.
  const BatchModel model = [&](const at::Tensor& x) {
    try {
      return engine(x);
    } catch (const c10::Error& e) {
      fail_model_input(quantized ? cmd.qmodel : cmd.model, x, std::string("LibTorch: ") + e.what_without_backtrace());
    } catch (const Error& e) {
      fail_model_input(quantized ? cmd.qmodel : cmd.model, x, e.what());
    }
  };
  const OutputRecorder::Keep keep = recorded(cmd);
  OutputRecorder recorder(keep);
  const bool record = keep.inputs || keep.logits || keep.ranking;
  const EvalResult result =
      evaluate(record ? recorder.wrap(model) : model, part.folder, outputs, pre, loader, cmd.quiet, cmd.predecode);
  if (result.images == 0)  // only possible with --skip-bad: a 0/0 top-1 is no measurement
    fail("data folder '" + cmd.data + "'", "at least one readable image",
         "none (" + std::to_string(result.skipped) + " unreadable skipped by --skip-bad)");

  print_result(result, folder.skipped.size());
  // After the run: the fast kernels add oneDNN's reordered int8 weights at the first batch.
  if (integer)
    std::printf("weights   %lld bytes held by the integer kernels (<= 4-bit weights packed two per byte)\n",
                static_cast<long long>(integer->weight_bytes()));
  nlohmann::json metrics =
      cmd.json.empty() ? nlohmann::json() : metrics_json(cmd, result, integer.get(), pre.name, threads, folded, folder);
  EvaluatedImages evaluated = evaluated_images(part.folder, outputs, 0, result.skipped_files);
  for (int64_t& position : evaluated.indices) position = part.positions[static_cast<size_t>(position)];
  if (!cmd.shard.empty())
    metrics = eval_shard_json(metrics, shard_settings(cmd, pre, folder, outputs, part.total), part.shard,
                              static_cast<int64_t>(part.folder.images.size()), part.total, result,
                              recorder.prediction_rows(evaluated, "--shard"));
  write_outputs(cmd, metrics, recorder, evaluated);
  return 0;
}

}  // namespace dfq::cli
