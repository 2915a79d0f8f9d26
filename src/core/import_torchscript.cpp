#include "core/import_torchscript.h"

#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <unordered_map>

#include "core/error.h"

namespace dfq {
namespace {

using JitNode = torch::jit::Node;
using JitValue = torch::jit::Value;

// What a TorchScript value stands for during import: a tensor computed by a
// graph node, a constant, "dimension `dim` of the tensor of node `node`" (from
// aten::size, kept symbolic because the batch size varies), or a list of these.
struct Symbol {
  enum class Kind { Tensor, Constant, DimOf, List };
  Kind kind = Kind::Constant;
  int node = -1;
  int64_t dim = 0;
  c10::IValue constant;
  std::vector<Symbol> items;
};

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// Module path of the op, e.g. "layer1.0.conv1", from the inlined call stack.
std::string scope_of(const JitNode* n) {
  std::string scope;
  if (auto stack = n->callstack()) {
    for (const auto& entry : (*stack)->vec()) {
      const auto& instance = std::get<2>(entry);
      if (!instance) continue;
      if (!scope.empty()) scope += '.';
      scope += instance->instance_name();
    }
  }
  return scope;
}

class Importer {
 public:
  explicit Importer(std::string path) : path_(std::move(path)) {}

  Graph run() {
    torch::jit::Module module = load();
    module.eval();
    std::shared_ptr<torch::jit::Graph> jit_graph;
    try {
      // freeze_module turns parameters into constants without the conv-BN
      // folding that torch::jit::freeze would apply: synthesis needs the BN layers.
      torch::jit::Module frozen = torch::jit::freeze_module(module);
      jit_graph = frozen.get_method("forward").graph();
      torch::jit::Inline(*jit_graph);
    } catch (const c10::Error& e) {
      fail("model '" + path_ + "'", "a module with a forward method that can be frozen",
           "error: " + first_line(e.what_without_backtrace()));
    }
    graph_.source = path_;
    import(*jit_graph);
    prune_unreachable();
    set_input_channels();
    validate(graph_);
    return std::move(graph_);
  }

 private:
  torch::jit::Module load() {
    namespace fs = std::filesystem;
    const std::string subject = "model '" + path_ + "'";
    std::error_code ec;
    if (!fs::exists(path_, ec)) fail(subject, "an existing TorchScript file", "no such file");
    if (!fs::is_regular_file(path_, ec)) fail(subject, "a regular file", "a directory or special file");
    if (!std::ifstream(path_).good()) fail(subject, "a readable file", "permission denied");
    try {
      return torch::jit::load(path_, torch::kCPU);
    } catch (const c10::Error& e) {
      fail(subject, "a TorchScript archive (torch.jit.trace + torch.jit.save)",
           "a file TorchScript cannot load (" + first_line(e.what_without_backtrace()) + ")");
    }
  }

  void import(torch::jit::Graph& g) {
    auto inputs = g.inputs();
    // inputs[0] is the module itself.
    if (inputs.size() != 2)
      fail("model '" + path_ + "'", "forward() with one tensor input",
           std::to_string(inputs.size() - 1) + " inputs");
    Node input;
    input.id = 0;
    input.name = "input";
    input.op = Op::Input;
    graph_.nodes.push_back(input);
    names_["input"] = 1;
    symbols_[inputs[1]] = tensor_symbol(0);

    for (JitNode* n : g.nodes()) convert(n);

    auto outputs = g.outputs();
    if (outputs.size() != 1 || symbol(outputs[0]).kind != Symbol::Kind::Tensor)
      fail("model '" + path_ + "'", "forward() returning one tensor", "a tuple, list or non-tensor value");
    graph_.output = symbol(outputs[0]).node;
  }

  static Symbol tensor_symbol(int node) {
    Symbol s;
    s.kind = Symbol::Kind::Tensor;
    s.node = node;
    return s;
  }

