#include "core/execute.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <sstream>

#include "core/error.h"

namespace dfq {
namespace {

std::string shape_string(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

at::Tensor run_clamp(const at::Tensor& x, double lo, double hi) {
  if (lo == 0.0 && std::isinf(hi)) return at::relu(x);
  if (std::isinf(lo)) return at::clamp_max(x, hi);
  if (std::isinf(hi)) return at::clamp_min(x, lo);
  return at::clamp(x, lo, hi);
}

at::Tensor run_reshape(const Node& node, const at::Tensor& x) {
  std::vector<int64_t> shape = node.attrs.list("shape");
  const std::vector<int64_t>& from = node.attrs.list("shape_from_input");
  for (size_t i = 0; i < shape.size(); ++i)
    if (from[i] >= 0) shape[i] = x.size(from[i]);
  return x.reshape(shape);
}

}  // namespace

at::Tensor run_node(const Node& node, const std::vector<at::Tensor>& in) {
  const Attrs& a = node.attrs;
  switch (node.op) {
    case Op::Input: return in.at(0);
    case Op::Conv2d:
      return at::conv2d(in[0], node.param("weight"), node.optional_param("bias"), a.list("stride"), a.list("padding"),
                        a.list("dilation"), a.i("groups"));
    case Op::BatchNorm:
      return at::batch_norm(in[0], node.param("weight"), node.param("bias"), node.param("running_mean"),
                            node.param("running_var"), /*training=*/false, /*momentum=*/0.0, a.f("eps"),
                            /*cudnn_enabled=*/true);
    case Op::ReLU: return at::relu(in[0]);
    case Op::Clamp: return run_clamp(in[0], a.f("min"), a.f("max"));
    case Op::Add: {
      const double alpha = a.f("alpha");
      return alpha == 1.0 ? at::add(in[0], in[1]) : at::add(in[0], in[1], alpha);
    }
    case Op::Slice: return in[0].slice(a.i("dim"), a.i("start"), a.i("end"), a.i("step"));
    case Op::Pad: return at::constant_pad_nd(in[0], a.list("pads"), a.f("value"));
    case Op::MaxPool2d:
      return at::max_pool2d(in[0], a.list("kernel"), a.list("stride"), a.list("padding"), a.list("dilation"),
                            a.i("ceil_mode") != 0);
    case Op::AvgPool2d: {
      const int64_t divisor = a.i("divisor_override");
      return at::avg_pool2d(in[0], a.list("kernel"), a.list("stride"), a.list("padding"), a.i("ceil_mode") != 0,
                            a.i("count_include_pad") != 0,
                            divisor > 0 ? c10::optional<int64_t>(divisor) : c10::nullopt);
    }
    case Op::AdaptiveAvgPool2d: return at::adaptive_avg_pool2d(in[0], a.list("output_size"));
    case Op::Flatten: return at::flatten(in[0], a.i("start_dim"), a.i("end_dim"));
    case Op::Reshape: return run_reshape(node, in[0]);
    case Op::Linear: return at::linear(in[0], node.param("weight"), node.optional_param("bias"));
    case Op::Cat: return at::cat(in, a.i("dim"));
    case Op::Mean: return at::mean(in[0], a.list("dims"), a.i("keepdim") != 0);
  }
  fail("node '" + node.name + "'", "a known op", "op code " + std::to_string(static_cast<int>(node.op)));
}

void use_channels_last(Graph& graph) {
  for (Node& node : graph.nodes)
    if (node.op == Op::Conv2d) node.params["weight"] = node.param("weight").contiguous(at::MemoryFormat::ChannelsLast);
}

at::Tensor to_channels_last(const at::Tensor& input) {
  return input.dim() == 4 ? input.contiguous(at::MemoryFormat::ChannelsLast) : input;
}

at::Tensor forward(const Graph& graph, const at::Tensor& input, Observer* observer) {
  if (input.dim() != 4 || (graph.input_channels > 0 && input.size(1) != graph.input_channels))
    fail("model input", "N x " + std::to_string(graph.input_channels) + " x H x W", shape_string(input));
  const std::vector<int> last_use = graph.last_uses();
  std::vector<at::Tensor> values(graph.nodes.size());
  std::vector<at::Tensor> args;
  for (const Node& node : graph.nodes) {
    args.clear();
    for (int id : node.inputs) args.push_back(values[static_cast<size_t>(id)]);
    at::Tensor out;
    if (node.op == Op::Input) {
      out = input;
    } else if (node.op == Op::ReLU && observer == nullptr && !at::GradMode::is_enabled() &&
               last_use[static_cast<size_t>(node.inputs[0])] == node.id && node.inputs[0] != 0 &&
               args[0].use_count() == 2 && args[0].storage().use_count() == 1) {
      // Nothing else can see the input (no observer, no autograd, last reader, not
      // the caller's tensor, no view shares its storage): rectify in place.
      out = at::relu_(args[0]);
    } else if (observer == nullptr || !observer->compute_node(node, args, out)) {
      try {
        out = run_node(node, args);
      } catch (const c10::Error& e) {
        std::string shapes;
        for (const at::Tensor& t : args) shapes += (shapes.empty() ? "" : ", ") + shape_string(t);
        fail("node '" + node.name + "' (" + op_name(node.op) + ")", "inputs it can compute on",
             shapes + ": " + std::string(e.what_without_backtrace()).substr(0, 200));
      }
    }
    if (observer) observer->after_node(node, args, out);
    values[static_cast<size_t>(node.id)] = std::move(out);
    for (int id : node.inputs)
      if (last_use[static_cast<size_t>(id)] == node.id) values[static_cast<size_t>(id)].reset();
  }
  return values[static_cast<size_t>(graph.output)];
}

}  // namespace dfq
