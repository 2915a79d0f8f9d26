#include "report/card.h"

#include <sys/utsname.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/version.h"

namespace dfq {

namespace {

using nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("run file '" + path + "'", "a JSON file written by an earlier stage", "none there");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail("run file '" + path + "'", "valid JSON", e.what());
  }
}

std::string format(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof text, pattern, value);
  return text;
}

// "Intel(R) Xeon(R) ..., 2 cores, Debian GNU/Linux 12 (bookworm), Linux 6.1 x86_64"
std::string describe_machine() {
  std::string cpu = "unknown CPU", os = "unknown OS", line;
  std::ifstream cpuinfo("/proc/cpuinfo");
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  std::ifstream release("/etc/os-release");
  while (std::getline(release, line))
    if (line.rfind("PRETTY_NAME=", 0) == 0) {
      os = line.substr(12);
      if (os.size() >= 2 && os.front() == '"') os = os.substr(1, os.size() - 2);
    }
  utsname u{};
  const std::string kernel = uname(&u) == 0 ? std::string(u.sysname) + " " + u.release + " " + u.machine : "";
  return cpu + ", " + std::to_string(std::thread::hardware_concurrency()) + " cores, " + os + ", " + kernel;
}

// Whether quantize.json's mixed precision chose activation bits too.
bool mixed_activation_bits(const json& q) {
  return q.contains("mixed_precision") && q["mixed_precision"].is_object() &&
         !q["mixed_precision"].value("candidate_activation_bits", json::array()).empty();
}

// Weight bits per layer as "conv1 8, layer1.0.conv1 4, ..." when they differ.
std::string describe_weights(const json& q) {
  const bool per_channel = q.value("per_channel", true);
  std::string text = std::string("symmetric (zero point 0), ") + (per_channel ? "per output channel" : "per tensor");
  if (q.contains("mixed_precision") && !q["mixed_precision"].is_null()) {
    const json& m = q["mixed_precision"];
    text += ", bits per layer chosen by an integer linear program (GLPK) minimizing summed sensitivity (KL of the "
            "logits on the calibration set)";
    if (m.value("size_budget_bits_per_weight", 0.0) > 0)
      text += " under " + format("%.3g", m["size_budget_bits_per_weight"].get<double>()) + " bits/weight";
    if (m.value("bops_budget", 0.0) > 0) text += " under " + format("%.4g", m["bops_budget"].get<double>()) + " BOPs";
  } else {
    text += ", " + std::to_string(q.value("wbits", 0)) + " bits";
  }
  return text;
}