  const Symbol& symbol(const JitValue* v) {
    auto it = symbols_.find(v);
    if (it == symbols_.end())
      fail("model '" + path_ + "'", "values defined before use", "undefined value %" + v->debugName());
    return it->second;
  }

  [[noreturn]] void unsupported(const JitNode* n, const std::string& why) {
    std::string scope = scope_of(n);
    throw Error("model '" + path_ + "': unsupported op " + n->kind().toQualString() + " in scope '" +
                (scope.empty() ? "<top level>" : scope) + "'" + (why.empty() ? "" : " (" + why + ")"));
  }

  // --- argument accessors -------------------------------------------------

  int tensor_input(const JitNode* n, size_t i) {
    const Symbol& s = symbol(n->input(i));
    if (s.kind != Symbol::Kind::Tensor)
      unsupported(n, "argument " + std::to_string(i) + " must be a tensor computed from the input");
    return s.node;
  }

  const c10::IValue& constant(const JitNode* n, size_t i) {
    const Symbol& s = symbol(n->input(i));
    if (s.kind != Symbol::Kind::Constant)
      unsupported(n, "argument " + std::to_string(i) + " must be a constant");
    return s.constant;
  }

  bool is_none(const JitNode* n, size_t i) {
    const Symbol& s = symbol(n->input(i));
    return s.kind == Symbol::Kind::Constant && s.constant.isNone();
  }

  // A constant tensor argument as a contiguous float32 copy (undefined if None).
  at::Tensor param(const JitNode* n, size_t i) {
    if (is_none(n, i)) return {};
    const c10::IValue& v = constant(n, i);
    if (!v.isTensor()) unsupported(n, "argument " + std::to_string(i) + " must be a tensor");
    return v.toTensor().detach().to(at::kFloat).contiguous().clone();
  }

  int64_t int_arg(const JitNode* n, size_t i) {
    const c10::IValue& v = constant(n, i);
    if (!v.isInt()) unsupported(n, "argument " + std::to_string(i) + " must be an integer");
    return v.toInt();
  }

  double real_arg(const JitNode* n, size_t i) {
    const c10::IValue& v = constant(n, i);
    if (v.isDouble()) return v.toDouble();
    if (v.isInt()) return static_cast<double>(v.toInt());
    if (v.isBool()) return v.toBool() ? 1.0 : 0.0;
    unsupported(n, "argument " + std::to_string(i) + " must be a number");
  }

  bool bool_arg(const JitNode* n, size_t i) {
    const c10::IValue& v = constant(n, i);
    if (v.isBool()) return v.toBool();
    if (v.isInt()) return v.toInt() != 0;
    unsupported(n, "argument " + std::to_string(i) + " must be a boolean");
  }

  std::vector<int64_t> ints_arg(const JitNode* n, size_t i) {
    const Symbol& s = symbol(n->input(i));
    if (s.kind == Symbol::Kind::Constant) {
      if (s.constant.isIntList()) return s.constant.toIntVector();
      if (s.constant.isInt()) return {s.constant.toInt()};
    }
    if (s.kind == Symbol::Kind::List) {
      std::vector<int64_t> out;
      for (const Symbol& item : s.items) {
        if (item.kind != Symbol::Kind::Constant || !item.constant.isInt())
          unsupported(n, "argument " + std::to_string(i) + " must be a constant integer list");
        out.push_back(item.constant.toInt());
      }
      return out;
    }
    unsupported(n, "argument " + std::to_string(i) + " must be a constant integer list");
  }

  // Expands a 1- or 2-element list to the 2-D value PyTorch means by it.
  std::vector<int64_t> pair_arg(const JitNode* n, size_t i) {
    std::vector<int64_t> v = ints_arg(n, i);
    if (v.size() == 1) v.push_back(v[0]);
    if (v.size() != 2) unsupported(n, "argument " + std::to_string(i) + " must have 1 or 2 elements");
    return v;
  }

  // --- node construction --------------------------------------------------

