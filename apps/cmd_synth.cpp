// dfq synth: synthetic calibration images from the model's BN statistics.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "commands.h"
#include "core/atomic_file.h"
#include "core/content_hash.h"
#include "core/error.h"
#include "core/execute.h"
#include "core/import_torchscript.h"
#include "core/runtime.h"
#include "core/version.h"
#include "synth/direct.h"
#include "synth/generator.h"
#include "synth/metrics.h"
#include "synth/shards.h"

namespace dfq::cli {

namespace {

struct SynthCommand {
  std::string model, out, json, method = "direct", labels = "balanced", bn_stats = "batch", bn_distance = "l2";
  std::string input_size, save_generator, load_generator, shard;
  std::vector<std::string> merge;
  PreprocessOptions preprocess;
  int64_t count = 256, batch = 64, iters = 500, latent = 128;
  double lr = 0.0, ce_weight = 1.0, tv_weight = 0.0, l2_weight = 0.0, diversity_weight = 5.0;
  int jitter = 2, threads = 0;
  uint64_t seed = 0;
  bool no_flip = false, dump_png = false, quiet = false;
};

const char* kUsage =
    "usage: dfq synth --model M.pt --preset P --method direct|generator --count N --out DIR [options]\n"
    "       dfq synth --model M.pt ... --shard I/N --out SHARD_DIR    (direct: one shard of the run)\n"
    "       dfq synth --merge SHARD_DIR... --out DIR [--model M.pt] [--json F] [--dump-png]\n"
    "Synthesizes calibration images whose batch-norm statistics match the model's stored\n"
    "running mean/variance. Writes DIR/images.pt (normalized input space; Python:\n"
    "torch.load), DIR/synth.json, and with --dump-png DIR/png/<label>/*.png.\n"
    "--shard I/N computes only the batches k with k mod N == I (plus DIR/shard.json);\n"
    "--merge checks that the N shard folders are one run and writes the set the unsharded\n"
    "run writes, bit for bit when every shard used the same --threads on the same CPU.\n\n"
    "example:\n"
    "  dfq synth --model ../shared/weights/cifar10-resnet20.pt --preset cifar --method direct \\\n"
    "            --count 256 --out build/synth-r20 --dump-png --seed 0\n";

// An option given on the command line (not just defaulted).
bool given(const po::variables_map& vm, const char* name) { return vm.count(name) && !vm[name].defaulted(); }

void refuse_for_method(const po::variables_map& vm, const std::string& method, std::initializer_list<const char*> names,
                       const char* owner) {
  for (const char* name : names)
    if (given(vm, name))
      fail(std::string("--") + name, std::string("an option of --method ") + owner, "it combined with --method " + method);
}

// True when `path` lies inside directory `dir` (lexically, after making both absolute).
bool inside(const std::string& path, const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path relative = fs::absolute(path).lexically_normal().lexically_relative(fs::absolute(dir).lexically_normal());
  return !relative.empty() && *relative.begin() != "..";
}

// --out is replaced as a whole, so it must be new, or empty, or an earlier dfq
// synth output: other files in it would be lost. Creates its parent directories.
void check_out_directory(const std::string& out) {
  namespace fs = std::filesystem;
  const std::string subject = "--out '" + out + "'";
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec)) fail(subject, "a directory", "an existing file");
  if (fs::is_directory(out, ec)) {
    for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name != "images.pt" && name != "synth.json" && name != "png" && name != "shard.json")
        fail(subject, "a new directory or an earlier dfq synth output (replaced as a whole)", "other files (" + name + ")");
    }
    if (ec) fail(subject, "a readable directory", ec.message());
    return;
  }
  const fs::path parent = fs::absolute(out, ec).lexically_normal().parent_path();
  if (!fs::is_directory(parent, ec)) {
    // A regular file on the way is reported by check_output as not writable.
    for (fs::path p = parent; !p.empty() && p != p.root_path(); p = p.parent_path())
      if (fs::exists(p, ec) && !fs::is_directory(p, ec)) return;
    fs::create_directories(parent, ec);
    if (ec) fail(subject, "a directory whose parent can be created", ec.message());
  }
}

}  // namespace