std::vector<std::pair<std::string, std::string>> choices(const json& q, const json& fp32, const json& integer,
                                                         const json* synth, const RunRecord& r) {
  std::vector<std::pair<std::string, std::string>> c;
  c.emplace_back("Weights", describe_weights(q));
  // With mixed activation bits --abits is only the bits of points that feed no convolution: the table below has each point's.
  const bool mixed_activations = mixed_activation_bits(q);
  c.emplace_back("Activations", "per tensor, unsigned after ReLU/ReLU6 and signed otherwise, " +
                                    (mixed_activations ? "bits per tensor chosen with the weights' (see the activation table; " +
                                                             std::to_string(q.value("abits", 0)) +
                                                             " bits where no convolution or linear layer reads)"
                                                       : std::to_string(q.value("abits", 0)) + " bits") +
                                    "; real = scale * (q - zero_point), zero point 0");
  const int first_last = q.value("first_last_bits", 0);
  const bool chosen_by_ilp = q.contains("mixed_precision") && !q["mixed_precision"].is_null();
  c.emplace_back("First and last layer", chosen_by_ilp ? "bits chosen by the integer linear program like every layer's"
                                         : first_last ? std::to_string(first_last) + "-bit weights and outputs"
                                                      : "same bits as the rest");
  std::string input = "8 bits";
  for (const json& p : q.value("points", json::array()))
    if (p.value("name", "") == "input") input = p.value("range", input) + ", scale from the calibration set";
  c.emplace_back("Network input", "quantized once, " + input);
  c.emplace_back("Batch norm", "folded into the preceding convolution's weights and bias before quantization (" +
                                   std::to_string(fp32.value("bn_folded", 0)) + " layers)");
  std::string weight_range = q.value("weight_range", "?");
  if (weight_range == "mmse") weight_range += " (objective: " + q.value("weight_objective", std::string("?")) + ")";
  c.emplace_back("Weight range", weight_range + ", per channel clipping");
  std::string act_range = q.value("act_range", "?");
  if (act_range == "percentile") act_range += " " + format("%g", q.value("percentile", 0.0));
  c.emplace_back("Activation range", act_range + " on the calibration set");
  c.emplace_back("Rounding", "half away from zero, everywhere (quantizer, requantization)");
  c.emplace_back("Residual additions (if any)",
                 "in integers: the branch's int32 accumulator and the shortcut rescaled by dyadic multipliers on one "
                 "shared shift, rounded once per block (the branch's last convolution is no quantization point)");
  std::string engine = "integer-only (" + integer.value("kernels", std::string("fast")) +
                       " kernels): int32 accumulators, dyadic requantization m*2^-s, ReLU/ReLU6 as clamps, other "
                       "pointwise functions (hardswish, SiLU, sigmoid) as tables of one integer per input level, "
                       "integer pooling, products and resampling; only the logits become float, for reporting";
  c.emplace_back("Inference", engine);
  int residual = 0;
  std::string names;
  for (const json& l : q.value("layers", json::array()))
    if (l.value("residual", false)) residual++, names += (names.empty() ? "" : ", ") + l.value("name", "?");
  c.emplace_back("Multi-tensor layers", residual ? std::to_string(residual) + " with a second residual weight tensor (" +
                                                       names + ")"
                                                 : "none");
  c.emplace_back("Bias correction", q.value("bias_correction", std::string("?")));
  const std::string reconstruct = q.value("reconstruct", std::string("none"));
  c.emplace_back("Reconstruction", reconstruct == "none" ? "none"
                                                         : reconstruct + ", " + std::to_string(q.value("reconstruct_iters", 0)) +
                                                               " iterations per layer, on the calibration set");
  std::string mixed = "off (uniform weight bits)";
  if (q.contains("mixed_precision")) {
    const json& m = q["mixed_precision"];
    mixed = m.value("size_budget_bits_per_weight", 0.0) > 0
                ? format("size budget %.3g bits/weight", m["size_budget_bits_per_weight"].get<double>())
                : format("BOPs budget %.4g", m.value("bops_budget", 0.0));
    if (m.value("bops_budget", 0.0) > 0 && m.value("size_budget_bits_per_weight", 0.0) > 0)
      mixed += format(" and BOPs budget %.4g", m.value("bops_budget", 0.0));
    mixed += format(", %.4g BOPs", m.value("bops", 0.0)) +
             (mixed_activations ? ", weights and the activations convolution/linear layers read"
                                : ", weights only (activations at the uniform bits)");
    const std::string where = m.value("sensitivity", std::string("isolated"));
    if (where == "in-context")
      mixed += ", sensitivities measured in context (the rest at W" + std::to_string(m.value("context_weight_bits", 0)) + "A" +
               std::to_string(q.value("abits", 0)) + ")";
    else if (where == "reconstructed")
      mixed += ", sensitivities measured after reconstructing the one layer (the rest float)";
    else
      mixed += ", sensitivities measured in isolation (the rest float)";
  }
  c.emplace_back("Mixed precision", mixed);
  c.emplace_back("Cross-layer equalization", q.value("cross_layer_equalization", false) ? "on" : "off");
  c.emplace_back("Scales", q.value("pow2_scales", false) ? "powers of two (every requantization a rounding shift)"
                                                        : "any real (dyadic requantization)");
  int tables = 0;
  for (const json& l : q.value("layers", json::array())) tables += l.contains("lut");
  c.emplace_back("Weight levels", q.value("weight_lut", false)
                                      ? std::to_string(tables) + " layers with a lookup table (4-bit codes -> 16 int8 levels), the rest uniform"
                                      : "uniform");
  std::string calibration = q.value("calibration", std::string("?"));
  if (synth)
    calibration += "; synthesized by " + synth->value("method", std::string("?")) + ", " +
                   std::to_string(synth->value("iterations", 0)) + " iterations, BN statistics " +
                   synth->value("bn_stats", std::string("?")) + ", distance " +
                   synth->value("bn_distance", std::string("?")) + ", labels " +
                   synth->value("labels", std::string("?")) + format(", BN loss %.3gx lower", synth->value("bn_loss_drop", 0.0));
  c.emplace_back("Calibration data", calibration);
  c.emplace_back("Preprocessing", "preset " + fp32.value("preset", std::string("?")));
  c.emplace_back("Evaluation data", r.data_dir + " (" + std::to_string(fp32.value("images", 0)) + " images)");
  return c;
}