  std::string unique_name(const JitNode* n, Op op) {
    std::string scope = scope_of(n);
    const bool owns_module = op == Op::Conv2d || op == Op::BatchNorm || op == Op::Linear;
    std::string base = owns_module && !scope.empty() ? scope
                       : scope.empty()               ? std::string(op_name(op))
                                                     : scope + "." + op_name(op);
    int& count = names_[base];
    ++count;
    return count == 1 ? base : base + "_" + std::to_string(count);
  }

  Node& add_node(const JitNode* n, Op op, std::vector<int> inputs) {
    Node node;
    node.id = static_cast<int>(graph_.nodes.size());
    node.name = unique_name(n, op);
    node.op = op;
    node.inputs = std::move(inputs);
    graph_.nodes.push_back(std::move(node));
    symbols_[n->output()] = tensor_symbol(graph_.nodes.back().id);
    return graph_.nodes.back();
  }

  void alias(const JitNode* n, size_t input = 0) { symbols_[n->output()] = symbol(n->input(input)); }

  void add_conv(const JitNode* n, bool underscore_form) {
    // aten::_convolution(input, weight, bias, stride, padding, dilation, transposed,
    //                    output_padding, groups, ...); aten::conv2d(input, weight, bias,
    //                    stride, padding, dilation, groups)
    if (underscore_form && bool_arg(n, 6)) unsupported(n, "transposed convolution");
    int x = tensor_input(n, 0);
    at::Tensor weight = param(n, 1);
    if (!weight.defined() || weight.dim() != 4) unsupported(n, "only 2-D convolutions with constant weights");
    at::Tensor bias = param(n, 2);
    Node& node = add_node(n, Op::Conv2d, {x});
    node.attrs.ints["stride"] = pair_arg(n, 3);
    node.attrs.ints["padding"] = pair_arg(n, 4);
    node.attrs.ints["dilation"] = pair_arg(n, 5);
    node.attrs.ints["groups"] = {int_arg(n, underscore_form ? 8 : 6)};
    node.params["weight"] = weight;
    if (bias.defined()) node.params["bias"] = bias;
  }

  void add_batch_norm(const JitNode* n) {
    // aten::batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn)
    int x = tensor_input(n, 0);
    if (bool_arg(n, 5)) unsupported(n, "batch norm in training mode; trace the model after model.eval()");
    at::Tensor mean = param(n, 3), var = param(n, 4);
    if (!mean.defined() || !var.defined()) unsupported(n, "batch norm without running statistics");
    at::Tensor weight = param(n, 1), bias = param(n, 2);
    if (!weight.defined()) weight = at::ones_like(mean);
    if (!bias.defined()) bias = at::zeros_like(mean);
    Node& node = add_node(n, Op::BatchNorm, {x});
    node.attrs.reals["eps"] = real_arg(n, 7);
    node.params = {{"weight", weight}, {"bias", bias}, {"running_mean", mean}, {"running_var", var}};
  }

  void add_clamp(const JitNode* n, double lo, double hi) {
    Node& node = add_node(n, Op::Clamp, {tensor_input(n, 0)});
    node.attrs.reals["min"] = lo;
    node.attrs.reals["max"] = hi;
  }

  double optional_real(const JitNode* n, size_t i, double none_value) {
    return is_none(n, i) ? none_value : real_arg(n, i);
  }

  void add_linear(const JitNode* n, int x, at::Tensor weight, at::Tensor bias) {
    if (!weight.defined() || weight.dim() != 2) unsupported(n, "linear weight must be a constant matrix");
    Node& node = add_node(n, Op::Linear, {x});
    node.params["weight"] = weight.contiguous();
    if (bias.defined()) node.params["bias"] = bias.contiguous();
  }