static void describe_options(po::options_description& options, SynthCommand& cmd) {
  options.add_options()
      ("help,h", "show this help")
      ("model", po::value(&cmd.model), "TorchScript model file with batch-norm layers (with --merge: default the shards')")
      ("out", po::value(&cmd.out)->required(), "output directory: new, empty, or an earlier synth output (replaced as a whole)")
      ("method", po::value(&cmd.method)->default_value(cmd.method), "direct (optimize pixels) | generator (train G(z, y))")
      ("count", po::value(&cmd.count)->default_value(cmd.count), "images to produce")
      ("batch", po::value(&cmd.batch)->default_value(cmd.batch), "images optimized together")
      ("iters", po::value(&cmd.iters), "optimizer steps: per batch for direct (default 500), in total for generator (default 200)")
      ("lr", po::value(&cmd.lr), "peak learning rate, cosine decay (default: direct 0.25, generator 0.01)")
      ("labels", po::value(&cmd.labels)->default_value(cmd.labels), "balanced (target labels + cross-entropy) | none")
      ("ce-weight", po::value(&cmd.ce_weight)->default_value(cmd.ce_weight), "weight of the cross-entropy term")
      ("bn-stats", po::value(&cmd.bn_stats)->default_value(cmd.bn_stats), "batch (DeepInversion) | per-image (ZeroQ)")
      ("bn-distance", po::value(&cmd.bn_distance)->default_value(cmd.bn_distance), "l2 | relative (scale-free per channel)")
      ("tv-weight", po::value(&cmd.tv_weight)->default_value(cmd.tv_weight), "direct: total-variation prior weight")
      ("l2-weight", po::value(&cmd.l2_weight)->default_value(cmd.l2_weight), "direct: L2 prior weight")
      ("jitter", po::value(&cmd.jitter)->default_value(cmd.jitter), "direct: random shift of up to N pixels per step")
      ("no-flip", po::bool_switch(&cmd.no_flip), "direct: no random horizontal flips")
      ("latent", po::value(&cmd.latent)->default_value(cmd.latent), "generator: size of z")
      ("diversity-weight", po::value(&cmd.diversity_weight)->default_value(cmd.diversity_weight), "generator: diversity term weight")
      ("save-generator", po::value(&cmd.save_generator), "generator: save the trained generator to FILE")
      ("load-generator", po::value(&cmd.load_generator), "generator: load FILE instead of training")
      ("input-size", po::value(&cmd.input_size), "image height x width (default: the preset's)")
      ("seed", po::value(&cmd.seed)->default_value(cmd.seed), "random seed; same seed + threads = same images")
      ("dump-png", po::bool_switch(&cmd.dump_png), "also write PNGs into DIR/png/<label>/")
      ("json", po::value(&cmd.json), "also write the report JSON to this file")
      ("threads", po::value(&cmd.threads)->default_value(cmd.threads), "compute threads (0: all cores)")
      ("shard", po::value(&cmd.shard),
       "direct: compute only the batches k with k mod N == I (I/N, 0 <= I < N) into --out, a shard folder for --merge")
      ("merge", po::value(&cmd.merge)->multitoken(),
       "merge the shard folders of one --shard run into --out (options come from the shards)")
      ("quiet,q", po::bool_switch(&cmd.quiet), "no progress line on stderr");
  add_preprocess_options(options, cmd.preprocess);
}

po::options_description synth_options() {
  static SynthCommand ignored;
  po::options_description options("dfq synth options");
  describe_options(options, ignored);
  return options;
}

