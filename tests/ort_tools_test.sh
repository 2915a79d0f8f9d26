#!/usr/bin/env bash
# tools/ort_eval.js and tools/compare_predictions.py, end to end, on tiny ONNX
# models made here with python3-onnx (opset 17):
#   tiny.onnx  input [N,3,4,4] -> QuantizeLinear/DequantizeLinear (uint8) ->
#              Conv 3x3 (int8 per-channel DequantizeLinear weight, axis 0;
#              int32 DequantizeLinear bias) -> Relu -> GlobalAveragePool ->
#              Flatten -> [N,10]
#   int.onnx   the same with a QuantizeLinear/DequantizeLinear pair after the
#              Conv, which ORT fuses into a QLinearConv (an integer kernel)
# and a hand-written `dfq eval --save-inputs` pair FILE / FILE.json (numpy,
# fixed seed; N = 37, not a multiple of the batch; one path with a comma and
# quotes). Checks, against numpy (quantization with round-half-even and
# saturation, as ONNX defines it):
#   - every row's prediction and top5 of the CSV, and the logits within 1e-5
#     of the largest logit; the JSON line (images, top-1);
#   - --profile-nodes: the op types ORT ran (--opt disabled: the model's own
#     nodes; int.onnx: a QLinearConv), and that --session-config entries reach
#     ORT (session.disable_quant_qdq=1: no QLinearConv);
#   - --exact: int.onnx's logits within one output quantum of numpy;
#   - --bench; compare_predictions.py counts (identical / one row changed /
#     different paths);
#   - bad inputs refused with one line and no CSV: inputs truncated by 4
#     bytes, a wrong format in FILE.json.
# usage: ort_tools_test.sh SOURCE_DIR
# Exit 77 (ctest: skipped) when onnxruntime-node is not installed
# (tools/ort/node_modules/onnxruntime-node: scripts/install-ort.sh) or node is
# missing.
set -uo pipefail
src="$1"
ort_eval="$src/tools/ort_eval.js"
compare="$src/tools/compare_predictions.py"
py=/usr/bin/python3

if [ ! -d "$src/tools/ort/node_modules/onnxruntime-node" ]; then
  echo "skipped: onnxruntime-node is not installed in tools/ort/node_modules (run scripts/install-ort.sh)"
  exit 77
fi
if ! command -v node >/dev/null 2>&1; then
  echo "skipped: node not found"
  exit 77
fi
if ! "$py" -c "import numpy, onnx" 2>/dev/null; then
  echo "FAILED  $py cannot import numpy and onnx (scripts/install-python-deps.sh)"
  exit 1
fi

tmp="$(mktemp -d)"
[ -n "${KEEP_TMP:-}" ] && echo "keeping $tmp" || trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok      $1"; }
bad() { failed=$((failed + 1)); echo "FAILED  $1"; [ -n "${2:-}" ] && [ -f "$2" ] && sed 's/^/        | /' "$2" | head -20; return 0; }
# run NAME command...: the command must succeed (its stdout in $tmp/out, stderr in $tmp/err).
run() {
  local name="$1"
  shift
  if "$@" >"$tmp/out" 2>"$tmp/err"; then ok "$name"; else cat "$tmp/err" >>"$tmp/out"; bad "$name" "$tmp/out"; fi
}
# check NAME command...: a checking command (python below) must succeed; its output shown when not.
check() {
  local name="$1"
  shift
  if "$@" >"$tmp/check" 2>&1; then ok "$name"; else bad "$name" "$tmp/check"; fi
}

# ---- the models, the inputs and numpy's expected logits ---------------------
cat >"$tmp/make.py" <<'EOF'
import json, sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
rng = np.random.default_rng(20240611)
N, C, H, W, K = 37, 3, 4, 4, 10
x_scale, x_zp = np.float32(2.0 ** -6), np.uint8(128)  # a power of two: x / x_scale is exact in float32
y_scale, y_zp = np.float32(0.05), np.uint8(100)
wq = rng.integers(-127, 128, size=(K, C, 3, 3)).astype(np.int8)
w_scale = (rng.uniform(0.5, 2.0, size=K) * 0.01).astype(np.float32)
bq = rng.integers(-3000, 3000, size=K).astype(np.int32)
b_scale = (x_scale * w_scale).astype(np.float32)

