// The bit-allocation ILP against references that need no solver: exhaustive
// enumeration on small instances, a dynamic program over integer sizes on a
// larger one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "quant/bit_allocation.h"
#include "test_util.h"

using namespace dfq;
using dfq::testing::error_of;

namespace {

std::vector<LayerBitOptions> random_layers(int layers, int options, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<LayerBitOptions> result(layers);
  for (int l = 0; l < layers; ++l) {
    result[l].name = "layer" + std::to_string(l);
    for (int c = 0; c < options; ++c)
      result[l].options.push_back({8 - c, 8, u(rng), 1 + 99 * u(rng), 1 + 999 * u(rng), 10 * u(rng)});
  }
  return result;
}

struct Totals {
  double sensitivity = 0, size_bits = 0, bops = 0, latency = 0;
  bool within(const BitBudget& b) const { return size_bits <= b.size_bits && bops <= b.bops && latency <= b.latency; }
};

Totals totals_of(const std::vector<LayerBitOptions>& layers, const std::vector<int>& choice) {
  Totals t;
  for (size_t l = 0; l < layers.size(); ++l) {
    const BitOption& o = layers[l].options.at(choice.at(l));
    t.sensitivity += o.sensitivity, t.size_bits += o.size_bits, t.bops += o.bops, t.latency += o.latency;
  }
  return t;
}

// Whether the layers of every activation group chose equal activation bits.
bool coupled(const std::vector<LayerBitOptions>& layers, const std::vector<int>& choice) {
  std::map<int, int> bits_of_group;
  for (size_t l = 0; l < layers.size(); ++l) {
    if (layers[l].activation_group < 0) continue;
    const int bits = layers[l].options.at(choice.at(l)).activation_bits;
    if (bits_of_group.emplace(layers[l].activation_group, bits).first->second != bits) return false;
  }
  return true;
}

// The reference: every one of prod(options) allocations (those that respect
// the activation groups). Infinity when none fits.
double brute_force_optimum(const std::vector<LayerBitOptions>& layers, const BitBudget& budget) {
  std::vector<int> choice(layers.size(), 0);
  double best = INFINITY;
  while (true) {
    const Totals t = totals_of(layers, choice);
    if (t.within(budget) && coupled(layers, choice)) best = std::min(best, t.sensitivity);
    size_t l = 0;  // next allocation, as a mixed-radix counter
    while (l < layers.size() && ++choice[l] == static_cast<int>(layers[l].options.size())) choice[l++] = 0;
    if (l == layers.size()) return best;
  }
}

// Smallest and largest achievable total of one cost.
std::pair<double, double> cost_range(const std::vector<LayerBitOptions>& layers, double BitOption::*cost) {
  double lo = 0, hi = 0;
  for (const LayerBitOptions& layer : layers) {
    auto by_cost = [cost](const BitOption& a, const BitOption& b) { return a.*cost < b.*cost; };
    lo += (*std::min_element(layer.options.begin(), layer.options.end(), by_cost)).*cost;
    hi += (*std::max_element(layer.options.begin(), layer.options.end(), by_cost)).*cost;
  }
  return {lo, hi};
}

// Checks `a` against the reference optimum for `budget`; returns whether the budget bound.
bool expect_optimal(const std::vector<LayerBitOptions>& layers, const BitBudget& budget, const BitAllocation& a) {
  const double reference = brute_force_optimum(layers, budget);
  EXPECT_TRUE(std::isfinite(reference)) << "the solver found an allocation where enumeration found none";
  EXPECT_EQ(a.choice.size(), layers.size());
  const Totals t = totals_of(layers, a.choice);
  EXPECT_TRUE(t.within(budget)) << "size " << t.size_bits << " bops " << t.bops << " latency " << t.latency;
  EXPECT_TRUE(coupled(layers, a.choice)) << "an activation group with unequal bits";
  EXPECT_NEAR(a.sensitivity, reference, 1e-9);
  EXPECT_NEAR(a.sensitivity, t.sensitivity, 1e-12);
  EXPECT_NEAR(a.size_bits, t.size_bits, 1e-9);
  EXPECT_NEAR(a.bops, t.bops, 1e-9);
  EXPECT_NEAR(a.latency, t.latency, 1e-12);
  return reference > brute_force_optimum(layers, BitBudget{}) + 1e-12;
}

}  // namespace

