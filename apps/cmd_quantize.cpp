// dfq quantize: post-training quantization on synthetic (or real) calibration data.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "cli.h"
#include "commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/import_torchscript.h"
#include "core/runtime.h"
#include "eval/batch_loader.h"
#include "eval/image_folder.h"
#include "quant/artifact.h"
#include "quant/quantize.h"
#include "synth/direct.h"
#include "synth/synth_set.h"

namespace dfq::cli {

namespace {

struct QuantizeCommand {
  std::string model, out, json, calib = "synthetic", calib_data, weight_range = "mmse", act_range = "mmse";
  std::string bias_correction = "full", weight_objective = "output", reconstruct = "adaround";
  std::string input_size;
  PreprocessOptions preprocess;
  int wbits = 8, abits = 8, first_last_bits = 0, residual_layers = 0, threads = 0, reconstruct_iters = 1000;
  int64_t calib_count = 256, synth_iters = 500;
  double percentile = 99.99, residual_budget = 0.0, size_budget = 0.0, bops_budget = 0.0;
  std::string candidate_bits = "2,3,4,6,8", candidate_abits, bops_budget_bits, sensitivity = "isolated";
  uint64_t seed = 0;
  bool per_tensor = false, quiet = false, check_options = false;
  bool cle = false, cle_keep_relu6 = false, cle_no_absorption = false;
  bool pow2_scales = false, weight_lut = false;
};

const char* kUsage =
    "usage: dfq quantize --model M.pt --preset P --wbits B --abits B --out Q.dfq [options]\n"
    "Folds BN, quantizes weights (symmetric, per output channel) and activations (per\n"
    "tensor) with ranges found on calibration data (synthetic by default), optionally\n"
    "adds residual weight tensors and corrects biases; writes the quantized model and a\n"
    "per-layer report. Evaluate it with: dfq eval --qmodel Q.dfq --data DIR --engine simulated\n\n"
    "example:\n"
    "  dfq quantize --model ../shared/weights/cifar10-resnet20.pt --preset cifar --wbits 4 --abits 4 \\\n"
    "               --residual-layers 3 --out build/r20-w4a4.dfq --json build/r20-w4a4.json\n";

// "2,3,4" as numbers of at most two digits; `example` shows the form in the error.
std::vector<int> parse_bit_list(const std::string& text, const std::string& option, const std::string& example) {
  std::vector<int> bits;
  for (size_t at = 0; at <= text.size();) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    if (item.empty() || item.size() > 2 || item.find_first_not_of("0123456789") != std::string::npos)
      fail(option, "comma-separated bit widths such as " + example, "\"" + text + "\"");
    bits.push_back(std::stoi(item));
    at = comma + 1;
  }
  return bits;
}

// Real calibration images: `count` drawn from the whole folder with `seed`
// (a sorted folder's first images would all be one class).
at::Tensor load_calibration_folder(const std::string& dir, int64_t count, const Preprocess& pre, uint64_t seed) {
  ImageFolder folder = scan_image_folder(dir, false);
  std::mt19937_64 rng(seed);
  std::shuffle(folder.images.begin(), folder.images.end(), rng);
  if (static_cast<int64_t>(folder.images.size()) > count) folder.images.resize(static_cast<size_t>(count));
  LoaderOptions o;
  o.batch_size = static_cast<int64_t>(folder.images.size());
  BatchLoader loader(folder, pre, o);
  Batch batch;
  loader.next(batch);
  return batch.images.narrow(0, 0, batch.count).clone();
}

std::string describe_equalization(const QuantizeOptions& o) {
  if (!o.cross_layer_equalization) return "off";
  return std::string("on (ReLU6 of equalized pairs ") + (o.equalization.relu6_to_relu ? "-> ReLU" : "kept, pairs skipped") +
         ", bias absorption " + (o.equalization.bias_absorption ? "on" : "off") + ")";
}

void print_equalization(const EqualizeReport& r) {
  int replaced = 0, absorbed = 0;
  for (const EqualizedPair& p : r.pairs) replaced += p.relu6_replaced, absorbed += p.absorption == "absorbed";
  std::printf("equalize  %zu pairs (%d ReLU6 -> ReLU, %d biases absorbed, %zu skipped), %d sweeps (%s), "
              "weight range spread max %.3g -> %.3g, median %.3g -> %.3g, %.2f s\n",
              r.pairs.size(), replaced, absorbed, r.skipped.size(), r.iterations,
              r.converged ? "converged" : "not converged", r.max_spread_before, r.max_spread_after,
              r.median_spread_before, r.median_spread_after, r.seconds);
}

nlohmann::json equalization_json(const EqualizeReport& r, const EqualizeOptions& o) {
  nlohmann::json pairs = nlohmann::json::array(), layers = nlohmann::json::array();
  for (const EqualizedPair& p : r.pairs)
    pairs.push_back({{"layer1", p.layer1}, {"activation", p.activation}, {"layer2", p.layer2},
                     {"relu6_replaced", p.relu6_replaced}, {"absorption", p.absorption},
                     {"absorbed_channels", p.absorbed_channels}, {"absorbed_mean", p.absorbed_mean}});
  for (const LayerSpread& l : r.layers)
    layers.push_back({{"name", l.name}, {"spread_before", l.spread_before}, {"spread_after", l.spread_after},
                      {"utilization_before", l.utilization_before}, {"utilization_after", l.utilization_after}});
  return {{"relu6_to_relu", o.relu6_to_relu}, {"bias_absorption", o.bias_absorption},
          {"absorb_through_padding", o.absorb_through_padding}, {"absorb_sigmas", o.absorb_sigmas},
          {"max_iterations", o.max_iterations}, {"tolerance", o.tolerance}, {"pairs", pairs}, {"skipped", r.skipped}, {"layers", layers}, {"iterations", r.iterations},
          {"converged", r.converged}, {"last_change", r.last_change}, {"seconds", r.seconds},
          {"max_spread_before", r.max_spread_before}, {"max_spread_after", r.max_spread_after},
          {"median_spread_before", r.median_spread_before}, {"median_spread_after", r.median_spread_after}};
}

}  // namespace

