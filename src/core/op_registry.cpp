// The op table: one line per op (each defined in ops/<name>.cpp, op.h says
// what an OpDef holds). Names and aten:: kinds must be unique (checked once).
#include <unordered_map>

#include "core/error.h"
#include "core/op.h"

namespace dfq {

extern const OpDef kSliceOp, kPadOp, kMaxPool2dOp, kAvgPool2dOp, kAdaptiveAvgPool2dOp, kFlattenOp, kReshapeOp, kCatOp;
extern const OpDef kHardswishOp, kHardsigmoidOp, kSiluOp, kSigmoidOp, kGeluOp, kMulOp, kTransposeOp, kPermuteOp,
    kChunkOp, kUpsampleNearest2dOp, kUpsampleBilinear2dOp, kScaleOp, kLeakyReluOp;

const std::vector<const OpDef*>& all_ops() {
  static const std::vector<const OpDef*> ops = {
      &kInputOp,
      &kConv2dOp,
      &kBatchNormOp,
      &kReluOp,
      &kClampOp,
      &kAddOp,
      &kSliceOp,
      &kPadOp,
      &kMaxPool2dOp,
      &kAvgPool2dOp,
      &kAdaptiveAvgPool2dOp,
      &kFlattenOp,
      &kReshapeOp,
      &kLinearOp,
      &kCatOp,
      &kMeanOp,
      &kHardswishOp,
      &kHardsigmoidOp,
      &kSiluOp,
      &kSigmoidOp,
      &kGeluOp,
      &kMulOp,
      &kTransposeOp,
      &kPermuteOp,
      &kChunkOp,
      &kUpsampleNearest2dOp,
      &kUpsampleBilinear2dOp,
      &kScaleOp,
      &kLeakyReluOp,
  };
  return ops;
}

namespace {

struct Index {
  std::unordered_map<std::string, const OpDef*> by_name, by_aten;
  Index() {
    for (const OpDef* op : all_ops()) {
      if (!by_name.emplace(op->name, op).second) fail("op table", "unique op names", "two ops named " + std::string(op->name));
      for (const char* kind : op->aten)
        if (!by_aten.emplace(kind, op).second) fail("op table", "one op per aten:: kind", std::string(kind) + " twice");
    }
  }
};

const Index& index() {
  static const Index i;
  return i;
}

}  // namespace

const OpDef& op_by_name(const std::string& name) {
  const auto it = index().by_name.find(name);
  if (it == index().by_name.end()) fail("op '" + name + "'", "an op dfq knows (core/op_registry.cpp)", "an unknown name");
  return *it->second;
}

const OpDef* op_for_aten(const std::string& kind) {
  const auto it = index().by_aten.find(kind);
  return it == index().by_aten.end() ? nullptr : it->second;
}

}  // namespace dfq
