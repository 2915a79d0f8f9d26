// chunk: piece `index` of x.chunk(chunks, dim) (attributes chunks, dim,
// index); aten::chunk's pieces become one node each (ShuffleNetV2 splits its
// channels in two). Exact on integers.
#include "core/error.h"
#include "core/import_call.h"
#include "core/op_util.h"
#include "core/onnx_call.h"

namespace dfq {

extern const OpDef kChunkOp;  // defined at the end

namespace {

// aten::chunk(self, chunks, dim), read by a prim::ListUnpack.
void import(ImportCall& c) {
  const int x = c.tensor(0);
  const int64_t chunks = c.int_arg(1), dim = c.int_arg(2);
  const size_t pieces = c.unpacked_count();
  if (pieces == 0) c.unsupported("chunk whose pieces are not unpacked into separate values");
  std::vector<int> nodes;
  for (size_t k = 0; k < pieces; ++k) {
    Node& node = c.add_part(kChunkOp, {x});
    node.attrs.ints = {{"chunks", {chunks}}, {"dim", {dim}}, {"index", {static_cast<int64_t>(k)}}};
    nodes.push_back(node.id);
  }
  c.output_list(nodes);
}

void validate(const Node& n) {
  require_ints(n, {"chunks"}, 1, 1);
  require_ints(n, {"index"}, 1, 0);
  require_ints(n, {"dim"}, 1, INT64_MIN);
  if (n.attrs.i("index") >= n.attrs.i("chunks"))
    fail("graph node '" + n.name + "' attribute 'index'", "less than chunks " + std::to_string(n.attrs.i("chunks")),
         std::to_string(n.attrs.i("index")));
}

at::Tensor run(const Node& n, const std::vector<at::Tensor>& in) {
  const std::vector<at::Tensor> pieces = in[0].chunk(n.attrs.i("chunks"), n.attrs.i("dim"));
  const size_t index = static_cast<size_t>(n.attrs.i("index"));
  if (index >= pieces.size())
    fail("node '" + n.name + "' (chunk)", "piece " + std::to_string(index),
         std::to_string(pieces.size()) + " pieces of " + c10::str(in[0].sizes()));
  return pieces[index];
}

// A Slice of the static extent (torch.chunk's pieces: ceil(size / chunks) each, the last shorter).
void export_onnx(OnnxCall& c) {
  const Attrs& a = c.node().attrs;
  const std::vector<int64_t> in = c.input_shape(0);
  int64_t dim = a.i("dim");
  dim = dim < 0 ? dim + static_cast<int64_t>(in.size()) : dim;
  if (dim == 0) c.unsupported("chunk along the batch dimension");
  const int64_t size = in.at(static_cast<size_t>(dim)), piece = (size + a.i("chunks") - 1) / a.i("chunks");
  const int64_t start = a.i("index") * piece;
  c.add("Slice", {c.input(0), c.ints({start}), c.ints({std::min(start + piece, size)}), c.ints({dim})});
}

OpDef make() {
  OpDef d;
  d.name = "chunk";
  d.role = QuantRole::kExact;
  d.aten = {"aten::chunk", "aten::unsafe_chunk"};
  d.import = import;
  d.validate = validate;
  d.run = run;
  d.describe = [](const Node& n) {
    return std::to_string(n.attrs.i("index") + 1) + "/" + std::to_string(n.attrs.i("chunks")) + " dim " +
           std::to_string(n.attrs.i("dim"));
  };
  d.export_onnx = export_onnx;
  return d;
}

}  // namespace

const OpDef kChunkOp = make();

}  // namespace dfq