static void describe_options(po::options_description& options, QuantizeCommand& cmd) {
  options.add_options()
      ("help,h", "show this help")
      ("model", po::value(&cmd.model)->required(), "TorchScript model file")
      ("out", po::value(&cmd.out)->required(), "quantized model file to write (.dfq)")
      ("wbits", po::value(&cmd.wbits)->default_value(cmd.wbits), "weight bits, 2..8")
      ("abits", po::value(&cmd.abits)->default_value(cmd.abits), "activation bits, 2..8 (the input is always 8)")
      ("first-last-bits", po::value(&cmd.first_last_bits)->default_value(cmd.first_last_bits),
       "weight bits of the first and last layer, 2..8 (0: same as --wbits)")
      ("per-tensor", po::bool_switch(&cmd.per_tensor), "one weight scale per layer instead of per output channel")
      ("weight-range", po::value(&cmd.weight_range)->default_value(cmd.weight_range), "minmax | percentile | kl | mmse")
      ("act-range", po::value(&cmd.act_range)->default_value(cmd.act_range), "minmax | percentile | kl | mmse")
      ("percentile", po::value(&cmd.percentile)->default_value(cmd.percentile), "percentile for the percentile method")
      ("residual-layers", po::value(&cmd.residual_layers)->default_value(cmd.residual_layers),
       "give the K layers with the worst weight error a second (residual) weight tensor")
      ("residual-budget", po::value(&cmd.residual_budget)->default_value(cmd.residual_budget),
       "or: as many layers as fit F extra weight bits (fraction of the model's, 0..1)")
      ("bias-correction", po::value(&cmd.bias_correction)->default_value(cmd.bias_correction),
       "none (biases as folded) | weights (the output shift of weight quantization, float activations) | "
       "full (then again on the simulated model, activations quantized upstream)")
      ("weight-objective", po::value(&cmd.weight_objective)->default_value(cmd.weight_objective),
       "what the mmse weight clip minimizes: weight (|W - Wq|^2) | output (weighted by the input's E[x^2])")
      ("reconstruct", po::value(&cmd.reconstruct)->default_value(cmd.reconstruct),
       "re-choose each layer's integers to minimize its output error on the calibration data: "
       "none | adaround (rounding up/down learned) | adaquant (weights learned, straight-through rounding)")
      ("reconstruct-iters", po::value(&cmd.reconstruct_iters)->default_value(cmd.reconstruct_iters),
       "optimizer steps per layer for --reconstruct")
      ("cle", po::bool_switch(&cmd.cle),
       "cross-layer equalization after BN folding (Nagel et al. 2019): balance the weight ranges of "
       "conv -> ReLU -> conv pairs; ReLU6 between equalized layers becomes ReLU; biases absorbed into the next layer")
      ("cle-keep-relu6", po::bool_switch(&cmd.cle_keep_relu6), "with --cle: keep ReLU6, skip the pairs around one")
      ("cle-no-absorption", po::bool_switch(&cmd.cle_no_absorption), "with --cle: no bias absorption")
      ("pow2-scales", po::bool_switch(&cmd.pow2_scales),
       "every weight and activation scale a power of two (requantization by shifts), chosen by the range "
       "method over power-of-two candidates")
      ("weight-lut", po::bool_switch(&cmd.weight_lut),
       "layers of <= 4-bit weights: 4-bit codes into a per-layer table of 16 int8 levels (non-uniform), "
       "fitted from the uniform grid by Lloyd iterations on the weight objective; AdaRound chooses between table levels")
      ("size-budget", po::value(&cmd.size_budget)->default_value(cmd.size_budget),
       "mixed precision: average weight bits per weight (e.g. 4); each layer's bits chosen by an exact ILP "
       "(GLPK) minimizing the summed per-layer output divergence (0: uniform --wbits)")
      ("bops-budget", po::value(&cmd.bops_budget)->default_value(cmd.bops_budget),
       "mixed precision: bit operations per image (MACs x weight bits x activation bits; 0: none)")
      ("bops-budget-bits", po::value(&cmd.bops_budget_bits),
       "W,A: or the BOPs budget as the BOPs of uniform W-bit weights and A-bit activations (e.g. 4,4)")
      ("candidate-abits", po::value(&cmd.candidate_abits),
       "mixed activation bits (needs a BOPs budget): bit widths the ILP chooses each convolution/linear "
       "input from (e.g. 2,3,4,6,8); layers reading one tensor share its bits, the input stays 8, tensors "
       "feeding no convolution/linear keep --abits (default: every activation at --abits)")
      ("candidate-bits", po::value(&cmd.candidate_bits)->default_value(cmd.candidate_bits),
       "weight bit widths the mixed-precision ILP chooses from")
      ("sensitivity", po::value(&cmd.sensitivity)->default_value(cmd.sensitivity),
       "mixed precision: measure each candidate in the float model with only that layer quantized (isolated), "
       "the same after reconstructing that layer with --reconstruct's method (reconstructed), "
       "or in the model quantized everywhere else (in-context: weights at the candidate nearest the budget, "
       "activations at --abits); reconstructed and in-context measured no better than isolated at W4A4 on "
       "ResNet-20/56 (results/ablation/paired.md)")
      ("calib", po::value(&cmd.calib)->default_value(cmd.calib),
       "synthetic (synthesize now) | a dfq synth output (DIR with images.pt, or the .pt) | an image folder")
      ("calib-data", po::value(&cmd.calib_data), "real images for calibration (same as --calib DIR)")
      ("calib-count", po::value(&cmd.calib_count)->default_value(cmd.calib_count), "calibration images")
      ("synth-iters", po::value(&cmd.synth_iters)->default_value(cmd.synth_iters),
       "synthesis iterations per batch for --calib synthetic (direct method)")
      ("input-size", po::value(&cmd.input_size), "image height x width for synthesis (default: the preset's)")
      ("seed", po::value(&cmd.seed)->default_value(cmd.seed), "random seed (synthesis, image sampling)")
      ("json", po::value(&cmd.json), "also write the report as JSON to this file")
      ("threads", po::value(&cmd.threads)->default_value(cmd.threads), "compute threads (0: all cores)")
      ("quiet,q", po::bool_switch(&cmd.quiet), "no progress line on stderr")
      ("check-options", po::bool_switch(&cmd.check_options),
       "check the options (all that can be checked without reading a file) and exit");
  add_preprocess_options(options, cmd.preprocess);
}