TEST(BitAllocation, MatchesExhaustiveEnumerationUnderOneTwoAndThreeBudgets) {
  int binding = 0;
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    const std::vector<LayerBitOptions> layers = random_layers(6, 4, seed);
    const auto [size_lo, size_hi] = cost_range(layers, &BitOption::size_bits);
    const auto [bops_lo, bops_hi] = cost_range(layers, &BitOption::bops);
    const auto [latency_lo, latency_hi] = cost_range(layers, &BitOption::latency);
    for (double f : {0.05, 0.25, 0.5, 0.75}) {
      std::vector<BitBudget> budgets(3);
      budgets[0].size_bits = size_lo + f * (size_hi - size_lo);
      budgets[1] = budgets[0];
      budgets[1].bops = bops_lo + (1 - f) * (bops_hi - bops_lo);  // tight size with loose bops and vice versa
      budgets[2] = budgets[1];
      budgets[2].latency = latency_lo + 0.5 * (latency_hi - latency_lo);
      for (const BitBudget& budget : budgets) {
        SCOPED_TRACE("seed " + std::to_string(seed) + " fraction " + std::to_string(f));
        if (!std::isfinite(brute_force_optimum(layers, budget))) {  // every budget alone fits, not all together
          EXPECT_NE(error_of([&] { allocate_bits(layers, budget); }).find("bit budgets"), std::string::npos);
          continue;
        }
        binding += expect_optimal(layers, budget, allocate_bits(layers, budget));
        // The same problem with sensitivities of 1e-9 (a tiny predicted loss)
        // must not look like a tie of all allocations to the solver.
        std::vector<LayerBitOptions> tiny = layers;
        for (LayerBitOptions& layer : tiny)
          for (BitOption& o : layer.options) o.sensitivity *= 1e-9;
        const double reference = brute_force_optimum(tiny, budget);
        EXPECT_NEAR(allocate_bits(tiny, budget).sensitivity, reference, 1e-9 * reference);
      }
    }
  }
  // The comparison means something only if budgets cut off the unconstrained optimum.
  EXPECT_GT(binding, 50);
}

// Options as (weight bits, activation bits) pairs with layers coupled in
// activation groups, as quantize.cpp builds them: size ~ parameters x w,
// BOPs ~ MACs x w x a, sensitivity a weight part plus an activation part
// carried by the group's first layer. Layer 0 reads the 8-bit input (a = 8
// only, no group); some groups also contain a layer offering a = 8 only, which
// forces the whole group to 8.
std::vector<LayerBitOptions> random_coupled_layers(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::uniform_int_distribution<int> group(-1, 2);
  std::vector<LayerBitOptions> result(6);
  std::map<int, std::map<int, double>> activation_part;  // group -> bits -> its sensitivity
  for (int l = 0; l < 6; ++l) {
    LayerBitOptions& layer = result[l];
    layer.name = "layer" + std::to_string(l);
    layer.activation_group = l == 0 ? -1 : group(rng);
    const bool input_only = l == 0 || u(rng) < 0.1;
    const bool first_of_group = layer.activation_group < 0 || !activation_part.count(layer.activation_group);
    const double parameters = 1 + 99 * u(rng), macs = 1 + 99 * u(rng);
    for (int w : {2, 4, 8})
      for (int a : input_only ? std::vector<int>{8} : std::vector<int>{4, 8}) {
        double& part = activation_part[layer.activation_group][a];
        if (part == 0) part = std::pow(4.0, -a) * 100 * u(rng);
        const double sensitivity = std::pow(4.0, -w) * 100 * u(rng) + (first_of_group ? part : 0);
        layer.options.push_back({w, a, sensitivity, parameters * w, macs * w * a, 0});
      }
  }
  return result;
}

