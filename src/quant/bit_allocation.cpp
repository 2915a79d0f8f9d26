#include "quant/bit_allocation.h"

#include <glpk.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "core/error.h"

namespace dfq {
namespace {

// The three costs, so that checks, rows and totals loop over them.
struct Cost {
  const char* name;
  double BitOption::*of_option;
  double BitBudget::*limit;
  double BitAllocation::*total;
};
constexpr Cost kCosts[] = {{"size_bits", &BitOption::size_bits, &BitBudget::size_bits, &BitAllocation::size_bits},
                           {"bops", &BitOption::bops, &BitBudget::bops, &BitAllocation::bops},
                           {"latency", &BitOption::latency, &BitBudget::latency, &BitAllocation::latency}};

std::string number(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.15g", v);
  return buffer;
}

// GLPK reports invalid arguments by aborting the process, so everything is checked first.
void check_number(double v, const std::string& subject, bool infinity_allowed) {
  if (!(v >= 0) || (std::isinf(v) && !infinity_allowed))  // !(v >= 0) also catches NaN
    fail(subject, infinity_allowed ? "a number >= 0 or infinity" : "a finite number >= 0", number(v));
}

// Layer indices per activation group id (>= 0), in layer order.
std::map<int, std::vector<int>> activation_groups(const std::vector<LayerBitOptions>& layers) {
  std::map<int, std::vector<int>> groups;
  for (size_t l = 0; l < layers.size(); ++l)
    if (layers[l].activation_group >= 0) groups[layers[l].activation_group].push_back(static_cast<int>(l));
  return groups;
}

std::set<int> activation_bits_of(const LayerBitOptions& layer) {
  std::set<int> bits;
  for (const BitOption& o : layer.options) bits.insert(o.activation_bits);
  return bits;
}

void check(const std::vector<LayerBitOptions>& layers, const BitBudget& budget) {
  for (const LayerBitOptions& layer : layers) {
    if (layer.options.empty()) fail("bit options of layer '" + layer.name + "'", "at least one option", "none");
    for (size_t c = 0; c < layer.options.size(); ++c) {
      const std::string subject = "bit option " + std::to_string(c) + " of layer '" + layer.name + "' ";
      check_number(layer.options[c].sensitivity, subject + "sensitivity", false);
      for (const Cost& k : kCosts) check_number(layer.options[c].*k.of_option, subject + k.name, false);
    }
  }
  for (const Cost& k : kCosts) check_number(budget.*k.limit, std::string("bit budget ") + k.name, true);
  // A group whose layers share no activation width has no allocation at all,
  // whatever the budgets: said here rather than as an infeasible budget.
  for (const auto& [group, members] : activation_groups(layers)) {
    std::set<int> common = activation_bits_of(layers[members[0]]);
    std::string names;
    for (int l : members) {
      std::set<int> kept;
      for (int bits : activation_bits_of(layers[l]))
        if (common.count(bits)) kept.insert(bits);
      common = kept;
      names += (names.empty() ? "'" : ", '") + layers[l].name + "'";
    }
    if (common.empty())
      fail("activation group " + std::to_string(group) + " (" + names + ")",
           "layers with at least one activation bit width in common", "none in common");
  }
}

// Every layer at its cheapest option for cost k: no allocation costs less.
double smallest_total(const std::vector<LayerBitOptions>& layers, const Cost& k) {
  double sum = 0;
  for (const LayerBitOptions& layer : layers) {
    double least = INFINITY;
    for (const BitOption& o : layer.options) least = std::min(least, o.*k.of_option);
    sum += least;
  }
  return sum;
}

[[noreturn]] void fail_infeasible(const std::vector<LayerBitOptions>& layers, const BitBudget& budget) {
  std::string limits, smallest;
  for (const Cost& k : kCosts) {
    if (std::isinf(budget.*k.limit)) continue;
    const double least = smallest_total(layers, k);
    if (least > budget.*k.limit)
      fail(std::string("bit budget ") + k.name, "at least " + number(least) + " (every layer at its smallest option)",
           number(budget.*k.limit));
    limits += std::string(limits.empty() ? "" : " and ") + k.name + " <= " + number(budget.*k.limit);
    smallest += std::string(smallest.empty() ? "" : ", ") + k.name + " " + number(least);
  }
  fail("bit budgets", "an allocation within all of them",
       "none within " + limits + " together" + (activation_groups(layers).empty() ? "" : " with equal activation bits per group") +
           " (alone, the smallest achievable are " + smallest + ")");
}

struct Glpk {  // the problem is deleted on every path, exceptions included; GLPK prints nothing meanwhile
  int terminal = glp_term_out(GLP_OFF);
  glp_prob* lp = glp_create_prob();
  ~Glpk() { glp_delete_prob(lp), glp_term_out(terminal); }
};

// GLPK's optimum as option indices, with totals summed in layer order (the
// order callers check budgets in); the columns chosen are appended to `columns`.
BitAllocation read_solution(glp_prob* lp, const std::vector<LayerBitOptions>& layers, std::vector<int>& columns) {
  BitAllocation a;
  int column = 0;
  for (const LayerBitOptions& layer : layers) {
    int chosen = -1;
    for (size_t c = 0; c < layer.options.size(); ++c)
      if (glp_mip_col_val(lp, ++column) > 0.5) chosen = static_cast<int>(c), columns.push_back(column);
    if (chosen < 0) fail("bit allocation ILP", "an option for layer '" + layer.name + "'", "none in GLPK's solution");
    const BitOption& o = layer.options[chosen];
    a.choice.push_back(chosen);
    a.sensitivity += o.sensitivity;
    for (const Cost& k : kCosts) a.*k.total += o.*k.of_option;
  }
  return a;
}

// The optimum, or nothing when no allocation fits. Inputs are checked.
std::optional<BitAllocation> solve(const std::vector<LayerBitOptions>& layers, const BitBudget& budget) {
  for (const Cost& k : kCosts)
    if (smallest_total(layers, k) > budget.*k.limit) return std::nullopt;
  if (layers.empty()) return BitAllocation{};
  const Glpk glpk;
  glp_prob* lp = glpk.lp;
  glp_set_obj_dir(lp, GLP_MIN);
  // Rows and objective of unit scale: GLPK's tolerances are partly absolute
  // (it prunes nodes within tol_obj * (1 + |objective|) of the incumbent), so
  // sensitivities of 1e-8 would all look equal.
  double most_sensitive = 0;
  for (const LayerBitOptions& layer : layers)
    for (const BitOption& o : layer.options) most_sensitive = std::max(most_sensitive, o.sensitivity);
  const int n_layers = static_cast<int>(layers.size());
  glp_add_rows(lp, n_layers);
  for (int l = 1; l <= n_layers; ++l) glp_set_row_bnds(lp, l, GLP_FX, 1, 1);  // one option per layer
  std::vector<const Cost*> budgeted;
  for (const Cost& k : kCosts)
    if (std::isfinite(budget.*k.limit)) {
      budgeted.push_back(&k);
      glp_set_row_bnds(lp, glp_add_rows(lp, 1), GLP_UP, 0, budget.*k.limit > 0 ? 1 : 0);
    }
  std::vector<int> ia{0}, ja{0};  // GLPK's arrays are 1-based
  std::vector<double> ar{0};
  std::vector<int> first_column(static_cast<size_t>(n_layers));  // of each layer's options
  for (int l = 0; l < n_layers; ++l) {
    first_column[static_cast<size_t>(l)] = glp_get_num_cols(lp) + 1;
    for (const BitOption& o : layers[l].options) {
      const int column = glp_add_cols(lp, 1);
      glp_set_col_kind(lp, column, GLP_BV);
      glp_set_obj_coef(lp, column, most_sensitive > 0 ? o.sensitivity / most_sensitive : 0);
      ia.push_back(l + 1), ja.push_back(column), ar.push_back(1);
      for (size_t r = 0; r < budgeted.size(); ++r) {
        const double limit = budget.*budgeted[r]->limit, cost = o.*budgeted[r]->of_option;
        if (cost == 0) continue;
        ia.push_back(n_layers + 1 + static_cast<int>(r)), ja.push_back(column), ar.push_back(limit > 0 ? cost / limit : cost);
      }
    }
  }
  // Coupling: the first layer of a group and each other one put the same
  // weight (0 or 1) on every activation width, so they pick the same width.
  // A width only one of the two offers gets an equality that forbids it.
  for (const auto& [group, members] : activation_groups(layers)) {
    const int f = members[0];
    for (size_t m = 1; m < members.size(); ++m) {
      const int l = members[m];
      std::set<int> widths = activation_bits_of(layers[f]);
      for (int bits : activation_bits_of(layers[l])) widths.insert(bits);
      for (int bits : widths) {
        const int row = glp_add_rows(lp, 1);
        glp_set_row_bnds(lp, row, GLP_FX, 0, 0);
        for (int side : {f, l})
          for (size_t c = 0; c < layers[side].options.size(); ++c)
            if (layers[side].options[c].activation_bits == bits)
              ia.push_back(row), ja.push_back(first_column[static_cast<size_t>(side)] + static_cast<int>(c)),
                  ar.push_back(side == f ? 1 : -1);
      }
    }
  }
  glp_load_matrix(lp, static_cast<int>(ar.size()) - 1, ia.data(), ja.data(), ar.data());
  glp_iocp parm;
  glp_init_iocp(&parm);
  parm.presolve = GLP_ON;  // glp_intopt then solves the LP relaxation itself
  parm.msg_lev = GLP_MSG_OFF;
  parm.tol_int = 1e-10;  // default 1e-5 takes x = 1 - 1e-6 for 1: a layer's option over budget by 1e-6 of its size
  parm.tol_obj = 1e-12;  // default 1e-7 prunes nodes that could still improve the incumbent by 1e-7
  // GLPK's tolerances (the presolver's, 1e-5, are fixed) only ever admit
  // allocations slightly over a budget, never exclude one within it. So an
  // allocation over a budget is cut off (sum of its x <= layers - 1) and the
  // problem solved again: the first one within every budget is the optimum.
  for (int cuts = 0;; ++cuts) {
    const int ret = glp_intopt(lp, &parm);
    if (ret == GLP_ENOPFS) return std::nullopt;  // the presolver found even the relaxation infeasible
    if (ret != 0) fail("bit allocation ILP", "GLPK's glp_intopt to succeed", "error code " + std::to_string(ret));
    const int status = glp_mip_status(lp);
    if (status == GLP_NOFEAS) return std::nullopt;
    if (status != GLP_OPT) fail("bit allocation ILP", "an optimal solution from GLPK", "status " + std::to_string(status));
    std::vector<int> chosen_columns{0};  // 1-based, for the cut
    const BitAllocation a = read_solution(lp, layers, chosen_columns);
    for (const auto& [group, members] : activation_groups(layers))  // exact equalities on binaries: a GLPK failure otherwise
      for (int l : members)
        if (layers[l].options[a.choice[l]].activation_bits != layers[members[0]].options[a.choice[members[0]]].activation_bits)
          fail("bit allocation ILP", "equal activation bits in activation group " + std::to_string(group),
               "layers '" + layers[members[0]].name + "' and '" + layers[l].name + "' differ in GLPK's solution");
    if (std::all_of(budgeted.begin(), budgeted.end(), [&](const Cost* k) { return a.*k->total <= budget.*k->limit; }))
      return a;
    if (cuts == 100) fail("bit allocation ILP", "an allocation within the budgets", "GLPK's 100 best just above them");
    const int row = glp_add_rows(lp, 1);
    const std::vector<double> ones(chosen_columns.size(), 1.0);
    glp_set_mat_row(lp, row, n_layers, chosen_columns.data(), ones.data());
    glp_set_row_bnds(lp, row, GLP_UP, 0, n_layers - 1);
  }
}

}  // namespace

BitAllocation allocate_bits(const std::vector<LayerBitOptions>& layers, const BitBudget& budget) {
  check(layers, budget);
  std::optional<BitAllocation> a = solve(layers, budget);
  if (!a) fail_infeasible(layers, budget);
  return *a;
}

std::vector<ParetoRow> pareto_by_size(const std::vector<LayerBitOptions>& layers,
                                      const std::vector<double>& size_budgets, const BitBudget& other_limits) {
  BitBudget budget = other_limits;
  budget.size_bits = INFINITY;
  check(layers, budget);
  std::vector<ParetoRow> rows;
  for (size_t i = 0; i < size_budgets.size(); ++i) {
    const std::string subject = "size budget " + std::to_string(i);
    check_number(size_budgets[i], subject, true);
    if (i > 0 && size_budgets[i] < size_budgets[i - 1])
      fail(subject, "at least the previous one, " + number(size_budgets[i - 1]), number(size_budgets[i]));
    budget.size_bits = size_budgets[i];
    std::optional<BitAllocation> a = solve(layers, budget);
    rows.push_back({size_budgets[i], a.has_value(), a.value_or(BitAllocation{})});
  }
  return rows;
}

}  // namespace dfq