std::string markdown(const json& card) {
  std::ostringstream md;
  const json& res = card["results"];
  md << "# Quantization card: " << card["model"]["name"].get<std::string>() << " " << card["scheme"].get<std::string>() << "\n\n";
  md << "Model `" << card["model"]["path"].get<std::string>() << "`, SHA-256 `" << card["model"]["sha256"].get<std::string>()
     << "`.\n\n## Results\n\n| | top-1 % | top-5 % | images |\n|---|---|---|---|\n";
  for (const char* key : {"fp32", "integer"})
    md << "| " << key << " | " << format("%.2f", res[key]["top1"].get<double>()) << " | "
       << format("%.2f", res[key]["top5"].get<double>()) << " | " << res[key]["images"].get<int64_t>() << " |\n";
  md << "| drop | " << format("%.2f", res["drop_top1"].get<double>()) << " | "
     << format("%.2f", res["drop_top5"].get<double>()) << " | |\n\n## Choices\n\n| | |\n|---|---|\n";
  for (const json& c : card["choices"])
    md << "| " << c["name"].get<std::string>() << " | " << c["value"].get<std::string>() << " |\n";
  md << "\n## Bits per layer\n\n| layer | weight bits | input bits (point read) | residual tensor |\n|---|---|---|---|\n";
  for (const json& l : card["layers"])
    md << "| " << l["name"].get<std::string>() << " | " << l["weight_bits"].get<int>() << " | "
       << (l.contains("activation_bits") ? std::to_string(l["activation_bits"].get<int>()) + " (" +
                                               l["input_point"].get<std::string>() + ")"
                                         : std::string("?"))
       << " | " << (l["residual"].get<bool>() ? "yes" : "no") << " |\n";
  md << "\n| activation | range |\n|---|---|\n";
  for (const json& a : card["activations"])
    md << "| " << a["name"].get<std::string>() << " | " << a["range"].get<std::string>() << " |\n";
  const json& s = card["sizes"];
  md << "\n## Sizes\n\nFP32 model file " << s["fp32_file_bytes"].get<int64_t>() << " B (parameters "
     << s["fp32_bytes"].get<int64_t>() << " B); quantized artifact " << s["artifact_bytes"].get<int64_t>()
     << " B.\n\n## Deployment\n\n"
     << (card["onnx"]["file"].is_null()
             ? "Not exported to ONNX: " + card["onnx"]["refused"].get<std::string>() + "\n"
             : "`" + card["onnx"]["file"].get<std::string>() + "`: ONNX QDQ, opset 17, " +
                   std::to_string(card["onnx"]["bytes"].get<int64_t>()) +
                   " B (ONNX Runtime, TensorRT, OpenVINO; computes what `dfq eval --engine simulated` computes).\n")
     << "\n## Stages\n\n| stage | seconds | |\n|---|---|---|\n";
  for (const json& st : card["stages"])
    md << "| " << st["name"].get<std::string>() << " | " << format("%.1f", st["seconds"].get<double>()) << " | "
       << (st["cached"].get<bool>() ? "reused from the cache" : "") << " |\n";
  md << "\n## Reproduce\n\n`" << card["command_line"].get<std::string>() << "`\n\ndfq " << card["tool"]["version"].get<std::string>()
     << " (commit " << card["tool"]["commit"].get<std::string>() << "), seed " << card["seed"].get<uint64_t>() << ", "
     << card["threads"].get<int>() << " threads, " << card["machine"].get<std::string>() << ".\n";
  return md.str();
}

}  // namespace