po::options_description quantize_options() {
  static QuantizeCommand ignored;
  po::options_description options("dfq quantize options");
  describe_options(options, ignored);
  return options;
}

int run_quantize(int argc, char** argv) {
  QuantizeCommand cmd;
  po::options_description options("dfq quantize options");
  describe_options(options, cmd);
  po::variables_map vm;
  if (!parse(argc, argv, options, kUsage, &vm)) return 0;
  if (vm.count("calib-data")) {
    if (!vm["calib"].defaulted()) fail("--calib-data", "either --calib or --calib-data", "both");
    cmd.calib = cmd.calib_data;
  }
  require_at_least("--calib-count", cmd.calib_count, 1);
  require_at_least("--synth-iters", cmd.synth_iters, 1);
  require_at_least("--threads", cmd.threads, 0);
  require_at_least("--reconstruct-iters", cmd.reconstruct_iters, 1);
  if (!(cmd.percentile > 0 && cmd.percentile <= 100)) fail("--percentile", "a value in (0, 100]", std::to_string(cmd.percentile));
  if (cmd.calib != "synthetic" && !vm["synth-iters"].defaulted())
    fail("--synth-iters", "--calib synthetic", "--calib " + cmd.calib);
  if (cmd.calib != "synthetic" && !cmd.input_size.empty())
    fail("--input-size", "--calib synthetic (the size of synthesized images)", "--calib " + cmd.calib);
  if (!vm["percentile"].defaulted() && cmd.weight_range != "percentile" && cmd.act_range != "percentile")
    fail("--percentile", "--weight-range or --act-range percentile", "neither");
  require_non_negative("--size-budget", cmd.size_budget);
  require_non_negative("--bops-budget", cmd.bops_budget);
  if ((cmd.cle_keep_relu6 || cmd.cle_no_absorption) && !cmd.cle)
    fail(cmd.cle_keep_relu6 ? "--cle-keep-relu6" : "--cle-no-absorption", "--cle", "no --cle");
  QuantizeOptions o;
  o.cross_layer_equalization = cmd.cle;
  o.equalization.relu6_to_relu = !cmd.cle_keep_relu6;
  o.equalization.bias_absorption = !cmd.cle_no_absorption;
  o.weight_bits = cmd.wbits, o.activation_bits = cmd.abits, o.first_last_bits = cmd.first_last_bits;
  o.per_channel = !cmd.per_tensor;
  o.weight_range = RangeOptions{parse_range_method(cmd.weight_range, "--weight-range"), cmd.percentile};
  o.activation_range = RangeOptions{parse_range_method(cmd.act_range, "--act-range"), cmd.percentile};
  o.residual_layers = cmd.residual_layers, o.residual_budget = cmd.residual_budget;
  o.bias_correction = parse_bias_correction(cmd.bias_correction, "--bias-correction");
  o.weight_objective = parse_weight_objective(cmd.weight_objective, "--weight-objective");
  o.size_budget_bits_per_weight = cmd.size_budget, o.bops_budget = cmd.bops_budget;
  o.candidate_bits = parse_bit_list(cmd.candidate_bits, "--candidate-bits", "2,3,4,6,8");
  if (vm.count("candidate-abits")) o.candidate_activation_bits = parse_bit_list(cmd.candidate_abits, "--candidate-abits", "2,3,4,6,8");
  if (vm.count("bops-budget-bits")) {
    const std::vector<int> wa = parse_bit_list(cmd.bops_budget_bits, "--bops-budget-bits", "4,4 (weight bits, activation bits)");
    if (wa.size() != 2) fail("--bops-budget-bits", "two bit widths W,A such as 4,4", "\"" + cmd.bops_budget_bits + "\"");
    o.bops_budget_weight_bits = wa[0], o.bops_budget_activation_bits = wa[1];
  }
  const bool mixed = has_bit_budget(o);
  const bool mixed_activations = !o.candidate_activation_bits.empty();
  if (mixed && !vm["wbits"].defaulted())
    fail("--wbits", "no uniform weight bits with --size-budget/--bops-budget (the ILP chooses them)", "--wbits " + std::to_string(cmd.wbits));
  if (!mixed && !vm["candidate-bits"].defaulted())
    fail("--candidate-bits", "--size-budget or --bops-budget", "neither");
  o.sensitivity = parse_mixed_sensitivity(cmd.sensitivity, "--sensitivity");
  if (!mixed && !vm["sensitivity"].defaulted())
    fail("--sensitivity", "--size-budget or --bops-budget", "neither");
  o.reconstruct.method = parse_reconstruction(cmd.reconstruct, "--reconstruct");
  o.reconstruct.iterations = cmd.reconstruct_iters;
  if (o.reconstruct.method == Reconstruction::kNone && !vm["reconstruct-iters"].defaulted())
    fail("--reconstruct-iters", "--reconstruct adaround or adaquant", "--reconstruct none");
  o.quiet = cmd.quiet;
  o.power_of_two_scales = cmd.pow2_scales;
  o.weight_lut = cmd.weight_lut;
  // The objective is mmse's; other range methods have none unless the user asked for one.
  if (o.weight_range.method != RangeMethod::kMmse && vm["weight-objective"].defaulted())
    o.weight_objective = WeightObjective::kWeight;
  // Checks bits, residual, mixed-precision and lookup-table options before any slow step.
  check_quantize_options(o);
  if (cmd.check_options) {
    std::printf("options   valid (--check-options: nothing read or written)\n");
    return 0;
  }

  const int threads = set_threads(cmd.threads);
  const Graph graph = import_torchscript(cmd.model);
  const Preprocess pre = resolve_preprocess(cmd.preprocess, graph.input_channels);
  if (cmd.calib == "synthetic" && graph.batch_norm_nodes().empty())
    fail("model '" + cmd.model + "'", "batch-norm layers whose statistics synthesis can match (--calib synthetic)",
         "none (calibrate such a model on real images: --calib-data DIR)");
  const std::string calib_input = cmd.calib == "synthetic" ? "" : cmd.calib;
  check_output("--out", cmd.out, {{"--model", cmd.model}, {"--calib", calib_input}});
  if (!cmd.json.empty()) check_output("--json", cmd.json, {{"--model", cmd.model}, {"--calib", calib_input}, {"--out", cmd.out}});
  // Both outputs appear together at the end, or neither (core/atomic_file.h).
  StagedOutputs outputs;
  const std::string out_file = outputs.stage(cmd.out);
  const std::string json_file = cmd.json.empty() ? "" : outputs.stage(cmd.json);
  std::printf("model     %s (%zu nodes, %zu batch-norm layers folded)\n", cmd.model.c_str(), graph.nodes.size(),
              graph.batch_norm_nodes().size());
  std::string budgets;
  if (o.size_budget_bits_per_weight > 0) budgets = c10::str(o.size_budget_bits_per_weight, " bits/weight");
  if (o.bops_budget > 0) budgets += (budgets.empty() ? "" : " and ") + c10::str(o.bops_budget, " BOPs");
  if (o.bops_budget_weight_bits > 0)
    budgets += (budgets.empty() ? "" : " and ") + c10::str("the BOPs of W", o.bops_budget_weight_bits, "A", o.bops_budget_activation_bits);
  std::string activations = std::to_string(o.activation_bits);
  if (mixed_activations) {
    activations = "mixed (inputs of convolutions/linear layers from ";
    for (size_t k = 0; k < o.candidate_activation_bits.size(); ++k)
      activations += (k ? "," : "") + std::to_string(o.candidate_activation_bits[k]);
    activations += ", other points " + std::to_string(o.activation_bits) + ")";
  }
  std::printf("scheme    W%s A%s (input 8-bit), first/last layer %s, weights %s, ranges: weights %s (objective %s), "
              "activations %s\n",
              (mixed ? "mixed (budget " + budgets + ")" : std::to_string(o.weight_bits)).c_str(), activations.c_str(),
              mixed ? "chosen by the ILP" : o.first_last_bits ? ("W" + std::to_string(o.first_last_bits)).c_str() : "same", o.per_channel ? "per channel" : "per tensor",
              cmd.weight_range.c_str(), to_string(o.weight_objective), cmd.act_range.c_str());
  std::printf("extras    residual tensors %s, bias correction %s, reconstruction %s, cross-layer equalization %s, "
              "threads %d, seed %llu\n",
              o.residual_budget > 0 ? ("budget " + std::to_string(o.residual_budget)).c_str()
                                    : (std::to_string(o.residual_layers) + " layers").c_str(),
              to_string(o.bias_correction),
              o.reconstruct.method == Reconstruction::kNone
                  ? "none"
                  : (std::string(to_string(o.reconstruct.method)) + " (" + std::to_string(o.reconstruct.iterations) + " steps/layer)").c_str(),
              describe_equalization(o).c_str(), threads, static_cast<unsigned long long>(cmd.seed));
  std::printf("levels    weights %s; scales %s\n",
              o.weight_lut ? (std::string("lookup table per layer of <= 4 bits (2^bits int8 levels, Lloyd fit on the ") +
                              to_string(o.weight_objective) + " objective" +
                              (o.reconstruct.method == Reconstruction::kAdaRound ? ", AdaRound between table levels)" : ")"))
                                 .c_str()
                           : "uniform",
              o.power_of_two_scales ? "powers of two (requantization by shifts)" : "any real");
  std::fflush(stdout);

  at::Tensor calibration;
  std::string calibration_text;
  namespace fs = std::filesystem;
  if (cmd.calib == "synthetic") {
    const std::vector<int64_t> hw = input_size(cmd.preprocess.preset, cmd.input_size);
    DirectOptions d;
    d.count = cmd.calib_count, d.iterations = cmd.synth_iters, d.seed = cmd.seed, d.quiet = cmd.quiet;
    SynthReport synth;
    calibration = synthesize_direct(graph, pre, hw[0], hw[1], d, synth).images;
    calibration_text = "synthetic (direct, " + std::to_string(cmd.calib_count) + " images, " +
                       std::to_string(cmd.synth_iters) + " iterations, BN loss " + std::to_string(synth.initial_bn_loss) +
                       " -> " + std::to_string(synth.final_bn_loss) + ")";
    std::printf("calib     %s, %.1f s\n", calibration_text.c_str(), synth.seconds);
  } else if (fs::is_regular_file(cmd.calib) || fs::is_regular_file(fs::path(cmd.calib) / "images.pt")) {
    const std::string file = fs::is_regular_file(cmd.calib) ? cmd.calib : (fs::path(cmd.calib) / "images.pt").string();
    calibration = load_synth_set(file).images;
    if (calibration.size(1) != graph.input_channels)
      fail("synthetic set '" + file + "'", "images with the model's " + std::to_string(graph.input_channels) +
                                                " input channel(s)",
           std::to_string(calibration.size(1)) + " channel(s)");
    if (calibration.size(0) > cmd.calib_count) calibration = calibration.narrow(0, 0, cmd.calib_count);
    calibration_text = "synthetic set " + file + " (" + std::to_string(calibration.size(0)) + " images)";
    std::printf("calib     %s\n", calibration_text.c_str());
  } else {
    calibration = load_calibration_folder(cmd.calib, cmd.calib_count, pre, cmd.seed);
    calibration_text = "real images from " + cmd.calib + " (" + std::to_string(calibration.size(0)) + ", sampled with seed " +
                       std::to_string(cmd.seed) + ")";
    std::printf("calib     %s\n", calibration_text.c_str());
  }
  std::fflush(stdout);

  check_input_fits(graph, cmd.model, calibration);

  QuantizeReport report;
  QuantizedModel model = quantize_model(graph, calibration, o, report);
  model.config.calibration = calibration_text;
  try {
    save_quantized_model(model, out_file);
  } catch (const Error& e) {
    throw Error(outputs.final_names(e.what()));
  }
  if (o.cross_layer_equalization) print_equalization(report.equalization);

  std::printf("\n%-28s %4s %9s %10s %8s %10s\n", "layer", "bits", "clip/max", "W SQNR dB", "residual", "bias shift");
  for (const LayerReport& l : report.layers)
    std::printf("%-28s %4d %9.3f %10.2f %8s %10.4g\n", l.name.c_str(), l.bits, l.clip_ratio, l.weight_sqnr_db,
                l.residual ? "yes" : "no", l.bias_shift);
  bool any_lut = false;
  for (const LayerReport& l : report.layers) any_lut = any_lut || !l.lut.empty();
  if (any_lut) {
    std::printf("\n%-28s %9s %5s  %s\n", "lookup table", "obj/unif", "iters", "levels by code");
    for (const LayerReport& l : report.layers) {
      if (l.lut.empty()) continue;
      std::string levels;
      for (int v : l.lut) levels += (levels.empty() ? "" : " ") + std::to_string(v);
      std::printf("%-28s %9.3f %5d  %s\n", l.name.c_str(), l.lut_objective_ratio, l.lut_iterations, levels.c_str());
    }
  }
  if (!report.mixed_precision.empty()) {
    std::printf("\nmixed precision (ILP on %s sensitivities%s: predicted divergence %.4g, %.4g BOPs/image%s)\n",
                to_string(o.sensitivity),
                o.sensitivity == MixedSensitivity::kInContext
                    ? c10::str(", in W", context_weight_bits(o), "A", o.activation_bits, ", as excess over each layer's best").c_str()
                    : "",
                report.predicted_divergence, report.bops,
                report.bops_budget > 0 ? c10::str(" of ", report.bops_budget, " allowed").c_str() : "");
    if (mixed_activations)
      std::printf("%-28s %6s %6s  %-56s %s\n", "layer", "W bits", "A bits", "KL at candidate weight bits",
                  "KL at candidate input bits (of the point; * counted here)");
    else
      std::printf("%-28s %6s  %s\n", "layer", "bits", "KL at candidate bits");
    for (const MixedPrecisionLayer& l : report.mixed_precision) {
      std::string row, activation_row;
      for (size_t k = 0; k < l.candidate_bits.size(); ++k)
        row += " " + std::to_string(l.candidate_bits[k]) + ":" + c10::str(l.sensitivity[k]);
      if (!mixed_activations) {
        std::printf("%-28s %6d %s\n", l.name.c_str(), l.chosen_bits, row.c_str());
        continue;
      }
      if (l.activation_sensitivity.size() > 1) {
        activation_row = l.input_point + (l.activation_counted ? "*" : "") + ":";
        for (size_t k = 0; k < l.candidate_activation_bits.size(); ++k)
          activation_row += " " + std::to_string(l.candidate_activation_bits[k]) + ":" + c10::str(l.activation_sensitivity[k]);
      } else {
        activation_row = l.input_point + ": fixed";
      }
      std::printf("%-28s %6d %6d %-57s %s\n", l.name.c_str(), l.chosen_bits, l.chosen_activation_bits, row.c_str(),
                  activation_row.c_str());
    }
    std::printf("\nsize/divergence trade-off (the ILP's optimum per size budget, same BOPs limit)\n%14s %22s %12s\n",
                "bits/weight", "predicted divergence", "BOPs/image");
    for (const ParetoPoint& p : report.pareto)
      if (p.feasible)
        std::printf("%14.1f %22.4g %12.4g\n", p.bits_per_weight, p.predicted_divergence, p.bops);
      else
        std::printf("%14.1f %22s %12s\n", p.bits_per_weight, "infeasible", "-");
  }
  std::printf("\n%-28s %-16s %10s %10s %10s\n", "activation point", "range", "scale", "clip", "A SQNR dB");
  for (const PointReport& p : report.points)
    std::printf("%-28s %-16s %10.4g %10.4g %10.2f\n", p.name.c_str(), p.range.c_str(), p.scale, p.clip,
                p.activation_sqnr_db);
  double parameters = 0, fp32_bytes = 0;
  for (const LayerReport& l : report.layers) parameters += static_cast<double>(l.parameters);
  for (const Node& n : model.graph.nodes)
    for (const auto& [key, value] : n.params) fp32_bytes += static_cast<double>(value.numel()) * 4.0;
  const double artifact_bytes = static_cast<double>(std::filesystem::file_size(out_file));
  std::printf("\nweights   %.0f bits stored (%.3f bits/weight, each layer packed at its own bits)\n"
              "size      artifact %.0f bytes (graph, scales, biases, header included) vs FP32 parameters %.0f bytes "
              "(%.1fx smaller)\nseconds   %.2f (quantization, after calibration data)\n",
              report.weight_bits_total, report.weight_bits_total / std::max(1.0, parameters), artifact_bytes, fp32_bytes,
              fp32_bytes / std::max(1.0, artifact_bytes), report.seconds);

  if (!cmd.json.empty()) {
    nlohmann::json layers = nlohmann::json::array(), points = nlohmann::json::array();
    for (const LayerReport& l : report.layers) {
      layers.push_back({{"name", l.name}, {"bits", l.bits}, {"parameters", l.parameters}, {"clip_ratio", l.clip_ratio},
                        {"normalized_error", l.normalized_error}, {"weight_sqnr_db", l.weight_sqnr_db},
                        {"residual", l.residual}, {"bias_shift", l.bias_shift},
                        {"reconstruction_error_before", l.reconstruction_error_before},
                        {"reconstruction_error_after", l.reconstruction_error_after}, {"rounding_changed", l.rounding_changed},
                        {"input_point", l.input_point}, {"input_bits", l.input_bits}});
      if (!l.lut.empty()) {
        layers.back()["lut"] = l.lut;
        layers.back()["lut_objective_ratio"] = l.lut_objective_ratio;
        layers.back()["lut_iterations"] = l.lut_iterations;
      }
    }
    for (const PointReport& p : report.points)
      points.push_back({{"name", p.name}, {"range", p.range}, {"scale", p.scale}, {"clip", p.clip},
                        {"activation_sqnr_db", std::isfinite(p.activation_sqnr_db) ? p.activation_sqnr_db : 999.0}});
    nlohmann::json j = {{"model", cmd.model}, {"out", cmd.out}, {"wbits", o.weight_bits}, {"abits", o.activation_bits},
                        {"first_last_bits", o.first_last_bits}, {"per_channel", o.per_channel},
                        {"weight_range", cmd.weight_range}, {"act_range", cmd.act_range},
                        {"percentile", cmd.percentile}, {"residual_layers", model.config.residual_layers},
                        {"residual_budget", o.residual_budget}, {"bias_correction", to_string(o.bias_correction)},
                        {"weight_objective", to_string(o.weight_objective)},
                        {"cross_layer_equalization", o.cross_layer_equalization},
                        {"pow2_scales", o.power_of_two_scales}, {"weight_lut", o.weight_lut},
                        {"reconstruct", to_string(o.reconstruct.method)}, {"reconstruct_iters", o.reconstruct.iterations},
                        {"calibration", calibration_text}, {"calibration_count", calibration.size(0)},
                        {"seed", cmd.seed}, {"threads", threads}, {"seconds", report.seconds},
                        {"weight_bits_total", report.weight_bits_total},
                        {"artifact_bytes", artifact_bytes}, {"fp32_parameter_bytes", fp32_bytes}, {"layers", layers}, {"points", points}};
    if (mixed) {
      nlohmann::json rows = nlohmann::json::array();
      for (const MixedPrecisionLayer& l : report.mixed_precision)
        rows.push_back({{"name", l.name}, {"bits", l.chosen_bits}, {"candidate_bits", l.candidate_bits},
                        {"sensitivity", l.sensitivity}, {"input_point", l.input_point},
                        {"activation_bits", l.chosen_activation_bits},
                        {"candidate_activation_bits", l.candidate_activation_bits},
                        {"activation_sensitivity", l.activation_sensitivity},
                        {"activation_sensitivity_counted", l.activation_counted}});
      nlohmann::json pareto = nlohmann::json::array();
      for (const ParetoPoint& p : report.pareto)
        pareto.push_back({{"bits_per_weight", p.bits_per_weight}, {"feasible", p.feasible},
                          {"predicted_divergence", p.predicted_divergence}, {"bops", p.bops}});
      j["mixed_precision"] = {{"size_budget_bits_per_weight", o.size_budget_bits_per_weight}, {"bops_budget", report.bops_budget},
                              {"bops_budget_bits", o.bops_budget_weight_bits > 0 ? nlohmann::json{o.bops_budget_weight_bits, o.bops_budget_activation_bits} : nlohmann::json()},
                              {"candidate_activation_bits", o.candidate_activation_bits},
                              {"sensitivity", to_string(o.sensitivity)},
                              {"context_weight_bits", o.sensitivity == MixedSensitivity::kInContext ? nlohmann::json(context_weight_bits(o)) : nlohmann::json()},
                              {"predicted_divergence", report.predicted_divergence}, {"bops", report.bops}, {"layers", rows},
                              {"pareto", pareto}};
    }
    if (o.cross_layer_equalization) j["equalization"] = equalization_json(report.equalization, o.equalization);
    try {
      write_file(json_file, j.dump(2) + "\n");
    } catch (const Error& e) {
      throw Error(outputs.final_names(e.what()));
    }
  }
  outputs.commit();
  std::printf("wrote     %s%s\n", cmd.out.c_str(), cmd.json.empty() ? "" : (" and " + cmd.json).c_str());
  return 0;
}

}  // namespace dfq::cli
