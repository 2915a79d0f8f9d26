#include "core/import_torchscript.h"

#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <unordered_map>

#include "core/content_hash.h"
#include "core/error.h"
#include "core/import_call.h"

namespace dfq {
namespace {

using JitNode = torch::jit::Node;
using JitValue = torch::jit::Value;

// What a TorchScript value stands for during import: a tensor computed by a
// graph node, a constant, "dimension `dim` of the tensor of node `node`" (from
// aten::size, kept symbolic because the batch size varies), or a list of these.
// aten::size(x) without a dimension is "SizeOf x", unpacked into DimOf entries.
// DimOf carries a divisor: ShuffleNet's channels // groups.
struct Symbol {
  enum class Kind { Tensor, Constant, DimOf, SizeOf, List };
  Kind kind = Kind::Constant;
  int node = -1;
  int64_t dim = 0;
  int64_t divisor = 1;
  c10::IValue constant;
  std::vector<Symbol> items;

  bool same_dim(const Symbol& o) const {
    return kind == Kind::DimOf && o.kind == Kind::DimOf && node == o.node && dim == o.dim && divisor == o.divisor;
  }
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
    graph_.source_sha256 = sha256_of_file(path_);
    import(*jit_graph);
    prune_unreachable();
    check_image_input();
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
      fail("model '" + path_ + "'", "forward() taking one image tensor N x C x H x W",
           "forward() taking " + std::to_string(inputs.size() - 1) + " inputs");
    if (!inputs[1]->type()->isSubtypeOf(*c10::TensorType::get()))
      fail("model '" + path_ + "'", "forward() taking one image tensor N x C x H x W",
           "an input of type " + inputs[1]->type()->str());
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

  std::string unique_name(const JitNode* n, const OpDef& op) {
    std::string scope = scope_of(n);
    // Layers with parameters take their module's name ("layer1.0.conv1").
    const bool owns_module = op.role == QuantRole::kWeighted || op.role == QuantRole::kFolded;
    std::string base = owns_module && !scope.empty() ? scope
                       : scope.empty()               ? std::string(op.name)
                                                     : scope + "." + op.name;
    int& count = names_[base];
    ++count;
    return count == 1 ? base : base + "_" + std::to_string(count);
  }

  Node& append(const JitNode* n, const OpDef& op, std::vector<int> inputs) {
    Node node;
    node.id = static_cast<int>(graph_.nodes.size());
    node.name = unique_name(n, op);
    node.op = &op;
    node.inputs = std::move(inputs);
    graph_.nodes.push_back(std::move(node));
    return graph_.nodes.back();
  }

  // A size computation on traced sizes: DimOf // constant (the tracer makes
  // the constant a 0-dim integer tensor).
  void divide_dim(JitNode* n) {
    const Symbol& a = symbol(n->input(0));
    const Symbol& b = symbol(n->input(1));
    int64_t divisor = 0;
    if (b.kind == Symbol::Kind::Constant && b.constant.isInt()) divisor = b.constant.toInt();
    if (b.kind == Symbol::Kind::Constant && b.constant.isTensor() && b.constant.toTensor().numel() == 1 &&
        !at::isFloatingType(b.constant.toTensor().scalar_type()))
      divisor = b.constant.toTensor().item<int64_t>();
    if (a.kind != Symbol::Kind::DimOf || divisor < 1)
      unsupported(n, "only a tensor size divided by a positive integer constant");
    Symbol s = a;
    s.divisor *= divisor;
    symbols_[n->output()] = s;
  }