def model(path, integer):
    inits = [
        numpy_helper.from_array(np.array(x_scale), "x_scale"),
        numpy_helper.from_array(np.array(x_zp), "x_zp"),
        numpy_helper.from_array(wq, "w_q"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(K, np.int8), "w_zp"),
        numpy_helper.from_array(bq, "b_q"),
        numpy_helper.from_array(b_scale, "b_scale"),
        numpy_helper.from_array(np.zeros(K, np.int32), "b_zp"),
        numpy_helper.from_array(np.array(y_scale), "y_scale"),
        numpy_helper.from_array(np.array(y_zp), "y_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x_scale", "x_zp"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_dq"], axis=0),
        helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zp"], ["b_dq"], axis=0),
        helper.make_node("Conv", ["x_dq", "w_dq", "b_dq"], ["conv"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
    ]
    if integer:
        nodes += [helper.make_node("QuantizeLinear", ["conv", "y_scale", "y_zp"], ["y_q"]),
                  helper.make_node("DequantizeLinear", ["y_q", "y_scale", "y_zp"], ["y_dq"]),
                  helper.make_node("Relu", ["y_dq"], ["relu"])]
    else:
        inits = inits[:-2]
        nodes.append(helper.make_node("Relu", ["conv"], ["relu"]))
    nodes += [helper.make_node("GlobalAveragePool", ["relu"], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["logits"], axis=1)]
    g = helper.make_graph(nodes, "ort_tools_test",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", C, H, W])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", K])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="ort_tools_test")
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)

def quantize(v, scale, zp, lo, hi):
    # ONNX QuantizeLinear: saturate(round(v / scale) + zp), round half to even.
    return np.clip(np.rint(v.astype(np.float32) / scale) + zp, lo, hi)