TEST(BitAllocation, CoupledActivationGroupsMatchExhaustiveEnumeration) {
  int binding_couplings = 0, cases = 0;
  for (uint32_t seed = 1; seed <= 16; ++seed) {
    const std::vector<LayerBitOptions> layers = random_coupled_layers(seed);
    std::vector<LayerBitOptions> uncoupled = layers;
    for (LayerBitOptions& layer : uncoupled) layer.activation_group = -1;
    const auto [size_lo, size_hi] = cost_range(layers, &BitOption::size_bits);
    const auto [bops_lo, bops_hi] = cost_range(layers, &BitOption::bops);
    for (double f : {0.2, 0.4, 0.7, 1.0}) {
      SCOPED_TRACE("seed " + std::to_string(seed) + " fraction " + std::to_string(f));
      std::vector<BitBudget> budgets(2);
      budgets[0].bops = bops_lo + f * (bops_hi - bops_lo);
      budgets[1] = budgets[0];
      budgets[1].size_bits = size_lo + (1.2 - f) * (size_hi - size_lo) / 1.2;
      for (const BitBudget& budget : budgets) {
        if (!std::isfinite(brute_force_optimum(layers, budget))) {
          EXPECT_NE(error_of([&] { allocate_bits(layers, budget); }).find("bit budget"), std::string::npos);
          continue;
        }
        ++cases;
        expect_optimal(layers, budget, allocate_bits(layers, budget));
        // The couplings matter: without them the optimum is often lower.
        binding_couplings += brute_force_optimum(uncoupled, budget) < brute_force_optimum(layers, budget) - 1e-12;
        // pareto_by_size sees the same couplings.
        const std::vector<ParetoRow> rows = pareto_by_size(layers, {budget.size_bits}, budget);
        ASSERT_EQ(rows.size(), 1u);
        ASSERT_TRUE(rows[0].feasible);
        expect_optimal(layers, budget, rows[0].allocation);
      }
    }
  }
  EXPECT_GT(cases, 60);
  EXPECT_GT(binding_couplings, 10);
}