namespace {

// The option combinations dfq synth refuses, checked before any file is read.
// Fills in the method-dependent defaults of --iters and --lr.
void validate(SynthCommand& cmd, const po::variables_map& vm) {
  if (cmd.model.empty()) throw Error("the option '--model' is required but missing (see --help)");
  if (cmd.method != "direct" && cmd.method != "generator")
    fail("--method", "direct or generator", "'" + cmd.method + "'");
  if (cmd.method == "direct")
    refuse_for_method(vm, cmd.method, {"latent", "diversity-weight", "save-generator", "load-generator"}, "generator");
  else
    refuse_for_method(vm, cmd.method, {"tv-weight", "l2-weight", "jitter", "no-flip"}, "direct");
  if (cmd.labels == "none" && given(vm, "ce-weight"))
    fail("--ce-weight", "target labels (--labels balanced) for a cross-entropy term", "--labels none");
  if (!cmd.load_generator.empty())
    for (const char* name : {"iters", "lr", "ce-weight", "diversity-weight"})
      if (given(vm, name))
        fail(std::string("--") + name, "a training option, used only without --load-generator",
             "it combined with --load-generator (a loaded generator is not trained)");
  if (!cmd.load_generator.empty() && !cmd.save_generator.empty())
    fail("--save-generator", "a generator to train (without --load-generator)",
         "--load-generator (the loaded file is that generator already)");
  if (!cmd.shard.empty() && cmd.method != "direct")
    fail("--shard", "--method direct (the generator is one model trained on every image: it cannot be split)",
         "--method " + cmd.method);
  if (!cmd.shard.empty() && cmd.dump_png)
    fail("--dump-png", "the merged set (dfq synth --merge SHARD_DIR... --dump-png)", "it combined with --shard");
  if (!given(vm, "iters")) cmd.iters = cmd.method == "direct" ? 500 : 200;
  require_at_least("--count", cmd.count, 1);
  require_at_least("--batch", cmd.batch, 1);
  require_at_least("--iters", cmd.iters, cmd.method == "generator" && !cmd.load_generator.empty() ? 0 : 1);
  require_at_least("--threads", cmd.threads, 0);
  require_at_least("--latent", cmd.latent, 1);
  require_at_least("--jitter", cmd.jitter, 0);
  require_non_negative("--ce-weight", cmd.ce_weight);
  require_non_negative("--tv-weight", cmd.tv_weight);
  require_non_negative("--l2-weight", cmd.l2_weight);
  require_non_negative("--diversity-weight", cmd.diversity_weight);
  if (!given(vm, "lr")) cmd.lr = cmd.method == "direct" ? 0.25 : 0.01;
  if (!(cmd.lr > 0)) fail("--lr", "a positive learning rate", std::to_string(cmd.lr));
  if (!cmd.json.empty() && inside(cmd.json, cmd.out))
    fail("--json '" + cmd.json + "'", "a path outside --out (which holds synth.json, the same report)", "a path inside it");
}

// The head of synth.json: how the set was made.
struct ReportHeader {
  std::string model, labels, bn_stats, bn_distance;
  int64_t batch = 0;
  double lr = 0.0;
  uint64_t seed = 0;
  int threads = 0;
};

std::string report_json(const ReportHeader& h, const SynthReport& report, const SynthQuality& quality) {
  const double drop = report.final_bn_loss > 0 ? report.initial_bn_loss / report.final_bn_loss : 0.0;
  nlohmann::json per_layer = nlohmann::json::object();
  for (size_t l = 0; l < report.bn_layers.size(); ++l) per_layer[report.bn_layers[l]] = report.final_bn_loss_per_layer[l];
  const nlohmann::json j = {
      {"method", report.method}, {"model", h.model}, {"count", report.count}, {"iterations", report.iterations},
      {"batch", h.batch}, {"lr", h.lr}, {"labels", h.labels}, {"seed", h.seed}, {"threads", h.threads},
      {"bn_stats", h.bn_stats}, {"bn_distance", h.bn_distance}, {"seconds", report.seconds},
      {"image_iterations_per_second", report.image_iterations_per_second},
      {"initial_bn_loss", report.initial_bn_loss}, {"final_bn_loss", report.final_bn_loss},
      {"bn_loss_drop", drop},
      {"final_bn_loss_per_layer", per_layer}, {"label_agreement", quality.label_agreement},
      {"class_histogram", quality.class_histogram}, {"diversity", quality.diversity}, {"diversity_within_class", quality.diversity_within_class},
      {"loss_curve", report.loss_curve}};
  return j.dump(2) + "\n";
}

void print_summary(const SynthReport& report, const SynthQuality& quality, const std::string& out, bool png,
                   bool shard) {
  const double drop = report.final_bn_loss > 0 ? report.initial_bn_loss / report.final_bn_loss : 0.0;
  std::printf("bn loss   %.4g -> %.4g (%.1fx lower)\n", report.initial_bn_loss, report.final_bn_loss, drop);
  std::printf("labels    FP32 model agrees with the target label on %.1f %%\n", quality.label_agreement);
  std::printf("classes  ");
  for (int64_t c : quality.class_histogram) std::printf(" %lld", static_cast<long long>(c));
  std::printf("\ndiversity %.4f overall, %.4f within a target label (RMS per-element distance between images)\n",
              quality.diversity, quality.diversity_within_class);
  std::printf("seconds   %.2f  (%.0f image-iterations/s)\n", report.seconds, report.image_iterations_per_second);
  std::printf("wrote     %s/images.pt%s, %s/synth.json%s\n", out.c_str(), png ? " and png/" : "", out.c_str(),
              shard ? " and shard.json" : "");
}

// What the images of a direct run depend on: a shard's "run", which every
// shard of one run must share (synth/shards.h). --threads is in it because
// LibTorch's reductions, and so the images, depend on the thread count.
nlohmann::json run_settings(const SynthCommand& cmd, const std::string& model_sha256, const Preprocess& pre,
                                    const std::vector<int64_t>& hw, int64_t channels, int threads) {
  return {{"model_sha256", model_sha256}, {"method", cmd.method}, {"count", cmd.count}, {"batch", cmd.batch},
          {"iterations", cmd.iters}, {"lr", cmd.lr}, {"labels", cmd.labels}, {"ce_weight", cmd.ce_weight},
          {"tv_weight", cmd.tv_weight}, {"l2_weight", cmd.l2_weight}, {"jitter", cmd.jitter}, {"flip", !cmd.no_flip},
          {"bn_stats", cmd.bn_stats}, {"bn_distance", cmd.bn_distance}, {"preset", pre.name}, {"channels", channels},
          {"mean", pre.mean}, {"std", pre.std}, {"height", hw[0]}, {"width", hw[1]}, {"seed", cmd.seed},
          {"threads", threads}, {"dfq_version", dfq_version()}};
}

// What one synthesis writes; all of it staged (core/atomic_file.h), so a
// failure, a full disk included, leaves no partial output.
struct SynthFiles {
  std::string out, out_dir, json, json_file;  // the user's paths and their staged temporaries
  std::string report, shard;                  // synth.json text; shard.json text (shards only)
  const Preprocess* png = nullptr;            // with --dump-png
  int64_t classes = 0;
};

void write_synth_outputs(StagedOutputs& outputs, const SynthFiles& f, const SynthSet& set) {
  try {
    std::error_code ec;
    std::filesystem::create_directory(f.out_dir, ec);
    if (ec) fail("--out '" + f.out + "'", "a directory that can be created", ec.message());
    save_synth_set(set, f.out_dir + "/images.pt");
    if (f.png) dump_png_folder(set, *f.png, f.classes, f.out_dir + "/png");
    write_file(f.out_dir + "/synth.json", f.report);
    if (!f.shard.empty()) write_file(f.out_dir + "/shard.json", f.shard);
    if (!f.json.empty()) write_file(f.json_file, f.report);
    outputs.commit();
  } catch (const Error& e) {
    throw Error(outputs.final_names(e.what()));
  }
}

SynthSet synthesize(const SynthCommand& cmd, const Graph& graph, const Preprocess& pre, const std::vector<int64_t>& hw,
                    const Shard& shard, const std::string& generator_file, SynthReport& report) {
  const LabelMode labels = parse_label_mode(cmd.labels);
  const BnLossOptions bn{parse_bn_statistics(cmd.bn_stats), parse_bn_distance(cmd.bn_distance)};
  if (cmd.method == "direct") {
    DirectOptions o;
    o.count = cmd.count, o.batch = cmd.batch, o.iterations = cmd.iters, o.lr = cmd.lr, o.labels = labels;
    o.ce_weight = cmd.ce_weight, o.tv_weight = cmd.tv_weight, o.l2_weight = cmd.l2_weight, o.jitter = cmd.jitter;
    o.flip = !cmd.no_flip, o.bn = bn, o.seed = cmd.seed, o.shard = shard, o.quiet = cmd.quiet;
    return synthesize_direct(graph, pre, hw[0], hw[1], o, report);
  }
  GeneratorOptions o;
  o.count = cmd.count, o.batch = cmd.batch, o.iterations = cmd.iters, o.lr = cmd.lr, o.latent = cmd.latent;
  o.labels = labels, o.ce_weight = cmd.ce_weight, o.diversity_weight = cmd.diversity_weight, o.bn = bn;
  o.seed = cmd.seed, o.quiet = cmd.quiet, o.load_path = cmd.load_generator, o.save_path = generator_file;
  return synthesize_with_generator(graph, pre, hw[0], hw[1], o, report);
}

void print_configuration(const SynthCommand& cmd, const Graph& graph, const Preprocess& pre,
                         const std::vector<int64_t>& hw, int threads, const Shard& shard) {
  std::printf("model     %s (%zu batch-norm layers, %lld classes)\n", cmd.model.c_str(), graph.batch_norm_nodes().size(),
              static_cast<long long>(graph.output_width()));
  std::printf("images    %lld x %lldx%lldx%lld, preset %s, labels %s, seed %llu, threads %d\n",
              static_cast<long long>(cmd.count), static_cast<long long>(pre.channels), static_cast<long long>(hw[0]),
              static_cast<long long>(hw[1]), pre.name.c_str(), cmd.labels.c_str(),
              static_cast<unsigned long long>(cmd.seed), threads);
  std::printf("method    %s: batch %lld, iters %lld, lr %g, ce %g, bn stats %s, bn distance %s\n", cmd.method.c_str(),
              static_cast<long long>(cmd.batch), static_cast<long long>(cmd.iters), cmd.lr, cmd.ce_weight,
              to_string(parse_bn_statistics(cmd.bn_stats)), to_string(parse_bn_distance(cmd.bn_distance)));
  if (!cmd.shard.empty())
    std::printf("shard     %lld/%lld: batches k with k mod %lld = %lld (merge with dfq synth --merge)\n",
                static_cast<long long>(shard.index), static_cast<long long>(shard.count),
                static_cast<long long>(shard.count), static_cast<long long>(shard.index));
  std::fflush(stdout);
}

int run_merge(SynthCommand& cmd, const po::variables_map& vm);

}  // namespace