  // prim:: plumbing and size arithmetic: values, not graph nodes.
  bool convert_value(JitNode* n, const std::string& kind) {
    if (kind == "prim::Constant") {
      Symbol s;
      s.constant = torch::jit::toIValue(n->output()).value();
      symbols_[n->output()] = s;
    } else if (kind == "prim::ListConstruct") {
      convert_list(n);
    } else if (kind == "prim::ListUnpack") {
      const Symbol& list = symbol(n->input(0));
      for (size_t k = 0; k < n->outputs().size(); ++k) {
        if (list.kind == Symbol::Kind::SizeOf) {
          Symbol d;
          d.kind = Symbol::Kind::DimOf;
          d.node = list.node;
          d.dim = static_cast<int64_t>(k);
          symbols_[n->outputs()[k]] = d;
        } else if (list.kind == Symbol::Kind::List && list.items.size() == n->outputs().size()) {
          symbols_[n->outputs()[k]] = list.items[k];
        } else {
          unsupported(n, "unpacking a value that is not a list of the same length");
        }
      }
    } else if (kind == "aten::size") {
      Symbol s;
      s.kind = n->inputs().size() == 2 ? Symbol::Kind::DimOf : Symbol::Kind::SizeOf;
      Call call(*this, n, nullptr);
      s.node = call.tensor(0);
      if (n->inputs().size() == 2) s.dim = call.int_arg(1);
      if (s.dim < 0) unsupported(n, "size() of a negative dimension");
      s = resolved(s);
      symbols_[n->output()] = s;
    } else if (kind == "prim::NumToTensor" || kind == "aten::Int" || kind == "aten::ScalarImplicit") {
      if (symbol(n->input(0)).kind == Symbol::Kind::Tensor) unsupported(n, "converting a computed tensor to a number");
      alias(n, 0);
    } else if (kind == "aten::floor_divide" || kind == "aten::floordiv") {
      divide_dim(n);
    } else if (kind == "aten::div" && n->inputs().size() == 3 && symbol(n->input(0)).kind == Symbol::Kind::DimOf) {
      divide_dim(n);  // rounding_mode 'floor' or 'trunc': the same for positive sizes
    } else if (kind == "aten::t" || kind == "aten::numpy_T") {
      const Symbol& v = symbol(n->input(0));  // only constant weights are transposed at import
      if (v.kind != Symbol::Kind::Constant || !v.constant.isTensor()) unsupported(n, "transpose of a computed tensor");
      Symbol s;
      s.constant = c10::IValue(v.constant.toTensor().t().contiguous());
      symbols_[n->output()] = s;
    } else if (kind == "aten::dropout" || kind == "aten::dropout_" || kind == "aten::feature_dropout" ||
               kind == "aten::feature_dropout_" || kind == "aten::alpha_dropout" || kind == "aten::alpha_dropout_") {
      if (Call(*this, n, nullptr).bool_arg(2))
        unsupported(n, "dropout in training mode; trace the model after model.eval()");
      alias(n, 0);
    } else if (kind == "aten::contiguous" || kind == "aten::clone" || kind == "aten::detach") {
      if (symbol(n->input(0)).kind != Symbol::Kind::Tensor) unsupported(n, "expected a computed tensor");
      alias(n, 0);
    } else {
      return false;
    }
    return true;
  }

  void convert_list(JitNode* n) {
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
  }

  void alias(const JitNode* n, size_t input) { symbols_[n->output()] = symbol(n->input(input)); }

  void convert(JitNode* n) {
    const std::string kind = n->kind().toQualString();
    if (convert_value(n, kind)) return;
    const OpDef* op = op_for_aten(kind);
    if (!op || !op->import) unsupported(n, "");
    Call call(*this, n, op);
    op->import(call);
    if (!symbols_.count(n->output())) unsupported(n, "the op's import produced no value");
  }

  // A size of a tensor whose dimensions are tracked is that dimension's symbol.
  Symbol resolved(const Symbol& s) const {
    if (s.kind != Symbol::Kind::DimOf) return s;
    const auto it = dims_.find(s.node);
    if (it == dims_.end() || s.dim >= static_cast<int64_t>(it->second.size())) return s;
    Symbol r = it->second[static_cast<size_t>(s.dim)];
    if (r.kind == Symbol::Kind::DimOf) r.divisor *= s.divisor;
    else if (r.kind == Symbol::Kind::Constant && r.constant.isInt() && s.divisor > 1)
      r.constant = c10::IValue(r.constant.toInt() / s.divisor);
    return r;
  }