TEST(BitAllocation, ActivationGroupsWithoutACommonWidthAreRefused) {
  std::vector<LayerBitOptions> layers(3);
  layers[0] = {"conv1", {{4, 4, 1, 1, 1, 0}, {4, 8, 0, 1, 2, 0}}, 0};
  layers[1] = {"shortcut", {{4, 4, 1, 1, 1, 0}}, 0};  // only 4: the group must take 4
  layers[2] = {"fc", {{4, 8, 0, 1, 2, 0}}, 1};         // a group of one is no constraint
  const BitAllocation a = allocate_bits(layers, BitBudget{});
  EXPECT_EQ(a.choice, (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(a.sensitivity, 2);
  layers[1].options[0].activation_bits = 6;
  const std::string message = error_of([&] { allocate_bits(layers, BitBudget{}); });
  EXPECT_NE(message.find("activation group 0 ('conv1', 'shortcut')"), std::string::npos) << message;
  EXPECT_NE(message.find("none in common"), std::string::npos) << message;
}

TEST(BitAllocation, MatchesDynamicProgrammingOnALargerCorrelatedInstance) {
  // 40 layers x 6 bit widths: size = parameters * bits (integers), sensitivity
  // ~ 4^-bits as for quantization noise, so fewer bits cost more sensitivity
  // (the hard, correlated kind of knapsack). 6^40 allocations: no enumeration,
  // but a DP over the integer total size is exact.
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int> parameters(1, 30);
  std::uniform_real_distribution<double> u(0.5, 2);
  std::vector<LayerBitOptions> layers(40);
  for (LayerBitOptions& layer : layers) {
    const int n = parameters(rng);
    const double weight = u(rng);
    for (int bits : {2, 3, 4, 5, 6, 8})
      layer.options.push_back({bits, 8, weight * n * std::pow(4.0, -bits) * u(rng), double(n * bits), 0, 0});
  }
  const auto [lo, hi] = cost_range(layers, &BitOption::size_bits);
  // best[s]: least sensitivity of the layers so far with total size exactly s.
  std::vector<double> best(static_cast<size_t>(hi) + 1, INFINITY);
  best[0] = 0;
  for (const LayerBitOptions& layer : layers) {
    std::vector<double> next(best.size(), INFINITY);
    for (size_t s = 0; s < best.size(); ++s)
      if (std::isfinite(best[s]))
        for (const BitOption& o : layer.options) {
          const size_t t = s + static_cast<size_t>(o.size_bits);
          if (t < next.size()) next[t] = std::min(next[t], best[s] + o.sensitivity);
        }
    best = std::move(next);
  }
  for (double f : {0.0, 0.1, 0.3, 0.5, 0.8, 1.0}) {
    BitBudget budget;
    budget.size_bits = std::floor(lo + f * (hi - lo));
    const double reference = *std::min_element(best.begin(), best.begin() + static_cast<long>(budget.size_bits) + 1);
    const BitAllocation a = allocate_bits(layers, budget);
    EXPECT_NEAR(a.sensitivity, reference, 1e-9 * reference) << "budget " << budget.size_bits;
    EXPECT_LE(totals_of(layers, a.choice).size_bits, budget.size_bits);
  }
}

TEST(BitAllocation, UnlimitedBudgetPicksEachLayersLeastSensitiveOptionSilently) {
  const std::vector<LayerBitOptions> layers = random_layers(10, 5, 77);
  ::testing::internal::CaptureStdout();
  const BitAllocation a = allocate_bits(layers, BitBudget{});
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "");  // GLPK's terminal output is off
  ASSERT_EQ(a.choice.size(), layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto& o = layers[l].options;
    const auto least = std::min_element(o.begin(), o.end(), [](const BitOption& x, const BitOption& y) {
      return x.sensitivity < y.sensitivity;
    });
    EXPECT_EQ(a.choice[l], least - o.begin()) << layers[l].name;
  }
}

TEST(BitAllocation, BudgetsHoldExactlyAtTheirBoundary) {
  // A budget of exactly the smallest size admits exactly the all-smallest allocation.
  const std::vector<LayerBitOptions> layers = random_layers(10, 5, 78);
  BitBudget tight;
  tight.size_bits = cost_range(layers, &BitOption::size_bits).first;
  const BitAllocation smallest = allocate_bits(layers, tight);
  for (size_t l = 0; l < layers.size(); ++l)
    EXPECT_EQ(layers[l].options[smallest.choice[l]].size_bits,
              cost_range({layers[l]}, &BitOption::size_bits).first) << layers[l].name;
  EXPECT_TRUE(allocate_bits({}, tight).choice.empty());

  // One bit short of a million: x = 1 - 1e-6 is integral to GLPK's presolver
  // (and to its default tol_int), yet over the budget.
  const std::vector<LayerBitOptions> big = {{"fc", {{8, 8, 0, 1e6 + 1, 0, 0}, {4, 8, 1, 0, 0, 0}}}};
  tight.size_bits = 1e6;
  EXPECT_EQ(allocate_bits(big, tight).choice, std::vector<int>{1});
  tight.size_bits = 1e6 + 1;
  EXPECT_EQ(allocate_bits(big, tight).choice, std::vector<int>{0});
}

TEST(BitAllocation, InfeasibleBudgetsAndInvalidOptionsThrow) {
  // Layer options in whole bits, so the expected minimum prints exactly.
  std::vector<LayerBitOptions> layers(3);
  for (int l = 0; l < 3; ++l) {
    layers[l].name = "conv" + std::to_string(l);
    for (int bits : {4, 6, 8})
      layers[l].options.push_back({bits, 8, 1.0 / bits, double((l + 2) * bits), double(100 * bits), 0});
  }
  const double min_size = (2 + 3 + 4) * 4, min_bops = 3 * 400;
  BitBudget budget;
  budget.size_bits = min_size - 1;
  std::string message = error_of([&] { allocate_bits(layers, budget); });
  EXPECT_NE(message.find("size_bits"), std::string::npos) << message;
  EXPECT_NE(message.find("at least " + std::to_string(int(min_size))), std::string::npos) << message;
  budget = BitBudget{};
  budget.bops = min_bops - 0.5;
  message = error_of([&] { allocate_bits(layers, budget); });
  EXPECT_NE(message.find("at least " + std::to_string(int(min_bops))), std::string::npos) << message;
  budget.bops = min_bops;
  EXPECT_EQ(allocate_bits(layers, budget).bops, min_bops);

  // Each budget alone fits, both together do not: small size means large BOPs.
  std::vector<LayerBitOptions> crossed(2);
  for (LayerBitOptions& layer : crossed) layer.options = {{4, 8, 1, 1, 10, 0}, {8, 8, 1, 10, 1, 0}};
  budget = BitBudget{};
  budget.size_bits = budget.bops = 11;
  EXPECT_EQ(allocate_bits(crossed, budget).size_bits, 11);
  budget.size_bits = budget.bops = 10.5;
  message = error_of([&] { allocate_bits(crossed, budget); });
  EXPECT_NE(message.find("bit budgets"), std::string::npos) << message;

  std::vector<LayerBitOptions> bad = layers;
  bad[1].options.clear();
  EXPECT_NE(error_of([&] { allocate_bits(bad, BitBudget{}); }).find("conv1"), std::string::npos);
  bad = layers;
  bad[2].options[1].size_bits = -1;
  EXPECT_NE(error_of([&] { allocate_bits(bad, BitBudget{}); }).find("conv2"), std::string::npos);
  bad = layers;
  bad[0].options[0].sensitivity = NAN;
  EXPECT_NE(error_of([&] { allocate_bits(bad, BitBudget{}); }).find("sensitivity"), std::string::npos);
  bad[0].options[0].sensitivity = INFINITY;
  EXPECT_NE(error_of([&] { allocate_bits(bad, BitBudget{}); }).find("sensitivity"), std::string::npos);
  budget = BitBudget{};
  budget.latency = NAN;
  EXPECT_NE(error_of([&] { allocate_bits(layers, budget); }).find("latency"), std::string::npos);
}

TEST(BitAllocation, ParetoTableImprovesWithTheBudgetAndFlagsInfeasibleRows) {
  const std::vector<LayerBitOptions> layers = random_layers(6, 4, 5);
  const auto [size_lo, size_hi] = cost_range(layers, &BitOption::size_bits);
  const auto [bops_lo, bops_hi] = cost_range(layers, &BitOption::bops);
  std::vector<double> sizes;
  for (int i = 0; i <= 20; ++i) sizes.push_back(size_lo - 20 + i * (size_hi - size_lo + 40) / 20);
  BitBudget limits;
  limits.bops = (bops_lo + bops_hi) / 2;
  limits.size_bits = 0;  // ignored: each row sets its own
  const std::vector<ParetoRow> rows = pareto_by_size(layers, sizes, limits);
  ASSERT_EQ(rows.size(), sizes.size());
  int infeasible = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    SCOPED_TRACE("row " + std::to_string(i));
    BitBudget budget = limits;
    budget.size_bits = sizes[i];
    EXPECT_EQ(rows[i].size_budget, sizes[i]);
    EXPECT_EQ(rows[i].feasible, std::isfinite(brute_force_optimum(layers, budget)));
    if (!rows[i].feasible) {
      ++infeasible;
      EXPECT_TRUE(rows[i].allocation.choice.empty());
      continue;
    }
    expect_optimal(layers, budget, rows[i].allocation);
    if (i > 0 && rows[i - 1].feasible) {
      EXPECT_LE(rows[i].allocation.sensitivity, rows[i - 1].allocation.sensitivity);
    }
  }
  EXPECT_GT(infeasible, 0);
  EXPECT_LT(infeasible, static_cast<int>(rows.size()) - 5);
  EXPECT_LT(rows.back().allocation.sensitivity, rows[infeasible].allocation.sensitivity);  // the budget matters
  EXPECT_NE(error_of([&] { pareto_by_size(layers, {200, 100}, limits); }).find("size budget 1"), std::string::npos);
}