int run_synth(int argc, char** argv) {
  SynthCommand cmd;
  po::options_description options("dfq synth options");
  describe_options(options, cmd);
  po::variables_map vm;
  if (!parse(argc, argv, options, kUsage, &vm)) return 0;
  if (!cmd.merge.empty()) return run_merge(cmd, vm);
  validate(cmd, vm);
  const Shard shard = cmd.shard.empty() ? Shard{} : parse_shard(cmd.shard);
  parse_bn_statistics(cmd.bn_stats), parse_bn_distance(cmd.bn_distance), parse_label_mode(cmd.labels);

  const int threads = set_threads(cmd.threads);
  Graph graph = import_torchscript(cmd.model);
  const Preprocess pre = resolve_preprocess(cmd.preprocess, graph.input_channels);
  const std::vector<int64_t> hw = input_size(cmd.preprocess.preset, cmd.input_size);
  if (graph.batch_norm_nodes().empty())
    fail("model '" + cmd.model + "'", "batch-norm layers whose statistics synthesis can match",
         "none (calibrate such a model on real images instead: dfq quantize --calib-data DIR)");
  check_out_directory(cmd.out);
  check_writable("--out", cmd.out);
  if (!cmd.json.empty()) check_output("--json", cmd.json, {{"--model", cmd.model}});
  if (!cmd.save_generator.empty())
    check_output("--save-generator", cmd.save_generator, {{"--model", cmd.model}, {"--json", cmd.json}});
  // Everything is written under temporary names and renamed into place at the
  // end: a failure (a full disk included) leaves no partial output, and an
  // earlier output in --out stays as it was.
  StagedOutputs outputs;
  SynthFiles files{cmd.out, outputs.stage(cmd.out), cmd.json, "", "", "", nullptr, graph.output_width()};
  const std::string generator_file = cmd.save_generator.empty() ? "" : outputs.stage(cmd.save_generator);
  if (!cmd.json.empty()) files.json_file = outputs.stage(cmd.json);
  // No channels-last here: unlike inference, forward + backward with the fused BN
  // kernels measured as fast or faster in NCHW (ResNet-20, batch 64: ~860 vs ~830
  // image-iterations/s for the network part).
  print_configuration(cmd, graph, pre, hw, threads, shard);

  SynthReport report;
  SynthSet set;
  try {
    set = synthesize(cmd, graph, pre, hw, shard, generator_file, report);
  } catch (const Error& e) {
    throw Error(outputs.final_names(e.what()));
  }
  const SynthQuality quality = measure_quality(graph, set, cmd.batch);
  files.report = report_json({cmd.model, cmd.labels, cmd.bn_stats, cmd.bn_distance, cmd.batch, cmd.lr, cmd.seed, threads},
                             report, quality);
  if (!cmd.shard.empty()) {
    const auto run = run_settings(cmd, sha256_of_file(cmd.model), pre, hw, set.images.size(1), threads);
    files.shard = synth_shard_json(run, cmd.model, shard, report).dump(2) + "\n";
  }
  if (cmd.dump_png) files.png = &pre;
  write_synth_outputs(outputs, files, set);
  print_summary(report, quality, cmd.out, cmd.dump_png, !cmd.shard.empty());
  return 0;
}