def expected(x, integer):
    xq = quantize(x, x_scale, x_zp, 0, 255)
    xd = ((xq - np.float32(x_zp)) * x_scale).astype(np.float32)
    w = (wq.astype(np.float32) * w_scale[:, None, None, None]).astype(np.float32)
    b = (bq.astype(np.float32) * b_scale).astype(np.float32)
    xp = np.pad(xd.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((x.shape[0], K, H, W))
    for kh in range(3):
        for kw in range(3):
            y += np.einsum("nchw,kc->nkhw", xp[:, :, kh:kh + H, kw:kw + W], w[:, :, kh, kw].astype(np.float64))
    y += b.astype(np.float64)[None, :, None, None]
    if integer:
        y = (quantize(y, y_scale, y_zp, 0, 255) - np.float64(y_zp)) * np.float64(y_scale)
    return np.maximum(y, 0).mean(axis=(2, 3))

model(f"{out}/tiny.onnx", False)
model(f"{out}/int.onnx", True)
x = rng.normal(0.0, 1.5, size=(N, C, H, W)).astype(np.float32)  # |x| > 2: saturates at 0 or 255
# Exact half steps: round half to even decides them (2.5 -> 2, 3.5 -> 4, -0.5 -> 0).
x[0, 0, 0, :] = np.array([2.5, 3.5, -0.5, -1.5], np.float32) * x_scale
x[1, 1, :, 0] = np.array([100.5, -100.5, 127.5, -128.5], np.float32) * x_scale
x.tofile(f"{out}/inputs.f32")
paths = [f"val/{i % K}/img_{i:03d}.png" for i in range(N)]
paths[3] = 'val/3/a,b "c".png'  # RFC 4180 quoting in the CSV
labels = [i % K for i in range(N)]
json.dump({"format": "dfq-inputs", "version": 1, "dtype": "float32", "shape": [N, C, H, W],
           "paths": paths, "labels": labels}, open(f"{out}/inputs.f32.json", "w"))
e = expected(x, False)
# The rows' 5 best logits are far apart (float32 noise is ~1e-6): the exact order check is not flaky.
top6 = -np.sort(-e, axis=1)[:, :6]
assert (top6[:, :-1] - top6[:, 1:]).min() > 1e-4, "the top-5 logits of some row nearly tie: choose another seed"
np.save(f"{out}/expected_tiny.npy", e)
np.save(f"{out}/expected_int.npy", expected(x, True))
EOF
check "make the models, inputs and numpy's logits" "$py" "$tmp/make.py" "$tmp"

# check_run CSV LOGITS EXPECTED.npy TOLERANCE JSONLINE: the CSV and logits of one run against numpy.
cat >"$tmp/check_run.py" <<'EOF'
import json, sys
import numpy as np

csv_path, logits_path, expected_path, tol, json_line = sys.argv[1:6]
tol = float(tol)
meta = json.load(open(sys.argv[6]))
e = np.load(expected_path)
n, k = e.shape
errors = []
raw = open(csv_path, newline="").read()
order = np.argsort(-e, axis=1, kind="stable")  # ties: the lower index first
def field(p):  # RFC 4180
    return '"' + p.replace('"', '""') + '"' if any(c in p for c in ',"\r\n') else p
want = ["path,label,prediction,top5"] + [
    f"{field(meta['paths'][i])},{meta['labels'][i]},{order[i, 0]},{' '.join(str(j) for j in order[i, :5])}"
    for i in range(n)]
got_lines = raw.split("\n")
if got_lines[-1] != "" or len(got_lines) != n + 2:
    errors.append(f"{len(got_lines) - 1} lines (or no final newline), expected {n + 1}")
for i, (g, w) in enumerate(zip(got_lines, want)):
    if g != w:
        errors.append(f"line {i + 1}: {g!r} != numpy's {w!r}")
if 'val/3/a,b ""c"".png' not in raw:
    errors.append("the path with a comma and quotes is not RFC 4180-quoted")
if logits_path != "-":
    got = np.fromfile(logits_path, dtype="<f4")
    if got.size != n * k:
        errors.append(f"logits: {got.size} values, expected {n * k}")
    else:
        got = got.reshape(n, k)
        scale = np.abs(e).max()
        err = np.abs(got - e).max()
        print(f"max |ort - numpy| = {err:.3g}, largest |logit| {scale:.3g}, tolerance {tol:g} of it")
        if not err <= tol * scale:
            errors.append(f"logits differ: max |ort - numpy| {err:.3g} > {tol:g} x {scale:.3g}")
try:
    r = json.loads(json_line)
except ValueError:
    r = {}
top1 = 100.0 * sum(int(order[i, 0] == meta["labels"][i]) for i in range(n)) / n
if r.get("images") != n or abs(r.get("top1", -1) - top1) > 1e-3 or not r.get("images_per_second", 0) > 0:
    errors.append(f"JSON line {json_line!r}: expected images {n}, top1 {top1:.4f}, images_per_second > 0")
for m in errors[:10]:
    print(m)
sys.exit(1 if errors else 0)
EOF

# ---- tiny.onnx against numpy -------------------------------------------------
inputs="$tmp/inputs.f32"
run "ort_eval.js tiny.onnx (batch 8: the last of 5 batches holds 5)" \
  node "$ort_eval" --model "$tmp/tiny.onnx" --inputs "$inputs" --predictions "$tmp/tiny.csv" --logits "$tmp/tiny.f32" \
  --batch 8 --threads 2
line="$(tail -1 "$tmp/out")"
[ "$(wc -l <"$tmp/out")" -eq 1 ] && ok "stdout is one JSON line" || bad "stdout is one JSON line" "$tmp/out"
check "tiny.onnx: every prediction and top5 = numpy's, logits within 1e-5, quoting, JSON" \
  "$py" "$tmp/check_run.py" "$tmp/tiny.csv" "$tmp/tiny.f32" "$tmp/expected_tiny.npy" 1e-5 "$line" "$inputs.json"
ls "$tmp"/*.tmp.* >/dev/null 2>&1 && bad "no temporary files left" || ok "no temporary files left"

for opt in disabled basic extended; do
  run "ort_eval.js tiny.onnx --opt $opt --batch 64" \
    node "$ort_eval" --model "$tmp/tiny.onnx" --inputs "$inputs" --predictions "$tmp/tiny_$opt.csv" --opt "$opt"
  check "tiny.onnx --opt $opt: same predictions" \
    "$py" "$tmp/check_run.py" "$tmp/tiny_$opt.csv" - "$tmp/expected_tiny.npy" 1e-5 "$(tail -1 "$tmp/out")" "$inputs.json"
done

run "ort_eval.js --bench 2" \
  node "$ort_eval" --model "$tmp/tiny.onnx" --inputs "$inputs" --predictions "$tmp/bench.csv" --bench 2 --batch 16
check "--bench 2: bench_runs 2 and the median images/s" "$py" -c '
import json, statistics, sys
r = json.loads(sys.argv[1])
ok = r["bench_runs"] == 2 and len(r["bench_images_per_second"]) == 2 and r["images_per_second"] > 0 \
    and abs(r["images_per_second"] - statistics.median(r["bench_images_per_second"])) <= 0.02
print(r); sys.exit(0 if ok else 1)' "$(tail -1 "$tmp/out")"

# ---- --profile-nodes ----------------------------------------------------------
# op_types PROFILE.json EXPECTED_JSON_SUBSET ABSENT...: the counted op types hold the subset, not the absent ones.
op_types() {
  "$py" -c '
import json, sys
p = json.load(open(sys.argv[1])); want = json.loads(sys.argv[2]); absent = sys.argv[3:]
ops = p["op_types"]
print(ops)
ok = all(ops.get(k) == v for k, v in want.items()) and not any(a in ops for a in absent)
ok = ok and p["kernels"] == sum(ops.values()) == len(p["nodes"])
sys.exit(0 if ok else 1)' "$@"
}
run "--profile-nodes --opt disabled --profile-out" \
  node "$ort_eval" --model "$tmp/tiny.onnx" --inputs "$inputs" --predictions "$tmp/p.csv" --opt disabled \
  --profile-nodes --profile-out "$tmp/prof_disabled.json"
check "--opt disabled ran the model's 8 nodes" op_types "$tmp/prof_disabled.json" \
  '{"QuantizeLinear":1,"DequantizeLinear":3,"Conv":1,"Relu":1,"GlobalAveragePool":1,"Flatten":1}'
run "--profile-nodes to stderr" \
  node "$ort_eval" --model "$tmp/int.onnx" --inputs "$inputs" --predictions "$tmp/p.csv" --profile-nodes
if [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q '"QLinearConv":1' "$tmp/err"; then
  ok "int.onnx --opt all: one stderr line, ORT ran a QLinearConv"
else
  bad "int.onnx --opt all: one stderr line, ORT ran a QLinearConv" "$tmp/err"
fi
run "--session-config session.disable_quant_qdq=1" \
  node "$ort_eval" --model "$tmp/int.onnx" --inputs "$inputs" --predictions "$tmp/p.csv" \
  --session-config session.disable_quant_qdq=1 --profile-nodes --profile-out "$tmp/prof_noqdq.json"
check "the session config entry reached ORT: no QLinearConv, a float Conv" op_types "$tmp/prof_noqdq.json" '{"Conv":1}' QLinearConv

# ---- --exact on the integer model ---------------------------------------------
run "ort_eval.js int.onnx --exact" \
  node "$ort_eval" --model "$tmp/int.onnx" --inputs "$inputs" --predictions "$tmp/int.csv" --logits "$tmp/int.f32" --exact
grep -q '"session_config":{"session.x64quantprecision":"1"}' "$tmp/out" && ok "--exact sets session.x64quantprecision=1" ||
  bad "--exact sets session.x64quantprecision=1" "$tmp/out"
check "int.onnx --exact: logits within one output quantum (0.05) of numpy" "$py" -c '
import sys
import numpy as np
e = np.load(sys.argv[1]); got = np.fromfile(sys.argv[2], "<f4").reshape(e.shape)
err = np.abs(got - e).max(); print(f"max |ort - numpy| = {err:.3g}")
sys.exit(0 if err <= 0.05 * 1.0001 else 1)' "$tmp/expected_int.npy" "$tmp/int.f32"
# The default (u8s8) path is exact only with VNNI: its error is shown, not judged.
if node "$ort_eval" --model "$tmp/int.onnx" --inputs "$inputs" --predictions "$tmp/int0.csv" --logits "$tmp/int0.f32" \
  >/dev/null 2>&1; then
  "$py" -c '
import sys
import numpy as np
e = np.load(sys.argv[1]); got = np.fromfile(sys.argv[2], "<f4").reshape(e.shape)
vnni = any(f in open("/proc/cpuinfo").read().split() for f in ("avx512_vnni", "avx_vnni")) if sys.platform == "linux" else "?"
print(f"note    int.onnx without --exact: max |ort - numpy| = {np.abs(got - e).max():.3g} (CPU with VNNI: {vnni})")' \
    "$tmp/expected_int.npy" "$tmp/int0.f32"
fi

# ---- compare_predictions.py ---------------------------------------------------
cp "$tmp/tiny.csv" "$tmp/same.csv"
run "compare_predictions.py: identical files" "$py" "$compare" "$tmp/tiny.csv" "$tmp/same.csv" --json "$tmp/cmp_same.json"
grep -q "top-1 agreement 37/37 (100.00 %)" "$tmp/out" && ok "identical: 37/37 agree" || bad "identical: 37/37 agree" "$tmp/out"
# Row 6 (the 5th image) predicts another class in the copy.
"$py" - "$tmp/tiny.csv" "$tmp/changed.csv" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
rows[5][2] = str((int(rows[5][2]) + 1) % 10)
csv.writer(open(sys.argv[2], "w", newline=""), lineterminator="\n").writerows(rows)
EOF
run "compare_predictions.py: one row changed" "$py" "$compare" "$tmp/tiny.csv" "$tmp/changed.csv" --json "$tmp/cmp.json"
check "one row changed: 36 agree, 1 disagreement naming val/4/img_004.png, top-1 counts" "$py" -c '
import json, sys
a = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
rows = [l.split(",") for l in open(sys.argv[3]).read().splitlines()[1:]]
correct = sum(1 for r in rows if r[-3] == r[-2])
changed_correct = correct - (rows[4][-3] == rows[4][-2]) + ((int(rows[4][-2]) + 1) % 10 == int(rows[4][-3]))
ok = (a["images"] == 37 and a["agree"] == 36 and a["disagree"] == 1 and abs(a["agree_percent"] - 100 * 36 / 37) < 1e-3
      and [d["path"] for d in a["first_disagreements"]] == ["val/4/img_004.png"]
      and a["correct_a"] == correct and a["correct_b"] == changed_correct
      and s["agree"] == 37 and s["disagree"] == 0 and s["first_disagreements"] == [])
print(a); sys.exit(0 if ok else 1)' "$tmp/cmp.json" "$tmp/cmp_same.json" "$tmp/tiny.csv"
grep -q "row 5: val/4/img_004.png" "$tmp/out" && ok "the disagreeing path is printed" || bad "the disagreeing path is printed" "$tmp/out"
sed 's#^val/7/img_007.png,#val/7/other.png,#' "$tmp/tiny.csv" >"$tmp/other.csv"
"$py" "$compare" "$tmp/tiny.csv" "$tmp/other.csv" >"$tmp/out" 2>&1
code=$?
if [ $code -eq 1 ] && grep -q "row 8: path 'val/7/img_007.png'.*'val/7/other.png'" "$tmp/out"; then
  ok "different paths refused, naming the first"
else
  echo "        exit $code"; bad "different paths refused, naming the first" "$tmp/out"
fi

# ---- bad inputs: one line, no CSV ------------------------------------------------
# refused NAME PATTERN INPUTS: ort_eval.js exits 1 with one stderr line matching PATTERN and writes no CSV.
refused() {
  local name="$1" pattern="$2" in="$3"
  rm -f "$tmp/bad.csv"
  node "$ort_eval" --model "$tmp/tiny.onnx" --inputs "$in" --predictions "$tmp/bad.csv" >"$tmp/out" 2>"$tmp/err"
  local code=$?
  if [ $code -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -Eq -- "$pattern" "$tmp/err" && [ ! -s "$tmp/out" ] &&
    [ ! -e "$tmp/bad.csv" ] && ! ls "$tmp"/bad.csv.tmp.* >/dev/null 2>&1; then
    ok "$name"
  else
    echo "        exit $code, pattern '$pattern'"
    cat "$tmp/out" >>"$tmp/err"; ls "$tmp" >>"$tmp/err"; bad "$name" "$tmp/err"
  fi
}
mkdir -p "$tmp/trunc" "$tmp/fmt"
head -c $(($(stat -c %s "$inputs") - 4)) "$inputs" >"$tmp/trunc/in.f32"
cp "$inputs.json" "$tmp/trunc/in.f32.json"
refused "inputs truncated by 4 bytes: refused, one line, no CSV" "^ort_eval: error: .*in\.f32: 7100 bytes, expected 7104" "$tmp/trunc/in.f32"
cp "$inputs" "$tmp/fmt/in.f32"
sed 's/"dfq-inputs"/"dfq-outputs"/' "$inputs.json" >"$tmp/fmt/in.f32.json"
refused "FILE.json with another format: refused, one line, no CSV" 'format is "dfq-outputs", expected "dfq-inputs"' "$tmp/fmt/in.f32"
sed 's/"version": 1/"version": 2/' "$inputs.json" >"$tmp/fmt/in.f32.json"
refused "FILE.json version 2: refused" 'version 2 is not supported' "$tmp/fmt/in.f32"
rm "$tmp/fmt/in.f32.json"
refused "FILE.json missing: refused" 'in\.f32\.json: cannot read' "$tmp/fmt/in.f32"

echo "ort_tools_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
