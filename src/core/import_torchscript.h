// Import a traced TorchScript CNN into a dfq::Graph.
#pragma once

#include <string>

#include "core/graph.h"

namespace dfq {

// Loads `path` (a torch.jit.trace/torch.jit.save file), freezes and inlines its
// forward method, and converts the ATen ops into Graph nodes. Dropout,
// contiguous, clone, detach and no-op slices become aliases; parameters are
// copied as contiguous float32 tensors. Throws dfq::Error for a missing or
// unreadable file, a file that is not TorchScript, more than one tensor input
// or output, and any op outside the supported set (the message names the ATen
// op and the module scope it came from, e.g. "aten::sigmoid in scope 'head'").
Graph import_torchscript(const std::string& path);

}  // namespace dfq
