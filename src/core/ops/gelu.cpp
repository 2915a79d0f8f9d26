// gelu: x * Phi(x) (attribute approximate: 0 exact erf form, 1 tanh form, as
// aten::gelu's approximate='none'|'tanh'). A table op like hardswish.
#include <ATen/ops/gelu.h>

#include <cmath>

#include "core/import_call.h"
#include "core/op_util.h"

namespace dfq {

extern const OpDef kGeluOp;  // defined at the end

namespace {

void import(ImportCall& c) {
  const int x = c.tensor(0);
  const std::string approximate = c.arg_count() > 1 ? c.string_arg(1) : "none";
  if (approximate != "none" && approximate != "tanh") c.unsupported("gelu approximation '" + approximate + "'");
  c.add(kGeluOp, {x}).attrs.ints["approximate"] = {approximate == "tanh" ? 1 : 0};
}

double f(const Node& n, double x) {
  if (n.attrs.i("approximate") == 0) return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  const double k = std::sqrt(2.0 / std::acos(-1.0));
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

OpDef make() {
  OpDef d;
  d.name = "gelu";
  d.role = QuantRole::kTable;
  d.aten = {"aten::gelu", "aten::gelu_"};
  d.import = import;
  d.validate = [](const Node& n) { require_ints(n, {"approximate"}, 1, 0); };
  d.run = [](const Node& n, const std::vector<at::Tensor>& in) {
    return at::gelu(in[0], n.attrs.i("approximate") == 0 ? "none" : "tanh");
  };
  d.describe = [](const Node& n) { return std::string(n.attrs.i("approximate") == 0 ? "erf" : "tanh"); };
  d.pointwise = f;
  return d;
}

}  // namespace

const OpDef kGeluOp = make();

}  // namespace dfq