void write_quantization_card(const std::string& run_dir, const RunRecord& r) {
  const json q = read_json(run_dir + "/quantize.json");
  const json fp32 = read_json(run_dir + "/fp32.json");
  const json integer = read_json(run_dir + "/integer.json");
  json synth;
  if (r.synthesized) synth = read_json(run_dir + "/synth.json");

  json card;
  card["tool"] = {{"name", "dfq"}, {"version", dfq_version()}, {"commit", dfq_git_commit()}};
  card["model"] = {{"path", r.model_path},
                   {"name", std::filesystem::path(r.model_path).stem().string()},
                   {"sha256", r.model_sha256}};
  // The title's scheme: "W4A4", or "W mixed A4" / "W mixed A mixed" when the ILP chose bits. Then wbits is
  // the stored weight bits per weight on average (the accuracy curve's x), and abits is left out when the
  // activations are mixed too: no one width describes them.
  const bool mixed = q.contains("mixed_precision") && q["mixed_precision"].is_object();
  card["wbits"] = q.value("wbits", 0);
  if (mixed) {
    double parameters = 0;
    for (const json& l : q.value("layers", json::array())) parameters += l.value("parameters", 0.0);
    if (parameters > 0) card["wbits"] = std::round(100.0 * q.value("weight_bits_total", 0.0) / parameters) / 100.0;
  }
  if (!mixed_activation_bits(q)) card["abits"] = q.value("abits", 0);
  card["scheme"] = (mixed ? std::string("W mixed ") : "W" + std::to_string(q.value("wbits", 0))) +
                   (mixed_activation_bits(q) ? std::string("A mixed") : "A" + std::to_string(q.value("abits", 0)));
  json list = json::array();
  for (const auto& [name, value] : choices(q, fp32, integer, r.synthesized ? &synth : nullptr, r))
    list.push_back({{"name", name}, {"value", value}});
  card["choices"] = list;
  json layers = json::array(), activations = json::array();
  for (const json& l : q.value("layers", json::array())) {
    json layer = {{"name", l.value("name", "?")}, {"weight_bits", l.value("bits", 0)}, {"residual", l.value("residual", false)}};
    if (l.value("input_bits", 0) > 0) layer["activation_bits"] = l["input_bits"], layer["input_point"] = l["input_point"];
    layers.push_back(layer);
  }
  for (const json& p : q.value("points", json::array()))
    activations.push_back({{"name", p.value("name", "?")}, {"range", p.value("range", "?")}});
  card["layers"] = layers;
  card["activations"] = activations;
  const auto result = [](const json& e) {
    return json{{"top1", e.value("top1", 0.0)}, {"top5", e.value("top5", 0.0)}, {"images", e.value("images", 0)},
                {"images_per_second", e.value("images_per_second", 0.0)}};
  };
  card["results"] = {{"fp32", result(fp32)},
                     {"integer", result(integer)},
                     {"drop_top1", fp32.value("top1", 0.0) - integer.value("top1", 0.0)},
                     {"drop_top5", fp32.value("top5", 0.0) - integer.value("top5", 0.0)}};
  std::error_code ec;
  const auto file_bytes = std::filesystem::file_size(r.model_path, ec);
  card["sizes"] = {{"fp32_file_bytes", ec ? 0 : static_cast<int64_t>(file_bytes)},
                   {"fp32_bytes", static_cast<int64_t>(q.value("fp32_parameter_bytes", 0.0))},
                   {"artifact_bytes", static_cast<int64_t>(q.value("artifact_bytes", 0.0))},
                   {"weight_bits_total", static_cast<int64_t>(q.value("weight_bits_total", 0.0))}};
  json stages = json::array();
  double total = 0;
  for (const RunStage& s : r.stages) {
    stages.push_back({{"name", s.name}, {"seconds", s.seconds}, {"cached", s.cached}});
    total += s.seconds;
  }
  card["stages"] = stages;
  card["onnx"] = r.onnx_file.empty() ? json{{"file", nullptr}, {"refused", r.onnx_refusal}}
                                     : json{{"file", r.onnx_file}, {"bytes", r.onnx_bytes}, {"opset", 17}};
  card["seconds_total"] = total;
  card["seed"] = r.seed;
  card["threads"] = r.threads;
  card["machine"] = describe_machine();
  card["command_line"] = r.command_line;
  write_file_atomic(run_dir + "/card.json", card.dump(2) + "\n");
  write_file_atomic(run_dir + "/card.md", markdown(card));
}

}  // namespace dfq