namespace {

// --merge takes every setting from the shards: a synthesis option given with it is refused.
void validate_merge(const SynthCommand& cmd, const po::variables_map& vm) {
  refuse_with_merge(vm, {"merge", "out", "model", "json", "dump-png", "threads", "quiet"}, "the synthesis options from the shards");
  require_at_least("--threads", cmd.threads, 0);
  if (!cmd.json.empty() && inside(cmd.json, cmd.out))
    fail("--json '" + cmd.json + "'", "a path outside --out (which holds synth.json, the same report)", "a path inside it");
  namespace fs = std::filesystem;
  for (const std::string& dir : cmd.merge) {
    std::error_code ec;
    const bool same = fs::exists(dir, ec) && fs::exists(cmd.out, ec)
                          ? fs::equivalent(dir, cmd.out, ec)
                          : fs::absolute(dir, ec).lexically_normal() == fs::absolute(cmd.out, ec).lexically_normal();
    if (same || inside(cmd.out, dir) || inside(dir, cmd.out))
      fail("--out '" + cmd.out + "'", "a folder apart from the shards being merged", "shard '" + dir + "'");
  }
}

// The model the shards came from: --model, else the path they recorded; its
// SHA-256 must be theirs (it measures the merged set's label agreement).
std::string merge_model(const SynthCommand& cmd, const MergedSynth& merged) {
  const std::string model = cmd.model.empty() ? merged.model : cmd.model;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(model, ec))
    fail("model '" + model + "'", "the shards' model file (give its path with --model)", "no such file");
  const std::string want = merged.run.at("model_sha256").get<std::string>();
  const std::string found = sha256_of_file(model);
  if (found != want)
    fail("model '" + model + "'", "the model the shards were synthesized from (SHA-256 " + want + ")",
         "a file with SHA-256 " + found);
  return model;
}