  void add_reshape(const JitNode* n) {
    int x = tensor_input(n, 0);
    const Symbol& list = symbol(n->input(1));
    std::vector<int64_t> shape, from_input;
    auto push = [&](const Symbol& item) {
      if (item.kind == Symbol::Kind::Constant && item.constant.isInt()) {
        shape.push_back(item.constant.toInt());
        from_input.push_back(-1);
      } else if (item.kind == Symbol::Kind::DimOf && item.node == x) {
        shape.push_back(-1);
        from_input.push_back(item.dim);
      } else {
        unsupported(n, "shape entries must be constants or sizes of the reshaped tensor");
      }
    };
    if (list.kind == Symbol::Kind::List) {
      for (const Symbol& item : list.items) push(item);
    } else {
      for (int64_t v : ints_arg(n, 1)) shape.push_back(v), from_input.push_back(-1);
    }
    Node& node = add_node(n, Op::Reshape, {x});
    node.attrs.ints["shape"] = shape;
    node.attrs.ints["shape_from_input"] = from_input;
  }

  void convert(JitNode* n) {
    const std::string kind = n->kind().toQualString();
    if (kind == "prim::Constant") {
      Symbol s;
      s.constant = torch::jit::toIValue(n->output()).value();
      symbols_[n->output()] = s;
    } else if (kind == "prim::ListConstruct") {
      Symbol s;
      s.kind = Symbol::Kind::List;
      bool all_constant = true;
      for (JitValue* v : n->inputs()) {
        s.items.push_back(symbol(v));
        all_constant = all_constant && s.items.back().kind == Symbol::Kind::Constant;
      }
      if (all_constant && n->output()->type()->isSubtypeOf(*c10::ListType::ofInts())) {
        std::vector<int64_t> values;
        for (const Symbol& item : s.items) values.push_back(item.constant.toInt());
        Symbol c;
        c.constant = c10::IValue(values);
        symbols_[n->output()] = c;
      } else {
        symbols_[n->output()] = s;
      }
    } else if (kind == "aten::size") {
      if (n->inputs().size() != 2) unsupported(n, "size() without a dimension");
      Symbol s;
      s.kind = Symbol::Kind::DimOf;
      s.node = tensor_input(n, 0);
      s.dim = int_arg(n, 1);
      symbols_[n->output()] = s;
    } else if (kind == "prim::NumToTensor" || kind == "aten::Int" || kind == "aten::ScalarImplicit") {
      const Symbol& s = symbol(n->input(0));
      if (s.kind == Symbol::Kind::Tensor) unsupported(n, "converting a computed tensor to a number");
      alias(n);
    } else if (kind == "aten::_convolution") {
      add_conv(n, true);
    } else if (kind == "aten::conv2d") {
      add_conv(n, false);
    } else if (kind == "aten::batch_norm") {
      add_batch_norm(n);
    } else if (kind == "aten::relu" || kind == "aten::relu_") {
      add_node(n, Op::ReLU, {tensor_input(n, 0)});
    } else if (kind == "aten::relu6" || kind == "aten::relu6_") {
      add_clamp(n, 0.0, 6.0);
    } else if (kind == "aten::hardtanh" || kind == "aten::hardtanh_") {
      add_clamp(n, real_arg(n, 1), real_arg(n, 2));
    } else if (kind == "aten::clamp" || kind == "aten::clamp_") {
      const double inf = std::numeric_limits<double>::infinity();
      add_clamp(n, optional_real(n, 1, -inf), optional_real(n, 2, inf));
    } else if (kind == "aten::add" || kind == "aten::add_") {
      if (symbol(n->input(1)).kind != Symbol::Kind::Tensor) unsupported(n, "adding a constant to a tensor");
      int a = tensor_input(n, 0), b = tensor_input(n, 1);
      double alpha = n->inputs().size() > 2 ? real_arg(n, 2) : 1.0;
      add_node(n, Op::Add, {a, b}).attrs.reals["alpha"] = alpha;
    } else if (kind == "aten::slice") {
      // aten::slice(self, dim, start, end, step)
      int x = tensor_input(n, 0);
      int64_t dim = int_arg(n, 1);
      int64_t start = is_none(n, 2) ? 0 : int_arg(n, 2);
      int64_t end = is_none(n, 3) ? std::numeric_limits<int64_t>::max() : int_arg(n, 3);
      int64_t step = int_arg(n, 4);
      if (step < 1) unsupported(n, "slice step must be positive");
      if (start == 0 && end == std::numeric_limits<int64_t>::max() && step == 1) {
        alias(n);  // x[:, :] style no-op slice
        return;
      }
      Node& node = add_node(n, Op::Slice, {x});
      node.attrs.ints = {{"dim", {dim}}, {"start", {start}}, {"end", {end}}, {"step", {step}}};
    } else if (kind == "aten::pad" || kind == "aten::constant_pad_nd") {
      int x = tensor_input(n, 0);
      double value = 0.0;
      if (kind == "aten::pad") {
        const c10::IValue& mode = constant(n, 2);
        if (!mode.isString() || mode.toStringRef() != "constant") unsupported(n, "only constant padding");
        value = optional_real(n, 3, 0.0);
      } else {
        value = real_arg(n, 2);
      }
      Node& node = add_node(n, Op::Pad, {x});
      node.attrs.ints["pads"] = ints_arg(n, 1);
      node.attrs.reals["value"] = value;
    } else if (kind == "aten::max_pool2d") {
      // (self, kernel_size, stride, padding, dilation, ceil_mode)
      int x = tensor_input(n, 0);
      std::vector<int64_t> kernel = pair_arg(n, 1);
      std::vector<int64_t> stride = ints_arg(n, 2).empty() ? kernel : pair_arg(n, 2);
      Node& node = add_node(n, Op::MaxPool2d, {x});
      node.attrs.ints = {{"kernel", kernel}, {"stride", stride}, {"padding", pair_arg(n, 3)},
                         {"dilation", pair_arg(n, 4)}, {"ceil_mode", {bool_arg(n, 5)}}};
    } else if (kind == "aten::avg_pool2d") {
      // (self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
      int x = tensor_input(n, 0);
      std::vector<int64_t> kernel = pair_arg(n, 1);
      std::vector<int64_t> stride = ints_arg(n, 2).empty() ? kernel : pair_arg(n, 2);
      Node& node = add_node(n, Op::AvgPool2d, {x});
      node.attrs.ints = {{"kernel", kernel},
                         {"stride", stride},
                         {"padding", pair_arg(n, 3)},
                         {"ceil_mode", {bool_arg(n, 4)}},
                         {"count_include_pad", {bool_arg(n, 5)}},
                         {"divisor_override", {is_none(n, 6) ? 0 : int_arg(n, 6)}}};
    } else if (kind == "aten::adaptive_avg_pool2d") {
      int x = tensor_input(n, 0);
      add_node(n, Op::AdaptiveAvgPool2d, {x}).attrs.ints["output_size"] = pair_arg(n, 1);
    } else if (kind == "aten::flatten") {
      int x = tensor_input(n, 0);
      Node& node = add_node(n, Op::Flatten, {x});
      node.attrs.ints = {{"start_dim", {int_arg(n, 1)}}, {"end_dim", {int_arg(n, 2)}}};
    } else if (kind == "aten::view" || kind == "aten::reshape") {
      add_reshape(n);
    } else if (kind == "aten::linear") {
      add_linear(n, tensor_input(n, 0), param(n, 1), param(n, 2));
    } else if (kind == "aten::t" || kind == "aten::numpy_T") {
      const c10::IValue& v = constant(n, 0);  // only constant weights are transposed at import
      if (!v.isTensor()) unsupported(n, "transpose of a non-tensor");
      Symbol s;
      s.constant = c10::IValue(v.toTensor().t().contiguous());
      symbols_[n->output()] = s;
    } else if (kind == "aten::addmm") {
      // addmm(bias, x, W^T, beta, alpha) = beta * bias + alpha * x @ W^T
      int x = tensor_input(n, 1);
      at::Tensor weight_t = param(n, 2);
      if (!weight_t.defined() || weight_t.dim() != 2) unsupported(n, "addmm needs a constant matrix");
      double beta = n->inputs().size() > 3 ? real_arg(n, 3) : 1.0;
      double alpha = n->inputs().size() > 4 ? real_arg(n, 4) : 1.0;
      at::Tensor bias = param(n, 0);
      add_linear(n, x, weight_t.t().contiguous() * alpha, bias.defined() ? bias * beta : bias);
    } else if (kind == "aten::dropout" || kind == "aten::dropout_" || kind == "aten::feature_dropout" ||
               kind == "aten::feature_dropout_" || kind == "aten::alpha_dropout" ||
               kind == "aten::alpha_dropout_") {
      if (bool_arg(n, 2)) unsupported(n, "dropout in training mode; trace the model after model.eval()");
      alias(n);
    } else if (kind == "aten::contiguous" || kind == "aten::clone" || kind == "aten::detach") {
      if (symbol(n->input(0)).kind != Symbol::Kind::Tensor) unsupported(n, "expected a computed tensor");
      alias(n);
    } else if (kind == "aten::cat" || kind == "aten::concat") {
      const Symbol& list = symbol(n->input(0));
      if (list.kind != Symbol::Kind::List) unsupported(n, "cat of a constant list");
      std::vector<int> inputs;
      for (const Symbol& item : list.items) {
        if (item.kind != Symbol::Kind::Tensor) unsupported(n, "cat of constants");
        inputs.push_back(item.node);
      }
      add_node(n, Op::Cat, inputs).attrs.ints["dim"] = {int_arg(n, 1)};
    } else if (kind == "aten::mean") {
      if (n->inputs().size() < 3) unsupported(n, "mean over all dimensions");
      if (n->inputs().size() > 3 && !is_none(n, 3)) unsupported(n, "mean with a dtype");
      int x = tensor_input(n, 0);
      Node& node = add_node(n, Op::Mean, {x});
      node.attrs.ints = {{"dims", ints_arg(n, 1)}, {"keepdim", {bool_arg(n, 2)}}};
    } else {
      unsupported(n, "");
    }
  }