  // The model reads its input as an image: refuse a vector-input model (a
  // Linear reading the input directly) with what it takes.
  void check_image_input() {
    for (const Node& node : graph_.nodes)
      for (int in : node.inputs)
        if (in == 0 && node.op == Op::Linear)
          fail("model '" + path_ + "'", "an image input N x C x H x W (a CNN)",
               "a model whose first layer, linear '" + node.name + "', reads the input as a vector of " +
                   std::to_string(node.param("weight").size(1)) + " features");
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

  // The ImportCall of one TorchScript node (op null for the importer's own kinds).
  class Call : public ImportCall {
   public:
    Call(Importer& importer, JitNode* n, const OpDef* op)
        : im_(importer), n_(n), op_(op), kind_(n->kind().toQualString()) {}

    const std::string& kind() const override { return kind_; }
    const OpDef& op() const override { return *op_; }
    size_t arg_count() const override { return n_->inputs().size(); }

    const Symbol& arg(size_t i) {
      if (i >= n_->inputs().size()) unsupported("argument " + std::to_string(i) + " missing");
      return im_.symbol(n_->input(i));
    }
    bool is_none(size_t i) override {
      const Symbol& s = arg(i);
      return s.kind == Symbol::Kind::Constant && s.constant.isNone();
    }
    bool is_tensor(size_t i) override { return arg(i).kind == Symbol::Kind::Tensor; }
    int tensor(size_t i) override {
      const Symbol& s = arg(i);
      if (s.kind != Symbol::Kind::Tensor)
        unsupported("argument " + std::to_string(i) + " must be a tensor computed from the input");
      return s.node;
    }
    std::vector<int> tensor_list(size_t i) override {
      const Symbol& list = arg(i);
      if (list.kind != Symbol::Kind::List) unsupported("a list of computed tensors");
      std::vector<int> nodes;
      for (const Symbol& item : list.items) {
        if (item.kind != Symbol::Kind::Tensor) unsupported("a list of computed tensors, not constants");
        nodes.push_back(item.node);
      }
      return nodes;
    }
    const c10::IValue& constant(size_t i) {
      const Symbol& s = arg(i);
      if (s.kind != Symbol::Kind::Constant) unsupported("argument " + std::to_string(i) + " must be a constant");
      return s.constant;
    }
    at::Tensor param(size_t i) override {
      if (is_none(i)) return {};
      const c10::IValue& v = constant(i);
      if (!v.isTensor()) unsupported("argument " + std::to_string(i) + " must be a tensor");
      return v.toTensor().detach().to(at::kFloat).contiguous().clone();
    }
    int64_t int_arg(size_t i) override {
      const c10::IValue& v = constant(i);
      if (!v.isInt()) unsupported("argument " + std::to_string(i) + " must be an integer");
      return v.toInt();
    }
    double real_arg(size_t i) override {
      const c10::IValue& v = constant(i);
      if (v.isDouble()) return v.toDouble();
      if (v.isInt()) return static_cast<double>(v.toInt());
      if (v.isBool()) return v.toBool() ? 1.0 : 0.0;
      unsupported("argument " + std::to_string(i) + " must be a number");
    }
    bool bool_arg(size_t i) override {
      const c10::IValue& v = constant(i);
      if (v.isBool()) return v.toBool();
      if (v.isInt()) return v.toInt() != 0;
      unsupported("argument " + std::to_string(i) + " must be a boolean");
    }
    std::string string_arg(size_t i) override {
      const c10::IValue& v = constant(i);
      if (!v.isString()) unsupported("argument " + std::to_string(i) + " must be a string");
      return v.toStringRef();
    }
    std::vector<int64_t> ints_arg(size_t i) override {
      const Symbol& s = arg(i);
      if (s.kind == Symbol::Kind::Constant) {
        if (s.constant.isIntList()) return s.constant.toIntVector();
        if (s.constant.isInt()) return {s.constant.toInt()};
      }
      if (s.kind == Symbol::Kind::List) {
        std::vector<int64_t> out;
        for (const Symbol& item : s.items) {
          if (item.kind != Symbol::Kind::Constant || !item.constant.isInt())
            unsupported("argument " + std::to_string(i) + " must be a constant integer list");
          out.push_back(item.constant.toInt());
        }
        return out;
      }
      unsupported("argument " + std::to_string(i) + " must be a constant integer list");
    }
    std::vector<double> reals_arg(size_t i) override {
      const Symbol& s = arg(i);
      std::vector<double> out;
      if (s.kind == Symbol::Kind::Constant && s.constant.isDoubleList()) {
        for (double v : s.constant.toDoubleVector()) out.push_back(v);
        return out;
      }
      if (s.kind == Symbol::Kind::List) {
        for (const Symbol& item : s.items) {
          if (item.kind != Symbol::Kind::Constant || !(item.constant.isDouble() || item.constant.isInt()))
            unsupported("argument " + std::to_string(i) + " must be a constant list of numbers");
          out.push_back(item.constant.isDouble() ? item.constant.toDouble() : static_cast<double>(item.constant.toInt()));
        }
        return out;
      }
      unsupported("argument " + std::to_string(i) + " must be a constant list of numbers");
    }
    std::vector<ShapeEntry> shape_arg(size_t i, int reshaped) override;

    Node& add(const OpDef& op, std::vector<int> inputs) override {
      Node& node = im_.append(n_, op, std::move(inputs));
      im_.symbols_[n_->output()] = tensor_symbol(node.id);
      if (!pending_dims_.empty()) im_.dims_[node.id] = std::move(pending_dims_);
      return node;
    }
    Node& add_part(const OpDef& op, std::vector<int> inputs) override { return im_.append(n_, op, std::move(inputs)); }
    void output_list(const std::vector<int>& nodes) override {
      Symbol s;
      s.kind = Symbol::Kind::List;
      for (int id : nodes) s.items.push_back(tensor_symbol(id));
      im_.symbols_[n_->output()] = s;
    }
    void alias(size_t i) override { im_.alias(n_, i); }
    void output_dims_transposed(int input, int64_t dim0, int64_t dim1) override {
      auto it = im_.dims_.find(input);
      if (it == im_.dims_.end()) return;
      std::vector<Symbol> dims = it->second;
      const int64_t rank = static_cast<int64_t>(dims.size());
      if (dim0 < 0) dim0 += rank;
      if (dim1 < 0) dim1 += rank;
      if (dim0 < 0 || dim1 < 0 || dim0 >= rank || dim1 >= rank) return;
      std::swap(dims[static_cast<size_t>(dim0)], dims[static_cast<size_t>(dim1)]);
      im_.dims_[im_.graph_.nodes.back().id] = dims;
    }
    void output_dims_permuted(int input, const std::vector<int64_t>& perm) override {
      auto it = im_.dims_.find(input);
      if (it == im_.dims_.end() || it->second.size() != perm.size()) return;
      std::vector<Symbol> dims;
      for (int64_t p : perm) {
        if (p < 0) p += static_cast<int64_t>(perm.size());
        if (p < 0 || p >= static_cast<int64_t>(perm.size())) return;
        dims.push_back(it->second[static_cast<size_t>(p)]);
      }
      im_.dims_[im_.graph_.nodes.back().id] = dims;
    }
    size_t unpacked_count() override {
      const auto& uses = n_->output()->uses();
      if (uses.size() != 1 || uses[0].user->kind().toQualString() != std::string("prim::ListUnpack")) return 0;
      return uses[0].user->outputs().size();
    }
    [[noreturn]] void unsupported(const std::string& why) override { im_.unsupported(n_, why); }

   private:
    Importer& im_;
    JitNode* n_;
    const OpDef* op_;
    std::string kind_;
    std::vector<Symbol> pending_dims_;
  };

  std::string path_;
  Graph graph_;
  std::unordered_map<const JitValue*, Symbol> symbols_;
  std::unordered_map<std::string, int> names_;
  std::unordered_map<int, std::vector<Symbol>> dims_;  // node -> its dimensions as symbols (reshape outputs)
};

// Entries that are sizes of the reshaped tensor are read at run time; a size
// of another tensor must be one of the reshaped tensor's tracked dimensions
// (or the batch, dimension 0 of every value of a CNN).
std::vector<ShapeEntry> Importer::Call::shape_arg(size_t i, int reshaped) {
  const Symbol& list = arg(i);
  std::vector<Symbol> items;
  if (list.kind == Symbol::Kind::List) {
    items = list.items;
  } else {
    for (int64_t v : ints_arg(i)) {
      Symbol c;
      c.constant = c10::IValue(v);
      items.push_back(c);
    }
  }
  const auto tracked = im_.dims_.find(reshaped);
  std::vector<ShapeEntry> entries;
  std::vector<Symbol> dims;
  for (const Symbol& raw : items) {
    const Symbol item = im_.resolved(raw);
    ShapeEntry e;
    if (item.kind == Symbol::Kind::Constant && item.constant.isInt()) {
      e.value = item.constant.toInt();
    } else if (item.kind == Symbol::Kind::DimOf && item.node == reshaped) {
      e.dim = item.dim, e.divisor = item.divisor;
    } else if (item.kind == Symbol::Kind::DimOf && tracked != im_.dims_.end()) {
      for (size_t d = 0; d < tracked->second.size() && e.dim < 0; ++d)
        if (tracked->second[d].same_dim(item)) e.dim = static_cast<int64_t>(d);
      if (e.dim < 0 && item.dim == 0 && item.divisor == 1) e.dim = 0;
    } else if (item.kind == Symbol::Kind::DimOf && item.dim == 0 && item.divisor == 1) {
      e.dim = 0;  // the batch
    }
    if (e.dim < 0 && !(item.kind == Symbol::Kind::Constant && item.constant.isInt()))
      unsupported("shape entries must be constants or sizes of the reshaped tensor");
    entries.push_back(e);
    dims.push_back(item);
  }
  pending_dims_ = dims;  // the output's dimensions, for a reshape after a later transpose
  return entries;
}

}  // namespace

std::vector<int64_t> ImportCall::pair_arg(size_t i) {
  std::vector<int64_t> v = ints_arg(i);
  if (v.size() == 1) v.push_back(v[0]);
  if (v.size() != 2) unsupported("argument " + std::to_string(i) + " must have 1 or 2 elements");
  return v;
}

Graph import_torchscript(const std::string& path) { return Importer(path).run(); }

}  // namespace dfq