Preprocess merged_preprocess(const nlohmann::json& run) {
  Preprocess pre = preset(run.at("preset").get<std::string>());
  pre.channels = run.at("channels").get<int>();
  pre.mean = run.at("mean").get<std::vector<float>>();
  pre.std = run.at("std").get<std::vector<float>>();
  return pre;
}

int run_merge(SynthCommand& cmd, const po::variables_map& vm) {
  validate_merge(cmd, vm);
  std::vector<SynthShardFolder> shards;
  for (const std::string& dir : cmd.merge) shards.push_back(read_synth_shard(dir));
  MergedSynth merged = merge_synth_shards(shards);
  const nlohmann::json& run = merged.run;
  const std::string model = merge_model(cmd, merged);
  check_out_directory(cmd.out);
  check_writable("--out", cmd.out);
  if (!cmd.json.empty()) check_output("--json", cmd.json, {{"--model", model}});
  StagedOutputs outputs;
  SynthFiles files{cmd.out, outputs.stage(cmd.out), cmd.json, "", "", "", nullptr, 0};
  if (!cmd.json.empty()) files.json_file = outputs.stage(cmd.json);
  // The shards' thread count unless told otherwise: the label agreement and
  // diversity figures are then computed as the unsharded run computes them.
  set_threads(given(vm, "threads") ? cmd.threads : run.at("threads").get<int>());
  const Graph graph = import_torchscript(model);
  const Preprocess pre = merged_preprocess(run);
  std::printf("merged    %zu shards of %s: %lld images, seed %llu, threads %d\n", shards.size(), model.c_str(),
              static_cast<long long>(merged.report.count), run.at("seed").get<unsigned long long>(),
              run.at("threads").get<int>());
  std::fflush(stdout);
  const int64_t batch = run.at("batch").get<int64_t>();
  const SynthQuality quality = measure_quality(graph, merged.set, batch);
  const ReportHeader header{model, run.at("labels").get<std::string>(), run.at("bn_stats").get<std::string>(),
                            run.at("bn_distance").get<std::string>(), batch, run.at("lr").get<double>(),
                            run.at("seed").get<uint64_t>(), run.at("threads").get<int>()};
  files.report = report_json(header, merged.report, quality);
  files.classes = graph.output_width();
  if (cmd.dump_png) files.png = &pre;
  write_synth_outputs(outputs, files, merged.set);
  print_summary(merged.report, quality, cmd.out, cmd.dump_png, false);
  return 0;
}

}  // namespace

}  // namespace dfq::cli