  // Drops nodes the output does not depend on and renumbers the rest.
  void prune_unreachable() {
    std::vector<bool> live(graph_.nodes.size(), false);
    live[0] = true;
    live[static_cast<size_t>(graph_.output)] = true;
    for (size_t i = graph_.nodes.size(); i-- > 0;)
      if (live[i])
        for (int in : graph_.nodes[i].inputs) live[static_cast<size_t>(in)] = true;
    std::vector<int> new_id(graph_.nodes.size(), -1);
    std::vector<Node> kept;
    for (Node& node : graph_.nodes) {
      if (!live[static_cast<size_t>(node.id)]) continue;
      new_id[static_cast<size_t>(node.id)] = static_cast<int>(kept.size());
      node.id = static_cast<int>(kept.size());
      for (int& in : node.inputs) in = new_id[static_cast<size_t>(in)];
      kept.push_back(std::move(node));
    }
    graph_.output = new_id[static_cast<size_t>(graph_.output)];
    graph_.nodes = std::move(kept);
  }

  void set_input_channels() {
    for (const Node& node : graph_.nodes) {
      if (node.op == Op::Conv2d) {
        graph_.input_channels = node.param("weight").size(1) * node.attrs.i("groups");
        return;
      }
      if (node.op == Op::BatchNorm && node.inputs[0] == 0) {
        graph_.input_channels = node.param("running_mean").size(0);
        return;
      }
    }
  }

  std::string path_;
  Graph graph_;
  std::unordered_map<const JitValue*, Symbol> symbols_;
  std::unordered_map<std::string, int> names_;
};

}  // namespace

Graph import_torchscript(const std::string& path) { return Importer(path).run(); }

}  // namespace dfq
