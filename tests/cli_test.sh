#!/usr/bin/env bash
# End-to-end checks of the dfq command line: exit codes, error messages, JSON,
# and the FP32 reference figures on ../shared when it is present.
# usage: cli_test.sh BUILD/dfq SOURCE_DIR
set -uo pipefail
dfq="$1"
src="$2"
bin_dir="$(dirname "$dfq")"
shared="$src/../shared"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
skipped=0

ok() { passed=$((passed + 1)); echo "ok      $1"; }
bad() { failed=$((failed + 1)); echo "FAILED  $1"; [ -f "$tmp/out" ] && sed 's/^/        | /' "$tmp/out" | head -20; }
skip() { skipped=$((skipped + 1)); echo "skipped $1"; }

# expect NAME CODE PATTERN -- command...: exit code CODE and output matching PATTERN.
expect() {
  local name="$1" code="$2" pattern="$3"
  shift 4
  "$@" >"$tmp/out" 2>&1
  local actual=$?
  if [ "$actual" -eq "$code" ] && grep -Eq -- "$pattern" "$tmp/out"; then ok "$name"; else
    echo "        exit $actual (expected $code), pattern '$pattern'"
    bad "$name"
  fi
}

# json_field FILE KEY: prints a number from a flat JSON object.
json_field() { grep -Eo "\"$2\": *[-0-9.e+]+" "$1" | head -1 | sed 's/.*: *//'; }

expect "dfq --help shows an example" 0 "example:" -- "$dfq" --help
expect "dfq eval --help shows an example" 0 "example:.*" -- "$dfq" eval --help
expect "dfq info --help shows an example" 0 "example:" -- "$dfq" info --help
expect "dfq without a command is a usage error" 2 "usage" -- "$dfq"
expect "unknown command is refused" 2 "unknown command 'frobnicate'" -- "$dfq" frobnicate
expect "missing --data is refused" 1 "data.*required|required.*data" -- "$dfq" eval --model "$src/weights/fashion_cnn.pt"
expect "missing model file names it" 1 "/nonexistent/m.pt.*no such file" -- "$dfq" eval --model /nonexistent/m.pt --data "$tmp"
echo "not a model" >"$tmp/text.pt"
expect "non-TorchScript file is refused" 1 "text.pt.*TorchScript" -- "$dfq" info --model "$tmp/text.pt"
expect "unknown option is refused" 1 "unrecognised|unknown" -- "$dfq" eval --model x --data y --bogus 1

# The embedded model on the Fashion-MNIST test set (Debian's dataset-fashion-mnist).
fm=/usr/share/datasets/fashion-mnist
data="$tmp/fashion"
classes=0_tshirt_top,1_trouser,2_pullover,3_dress,4_coat,5_sandal,6_shirt,7_sneaker,8_bag,9_ankle_boot
if "$bin_dir/idx-to-folder" "$fm/t10k-images-idx3-ubyte.gz" "$fm/t10k-labels-idx1-ubyte.gz" "$data" \
    --classes "$classes" >"$tmp/out" 2>&1; then ok "idx-to-folder converts the Fashion-MNIST test set"; else bad "idx-to-folder"; fi
model="$src/weights/fashion_cnn.pt"

expect "eval of the embedded model" 0 "top-1 .*%" -- \
  "$dfq" eval --model "$model" --data "$data" --preset fashion-mnist --limit 600 --batch 128 --quiet --json "$tmp/e.json"
images=$(json_field "$tmp/e.json" images)
correct=$(json_field "$tmp/e.json" correct)
top1=$(json_field "$tmp/e.json" top1)
if [ "$images" = 600 ] && awk -v c="$correct" -v t="$top1" 'BEGIN { exit !(c > 480 && (t - 100 * c / 600) ^ 2 < 1e-6) }'; then
  ok "JSON reports 600 images and a consistent top-1 ($top1 %)"
else bad "JSON fields (images=$images correct=$correct top1=$top1)"; fi
for key in top1 top5 correct images seconds images_per_second; do
  grep -q "\"$key\"" "$tmp/e.json" && ok "JSON has $key" || bad "JSON has $key"
done

# --save-outputs: the inputs as the model saw them and its logits, for torch.load (tools/compare_outputs.py).
expect "dfq eval --save-outputs writes the inputs and logits" 0 "outputs +600 inputs and logits written" -- \
  "$dfq" eval --model "$model" --data "$data" --preset fashion-mnist --limit 600 --batch 128 --quiet \
  --json "$tmp/so.json" --save-outputs "$tmp/so.pt"
expect "dfq eval --save-outputs with a smaller --limit" 0 "outputs +100 inputs" -- \
  "$dfq" eval --model "$model" --data "$data" --preset fashion-mnist --limit 100 --quiet --save-outputs "$tmp/so100.pt"
if [ -s "$tmp/so.pt" ] && [ -s "$tmp/so100.pt" ] && [ "$(stat -c %s "$tmp/so100.pt")" -lt "$(stat -c %s "$tmp/so.pt")" ]; then
  ok "saved outputs: non-empty, smaller with a smaller --limit"
else bad "saved outputs: non-empty, smaller with a smaller --limit"; fi
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  if /usr/bin/python3 - "$tmp/so.pt" "$(json_field "$tmp/so.json" correct)" >"$tmp/out" 2>&1 <<'PY'
import sys, torch
d = torch.load(sys.argv[1])
assert tuple(d["inputs"].shape) == (600, 1, 28, 28) and d["inputs"].dtype == torch.float32, d["inputs"].shape
assert tuple(d["logits"].shape) == (600, 10) and d["labels"].dtype == torch.int64
assert len(d["paths"]) == 600 and d["paths"][0].startswith("0_tshirt_top/"), d["paths"][:2]
correct = int((d["logits"].argmax(1) == d["labels"]).sum())
assert correct == int(sys.argv[2]), (correct, sys.argv[2])
PY
  then ok "torch.load reads the saved outputs; argmax of its logits gives the JSON's correct count"
  else bad "torch.load reads the saved outputs; argmax of its logits gives the JSON's correct count"; fi
else skip "saved outputs through torch.load: /usr/bin/python3 has no torch"; fi

# --predictions (CSV) and --save-inputs (raw float32 + JSON index) against the --json of the same run.
# check_predictions.py CSV JSON [INPUTS]: header, one row per image, the CSV's top-1 equal to the JSON's,
# prediction = first of top5; with INPUTS, the index's shape, paths and labels match the rows, and its size.
cat >"$tmp/check_predictions.py" <<'PY'
import csv, json, os, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
metrics = json.load(open(sys.argv[2]))
assert rows[0] == ["path", "label", "prediction", "top5"], rows[0]
rows = rows[1:]
assert len(rows) == metrics["images"], (len(rows), metrics["images"])
hits = sum(r[1] == r[2] for r in rows)
assert hits == metrics["correct"] and 100.0 * hits / len(rows) == metrics["top1"], (hits, metrics["correct"])
for r in rows:
    top5 = r[3].split(" ")
    assert len(r) == 4 and len(top5) == 5 and len(set(top5)) == 5 and r[2] == top5[0], r
    assert all(0 <= int(k) < 10 for k in top5) and 0 <= int(r[1]) < 10, r
if len(sys.argv) > 3:
    index = json.load(open(sys.argv[3] + ".json"))
    n, c, h, w = index["shape"]
    assert index["format"] == "dfq-inputs" and index["version"] == 1 and index["dtype"] == "float32", index
    assert n == len(rows) and index["paths"] == [r[0] for r in rows], "paths differ from the CSV's"
    assert index["labels"] == [int(r[1]) for r in rows], "labels differ from the CSV's"
    assert os.path.getsize(sys.argv[3]) == n * c * h * w * 4, (os.path.getsize(sys.argv[3]), index["shape"])
print("rows", len(rows), "top-1", hits)
PY
check_predictions() {  # NAME CSV JSON [INPUTS]
  local name="$1"; shift
  if /usr/bin/python3 "$tmp/check_predictions.py" "$@" >"$tmp/out" 2>&1; then ok "$name"; else bad "$name"; fi
}
expect "dfq eval --predictions --save-inputs (FP32)" 0 "csv +600 predictions written" -- \
  "$dfq" eval --model "$model" --data "$data" --preset fashion-mnist --limit 600 --batch 128 --quiet \
  --json "$tmp/pr.json" --predictions "$tmp/pr.csv" --save-inputs "$tmp/pr.f32"
check_predictions "predictions CSV: 600 rows, top-1 of --json, inputs index and size match (FP32)" \
  "$tmp/pr.csv" "$tmp/pr.json" "$tmp/pr.f32"
[ "$(json_field "$tmp/pr.json" correct)" = "$(json_field "$tmp/e.json" correct)" ] &&
  ok "--predictions and --save-inputs leave the top-1 unchanged" || bad "--predictions and --save-inputs leave the top-1 unchanged"
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  if /usr/bin/python3 - "$tmp/pr.f32" "$tmp/so.pt" >"$tmp/out" 2>&1 <<'PY'
import sys, torch
d = torch.load(sys.argv[2])
raw = torch.frombuffer(bytearray(open(sys.argv[1], "rb").read()), dtype=torch.float32).view(600, 1, 28, 28)
assert torch.equal(raw, d["inputs"]), "--save-inputs differs from the inputs of --save-outputs"
PY
  then ok "--save-inputs holds the inputs --save-outputs holds"; else bad "--save-inputs holds the inputs --save-outputs holds"; fi
else skip "--save-inputs against --save-outputs: /usr/bin/python3 has no torch"; fi

expect "cifar preset on a 1-channel model is refused" 1 "1 input channel" -- \
  "$dfq" eval --model "$model" --data "$data" --preset cifar --limit 10
expect "unknown preset is refused" 1 "bogus.*cifar" -- "$dfq" eval --model "$model" --data "$data" --preset bogus
expect "--batch 0 is refused" 1 "--batch.*>= 1" -- "$dfq" eval --model "$model" --data "$data" --preset fashion-mnist --batch 0
expect "--limit -1 is refused" 1 "--limit" -- "$dfq" eval --model "$model" --data "$data" --preset fashion-mnist --limit -1
expect "--threads -2 is refused" 1 "--threads" -- "$dfq" eval --model "$model" --data "$data" --preset fashion-mnist --threads -2
expect "malformed --mean is refused" 1 "--mean" -- \
  "$dfq" eval --model "$model" --data "$data" --preset fashion-mnist --mean 0.1,abc
mkdir -p "$tmp/nine"
for c in 0_tshirt_top 1_trouser 2_pullover 3_dress 4_coat 5_sandal 6_shirt 7_sneaker 8_bag; do ln -s "$data/$c" "$tmp/nine/$c"; done
expect "class folder count != output width is refused" 1 "10 class folders.*found 9" -- \
  "$dfq" eval --model "$model" --data "$tmp/nine" --preset fashion-mnist
expect "missing data folder is refused" 1 "$tmp/none" -- \
  "$dfq" eval --model "$model" --data "$tmp/none" --preset fashion-mnist
expect "dfq info lists nodes and BN layers" 0 "batch-norm layers \([0-9]+\)" -- "$dfq" info --model "$model" --preset fashion-mnist
expect "dfq info shows the output shape" 0 "1x10" -- "$dfq" info --model "$model" --input-size 28x28

# dfq synth on the embedded model (miniature run): files, JSON, PNGs that reload with their labels.
expect "dfq synth --help shows an example" 0 "example:" -- "$dfq" synth --help
expect "dfq synth direct on the embedded model" 0 "bn loss .*lower" -- \
  "$dfq" synth --model "$model" --preset fashion-mnist --method direct --count 20 --batch 20 --iters 40 --lr 0.5 \
  --out "$tmp/synth" --dump-png --seed 1 --quiet --json "$tmp/s.json"
for key in method count iterations seconds image_iterations_per_second initial_bn_loss final_bn_loss \
    final_bn_loss_per_layer label_agreement class_histogram diversity diversity_within_class; do
  grep -q "\"$key\"" "$tmp/s.json" && ok "synth JSON has $key" || bad "synth JSON has $key"
done
[ -f "$tmp/synth/images.pt" ] && [ -f "$tmp/synth/synth.json" ] && ok "synth writes images.pt and synth.json" || bad "synth outputs"
expect "synthetic PNGs reload through dfq eval" 0 "images +20 " -- \
  "$dfq" eval --model "$model" --data "$tmp/synth/png" --preset fashion-mnist --quiet
expect "dfq synth generator trains and saves" 0 "bn loss .*lower" -- \
  "$dfq" synth --model "$model" --preset fashion-mnist --method generator --count 10 --batch 16 --iters 15 \
  --out "$tmp/gen1" --save-generator "$tmp/g.pt" --seed 2 --quiet
expect "dfq synth generator reloads a saved generator" 0 "bn loss" -- \
  "$dfq" synth --model "$model" --preset fashion-mnist --method generator --count 10 --batch 16 \
  --out "$tmp/gen2" --load-generator "$tmp/g.pt" --seed 2 --quiet
cmp -s "$tmp/gen1/images.pt" "$tmp/gen2/images.pt" && ok "a reloaded generator samples the same images" ||
  bad "a reloaded generator samples the same images"
expect "generator-only option with --method direct is refused" 1 "--latent.*--method generator" -- \
  "$dfq" synth --model "$model" --preset fashion-mnist --method direct --latent 64 --out "$tmp/x"
expect "direct-only option with --method generator is refused" 1 "--tv-weight.*--method direct" -- \
  "$dfq" synth --model "$model" --preset fashion-mnist --method generator --tv-weight 0.1 --out "$tmp/x"
expect "--ce-weight without target labels is refused" 1 "--ce-weight.*--labels none" -- \
  "$dfq" synth --model "$model" --preset fashion-mnist --labels none --ce-weight 2 --out "$tmp/x"
expect "training options with --load-generator are refused" 1 "--lr.*--load-generator" -- \
  "$dfq" synth --model "$model" --preset fashion-mnist --method generator --load-generator "$tmp/g.pt" --lr 0.1 --out "$tmp/x"
expect "unknown synthesis method is refused" 1 "--method.*direct or generator" -- \
  "$dfq" synth --model "$model" --preset fashion-mnist --method magic --out "$tmp/x"
expect "--count 0 is refused" 1 "--count" -- "$dfq" synth --model "$model" --preset fashion-mnist --count 0 --out "$tmp/x"
expect "unknown --bn-stats is refused" 1 "--bn-stats" -- \
  "$dfq" synth --model "$model" --preset fashion-mnist --bn-stats global --out "$tmp/x"
expect "synthesis without BN layers is refused" 1 "batch-norm" -- \
  "$dfq" synth --model "$src/tests/data/models/relu.pt" --input-size 8x8 --out "$tmp/x"

# dfq quantize on the embedded model, calibrated on the synthetic set above; dfq eval --qmodel.
expect "dfq quantize --help shows an example" 0 "example:" -- "$dfq" quantize --help
expect "dfq quantize W4A4 with residual tensors" 0 "wrote .*q.dfq" -- \
  "$dfq" quantize --model "$model" --preset fashion-mnist --calib "$tmp/synth" --wbits 4 --abits 4 --residual-layers 1 \
  --out "$tmp/q.dfq" --json "$tmp/q.json" --quiet
for key in layers points weight_sqnr_db activation_sqnr_db clip_ratio residual bias_correction weight_objective \
  reconstruct reconstruction_error_after; do
  grep -q "\"$key\"" "$tmp/q.json" && ok "quantize JSON has $key" || bad "quantize JSON has $key"
done
expect "dfq eval --qmodel runs the simulated engine" 0 "top-1" -- \
  "$dfq" eval --qmodel "$tmp/q.dfq" --engine simulated --data "$tmp/synth/png" --preset fashion-mnist --quiet \
  --json "$tmp/qs.json"
expect "dfq eval --qmodel runs the integer engine by default" 0 "engine integer, fast kernels" -- \
  "$dfq" eval --qmodel "$tmp/q.dfq" --data "$tmp/synth/png" --preset fashion-mnist --quiet --json "$tmp/qi.json"
expect "reference kernels run too" 0 "reference kernels" -- \
  "$dfq" eval --qmodel "$tmp/q.dfq" --kernels reference --data "$tmp/synth/png" --preset fashion-mnist --quiet \
  --predecode --json "$tmp/qr.json"
[ "$(json_field "$tmp/qi.json" correct)" = "$(json_field "$tmp/qr.json" correct)" ] &&
  ok "fast and reference kernels give the same predictions" || bad "fast and reference kernels give the same predictions"
grep -q '"overflows_int16"' "$tmp/qi.json" && ok "integer eval JSON reports accumulator widths" ||
  bad "integer eval JSON reports accumulator widths"
expect "dfq eval --qmodel --save-outputs (integer engine)" 0 "outputs +20 inputs and logits written" -- \
  "$dfq" eval --qmodel "$tmp/q.dfq" --data "$tmp/synth/png" --preset fashion-mnist --quiet --save-outputs "$tmp/qi.pt"
expect "dfq eval --qmodel --save-outputs (simulated engine)" 0 "outputs +20 inputs and logits written" -- \
  "$dfq" eval --qmodel "$tmp/q.dfq" --engine simulated --data "$tmp/synth/png" --preset fashion-mnist --quiet \
  --save-outputs "$tmp/qs.pt"
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  expect "compare_outputs.py: integer vs simulated top-1 agreement" 0 "top-1 agreement [0-9]+/20" -- \
    /usr/bin/python3 "$src/tools/compare_outputs.py" "$tmp/qi.pt" "$tmp/qs.pt"
  expect "compare_outputs.py: dfq FP32 vs PyTorch on the saved inputs" 0 "relative error ([0-9.]+e-(0[5-9]|1[0-9])|0\.000e\+00)" -- \
    /usr/bin/python3 "$src/tools/compare_outputs.py" --model "$model" "$tmp/so.pt"
else skip "compare_outputs.py: /usr/bin/python3 has no torch"; fi
# --predictions and --save-inputs with both quantized engines and --skip-bad, on a small folder whose
# names need CSV quoting (a comma in a class folder, quotes and a comma in a file name) and one corrupt image.
mini="$tmp/mini"
for c in ${classes//,/ }; do
  mkdir -p "$mini/$c" && for f in $(ls "$data/$c" | head -2); do cp "$data/$c/$f" "$mini/$c/"; done
done
mv "$mini/2_pullover" "$mini/2_pull,over"
f=$(ls "$mini/4_coat" | head -1) && mv "$mini/4_coat/$f" "$mini/4_coat/a \"quoted\",name.png"
echo "not an image" >"$mini/5_sandal/-corrupt.png"  # sorts first in its class
for engine in integer simulated fp32; do
  if [ "$engine" = fp32 ]; then m=(--model "$model"); else m=(--qmodel "$tmp/q.dfq" --engine "$engine"); fi
  expect "--predictions --save-inputs --skip-bad ($engine)" 0 "csv +20 predictions written" -- \
    "$dfq" eval "${m[@]}" --data "$mini" --preset fashion-mnist --skip-bad --batch 3 --quiet \
    --json "$tmp/mini-$engine.json" --predictions "$tmp/mini-$engine.csv" --save-inputs "$tmp/mini-$engine.f32"
  check_predictions "predictions CSV matches --json and the inputs index ($engine, --skip-bad)" \
    "$tmp/mini-$engine.csv" "$tmp/mini-$engine.json" "$tmp/mini-$engine.f32"
done
grep -q -- "-corrupt" "$tmp/mini-integer.csv" "$tmp/mini-integer.f32.json" && bad "a skipped image has no row" ||
  ok "a skipped image has no row"
grep -Eq '^"2_pull,over/[0-9]+\.png",2,' "$tmp/mini-fp32.csv" && grep -Eq '^"4_coat/a ""quoted"",name\.png",4,' "$tmp/mini-fp32.csv" &&
  ok "paths with a comma or quotes are quoted per RFC 4180" || bad "paths with a comma or quotes are quoted per RFC 4180"
grep -Fq '"4_coat/a \"quoted\",name.png"' "$tmp/mini-fp32.f32.json" && ok "the inputs index holds the same path, JSON-escaped" ||
  bad "the inputs index holds the same path, JSON-escaped"
expect "--predictions with --limit counts the skipped image toward the limit" 0 "csv +11 predictions written" -- \
  "$dfq" eval --model "$model" --data "$mini" --preset fashion-mnist --skip-bad --limit 12 --quiet --predictions "$tmp/mini12.csv"
[ "$(grep -c '' "$tmp/mini12.csv")" = 12 ] && ok "--limit 12 less one skipped: 11 rows and the header" ||
  bad "--limit 12 less one skipped: 11 rows and the header"
expect "--predictions the same file as --json is refused" 1 "--predictions '.*': expected a file other than --json" -- \
  "$dfq" eval --model "$model" --data "$mini" --preset fashion-mnist --json "$tmp/same" --predictions "$tmp/same"
expect "unknown --engine is refused" 1 "--engine.*integer or simulated" -- \
  "$dfq" eval --qmodel "$tmp/q.dfq" --engine float --data "$tmp/synth/png" --preset fashion-mnist
expect "--kernels with the simulated engine is refused" 1 "--kernels.*--engine integer" -- \
  "$dfq" eval --qmodel "$tmp/q.dfq" --engine simulated --kernels reference --data "$tmp/synth/png" --preset fashion-mnist
q0=("$dfq" quantize --model "$model" --preset fashion-mnist --calib "$tmp/synth")  # without --out, for runs that keep their artifact
q=("${q0[@]}" --out "$tmp/x.dfq")
expect "--wbits 9 is refused" 1 "--wbits.*2 to 8|--wbits.*2\.\.8" -- "${q[@]}" --wbits 9
expect "unknown --bias-correction is refused" 1 "--bias-correction.*none, weights, full" -- "${q[@]}" --bias-correction some
expect "--weight-objective output needs mmse" 1 "--weight-objective output.*--weight-range mmse" -- \
  "${q[@]}" --weight-range minmax --weight-objective output
expect "--weight-range minmax alone is accepted" 0 "objective weight" -- "${q[@]}" --weight-range minmax --quiet
expect "--act-range kl below 8 bits is refused" 1 "--act-range kl.*8-bit" -- "${q[@]}" --abits 4 --act-range kl
expect "both residual options are refused" 1 "either" -- "${q[@]}" --residual-layers 1 --residual-budget 0.1
expect "--cle equalizes the embedded model's three pairs" 0 "equalize +3 pairs \(1 ReLU6 -> ReLU" -- \
  "${q[@]}" --cle --json "$tmp/cle.json" --quiet
grep -q '"equalization"' "$tmp/cle.json" && ok "quantize JSON has equalization" || bad "quantize JSON has equalization"
expect "--cle-keep-relu6 without --cle is refused" 1 "--cle-keep-relu6.*--cle" -- "${q[@]}" --cle-keep-relu6
expect "unknown --reconstruct is refused" 1 "--reconstruct.*none, adaround, adaquant" -- "${q[@]}" --reconstruct sgd
expect "--reconstruct-iters with --reconstruct none is refused" 1 "--reconstruct-iters.*adaround or adaquant" -- \
  "${q[@]}" --reconstruct none --reconstruct-iters 10
expect "mixed precision at 4 bits/weight chooses per-layer bits" 0 "mixed precision \(ILP" -- \
  "${q[@]}" --size-budget 4 --candidate-bits 2,4,8 --reconstruct-iters 50 --json "$tmp/mp.json" --quiet
grep -q '"mixed_precision"' "$tmp/mp.json" && ok "quantize JSON has mixed_precision" || bad "quantize JSON has mixed_precision"
# The trade-off table: half-bit budgets from 2 to 8, predicted divergence never rising with the budget.
grep -Eq "^ +2\.0 .*$" "$tmp/out" && grep -Eq "^ +8\.0 " "$tmp/out" && ok "mixed precision prints the size trade-off" ||
  bad "mixed precision prints the size trade-off"
if /usr/bin/python3 -c "
import json, sys
rows = json.load(open('$tmp/mp.json'))['mixed_precision']['pareto']
d = [r['predicted_divergence'] for r in rows if r['feasible']]
sys.exit(0 if len(rows) == 13 and len(d) >= 12 and all(a >= b - 1e-12 for a, b in zip(d, d[1:])) else 1)"; then
  ok "the trade-off's divergence falls as the budget grows"; else bad "the trade-off's divergence falls as the budget grows"; fi
expect "--first-last-bits with a BOPs budget is refused" 1 "--first-last-bits.*ILP chooses every layer" -- \
  "${q[@]}" --bops-budget 1e9 --first-last-bits 8
expect "--wbits with a size budget is refused" 1 "--wbits.*ILP chooses" -- "${q[@]}" --size-budget 4 --wbits 4
expect "--candidate-bits without a budget is refused" 1 "--candidate-bits.*--size-budget" -- "${q[@]}" --candidate-bits 2,4
expect "malformed --candidate-bits is refused" 1 "--candidate-bits.*comma-separated" -- "${q[@]}" --size-budget 4 --candidate-bits 4,,8
# Mixed activation bits: within the BOPs of uniform W4A4, each convolution's input bits chosen too.
expect "--candidate-abits chooses activation bits within the BOPs of W4A4" 0 "W bits +A bits" -- \
  "${q0[@]}" --bops-budget-bits 4,4 --abits 4 --candidate-bits 2,4,8 --candidate-abits 4,8 --reconstruct none \
  --json "$tmp/mpa.json" --out "$tmp/mpa.dfq" --quiet
# The JSON's per-layer activation bits are the bits of the point each layer reads, and the BOPs fit.
if /usr/bin/python3 -c "
import json, sys
j = json.load(open('$tmp/mpa.json'))
m = j['mixed_precision']
bits = {p['name']: int(p['range'].split(' ')[0].lstrip('uint')) for p in j['points']}
rows = m['layers']
ok = m['bops'] <= m['bops_budget'] and m['bops_budget_bits'] == [4, 4] and m['candidate_activation_bits'] == [4, 8]
ok = ok and all(bits[r['input_point']] == r['activation_bits'] for r in rows)
ok = ok and all(len(r['activation_sensitivity']) == len(r['candidate_activation_bits']) for r in rows)
ok = ok and bits['input'] == 8 and len({r['activation_bits'] for r in rows if r['input_point'] != 'input'}) >= 1
sys.exit(0 if ok else 1)"; then
  ok "the JSON's activation bits match the points' ranges within the BOPs budget"; else
  bad "the JSON's activation bits match the points' ranges within the BOPs budget"; fi
expect "a mixed-activation model runs in the integer engine" 0 "top-1" -- \
  "$dfq" eval --qmodel "$tmp/mpa.dfq" --data "$tmp/synth/png" --preset fashion-mnist --quiet
expect "--candidate-abits without a BOPs budget is refused" 1 "--candidate-abits.*a BOPs budget.*found none" -- \
  "${q[@]}" --size-budget 4 --candidate-abits 4,8
expect "--candidate-abits outside 2..8 is refused" 1 "--candidate-abits.*2 to 8, found 9" -- \
  "${q[@]}" --bops-budget-bits 4,4 --candidate-abits 4,9
expect "malformed --candidate-abits is refused" 1 "--candidate-abits.*comma-separated" -- \
  "${q[@]}" --bops-budget-bits 4,4 --candidate-abits 4,
expect "both BOPs budget forms are refused" 1 "either --bops-budget or --bops-budget-bits" -- \
  "${q[@]}" --bops-budget 1e9 --bops-budget-bits 4,4
expect "--bops-budget-bits with one number is refused" 1 "--bops-budget-bits.*two bit widths W,A" -- \
  "${q[@]}" --bops-budget-bits 4
expect "--bops-budget-bits A other than uniform --abits is refused" 1 "--bops-budget-bits.*--abits 8" -- \
  "${q[@]}" --bops-budget-bits 4,4
expect "--pow2-scales --weight-lut quantizes and prints the tables" 0 "lookup table +obj/unif" -- \
  "${q0[@]}" --wbits 4 --abits 8 --pow2-scales --weight-lut --reconstruct-iters 50 --json "$tmp/lut.json" --out "$tmp/lut.dfq" --quiet
for key in lut lut_objective_ratio pow2_scales weight_lut; do
  grep -q "\"$key\"" "$tmp/lut.json" && ok "quantize JSON has $key" || bad "quantize JSON has $key"
done
grep -q '"pow2_scales": true' "$tmp/lut.json" && ok "quantize JSON records pow2_scales true" || bad "quantize JSON records pow2_scales true"
expect "a lookup-table model runs in the integer engine" 0 "top-1" -- \
  "$dfq" eval --qmodel "$tmp/lut.dfq" --data "$tmp/synth/png" --preset fashion-mnist --quiet
expect "--weight-lut with --wbits 8 is refused" 1 "--weight-lut.*--wbits 4 or fewer.*--wbits 8" -- "${q[@]}" --weight-lut --wbits 8
expect "--weight-lut with residual tensors is refused" 1 "--weight-lut.*no residual tensors" -- \
  "${q[@]}" --weight-lut --wbits 4 --residual-layers 1
expect "--weight-lut with a size budget is refused" 1 "--weight-lut.*no --size-budget" -- "${q[@]}" --weight-lut --size-budget 4
expect "--weight-lut with adaquant is refused" 1 "--weight-lut.*adaround or none" -- \
  "${q[@]}" --weight-lut --wbits 4 --reconstruct adaquant
[ ! -e "$tmp/x.dfq.tmp" ] && ok "no partial artifact left behind" || bad "no partial artifact left behind"

# Reference figures on ../shared (FP32 top-1 to +-2 images).
# dfq run: the whole pipeline into one folder, then the same again from the cache.
r0=("$dfq" run --model "$model" --data "$data" --preset fashion-mnist --calib-count 32 --reconstruct none --limit 300
    --cache "$tmp/cache" --quiet)
r=("${r0[@]}" --wbits 4 --abits 4 --iters 20)
expect "dfq run writes the card" 0 "wrote .*card.md" -- "${r[@]}" --out "$tmp/run"
for f in card.md card.json report.html model.dfq model.onnx quantize.json fp32.json integer.json synth.json synth/images.pt; do
  [ -s "$tmp/run/$f" ] && ok "dfq run wrote $f" || bad "dfq run wrote $f"
done
grep -q "model.onnx.: ONNX QDQ, opset 17, $(stat -c %s "$tmp/run/model.onnx") B" "$tmp/run/card.md" &&
  ok "the card lists model.onnx and its size" || bad "the card lists model.onnx and its size"
grep -q "ONNX QDQ (model.onnx)" "$tmp/run/report.html" && ok "the report lists model.onnx" || bad "the report lists model.onnx"
expect "dfq run refuses --predictions (two evaluations)" 1 "--predictions.*evaluates twice" -- "${r[@]}" --out "$tmp/runp" --predictions "$tmp/p.csv"
ls "$tmp/run/synth/png" 2>/dev/null | grep -q . && ok "dfq run wrote the synthetic PNGs" || bad "dfq run wrote the synthetic PNGs"
for key in sha256 choices results drop_top1 stages machine command_line artifact_bytes; do
  grep -q "\"$key\"" "$tmp/run/card.json" && ok "card.json has $key" || bad "card.json has $key"
done
grep -q "$(sha256sum "$model" | cut -c1-64)" "$tmp/run/card.json" && ok "card names the model by its SHA-256" ||
  bad "card names the model by its SHA-256"
expect "dfq run again reuses the synthetic set" 0 "reused +synthetic set" -- "${r[@]}" --out "$tmp/run"
expect "dfq run again reuses the FP32 evaluation" 0 "reused +FP32 evaluation" -- "${r[@]}" --out "$tmp/run"
expect "dfq run with another seed synthesizes again" 0 "== 2/5" -- "${r[@]}" --out "$tmp/run2" --seed 1
grep -q "reused *synthetic" "$tmp/out" && bad "another seed must not reuse the synthetic set" ||
  ok "another seed does not reuse the synthetic set"
expect "dfq run refuses --batch (which stage?)" 1 "--batch: .*--synth-batch.*--eval-batch" -- "${r[@]}" --out "$tmp/r3" --batch 8
expect "dfq run refuses synthesis options with real calibration data" 1 "--method: .*given calibration data" -- \
  "${r0[@]}" --out "$tmp/r3" --calib-data "$data" --method generator
expect "dfq run routes an invalid quantize option to its check" 1 "--wbits.*2 to 8|--wbits.*2\.\.8" -- \
  "${r0[@]}" --out "$tmp/r3" --iters 20 --wbits 9
[ ! -e "$tmp/r3" ] && ok "a failed dfq run leaves no run folder" || bad "a failed dfq run leaves no run folder"
expect "dfq run refuses conflicting quantize options before synthesis" 1 "--wbits: expected no uniform weight bits" -- \
  "${r0[@]}" --out "$tmp/r3" --iters 20 --wbits 4 --size-budget 4
grep -q "== 1/5" "$tmp/out" && bad "the conflict is found before synthesis starts" ||
  ok "the conflict is found before synthesis starts"
expect "dfq run refuses --check-options (its own check)" 1 "--check-options: not an option of dfq run" -- \
  "${r0[@]}" --out "$tmp/r3" --check-options
expect "dfq quantize --check-options accepts valid options without reading the model" 0 "options +valid" -- \
  "$dfq" quantize --model "$tmp/absent.pt" --preset cifar --out "$tmp/cq.dfq" --size-budget 4 --bops-budget-bits 4,4 \
  --candidate-abits 2,3,4,5,6,8 --check-options
[ ! -e "$tmp/cq.dfq" ] && ok "dfq quantize --check-options writes nothing" || bad "dfq quantize --check-options writes nothing"
expect "dfq quantize --check-options refuses what quantizing would refuse" 1 "--candidate-abits.*BOPs budget" -- \
  "$dfq" quantize --model "$tmp/absent.pt" --preset cifar --out "$tmp/cq.dfq" --size-budget 4 --candidate-abits 4,8 --check-options
mkdir -p "$tmp/foreign" && echo keep >"$tmp/foreign/notes.txt"
expect "dfq run refuses a non-empty folder it did not write" 1 "did not write" -- "${r[@]}" --out "$tmp/foreign"
[ -f "$tmp/foreign/notes.txt" ] && ok "the foreign folder is untouched" || bad "the foreign folder is untouched"
# Mixed precision through dfq run (the synthetic set comes from the cache): the card says so.
expect "dfq run with a size budget quantizes mixed precision" 0 "wrote .*card.md" -- \
  "${r0[@]}" --iters 20 --abits 4 --size-budget 4 --candidate-bits 2,4,8 --out "$tmp/run-mixed"
grep -q "W mixed A4" "$tmp/run-mixed/card.md" && ok "the card of a mixed-precision run says W mixed" ||
  bad "the card of a mixed-precision run says W mixed"
grep -q "input bits (point read)" "$tmp/run-mixed/card.md" && ok "the card lists each layer's input bits" ||
  bad "the card lists each layer's input bits"

check_reference() {
  local name="$1" file="$2" want="$3"
  if [ ! -f "$shared/weights/$file" ]; then skip "$name: ../shared not found"; return; fi
  "$dfq" eval --model "$shared/weights/$file" --data "$shared/datasets/cifar10-test" --preset cifar --quiet \
    --json "$tmp/$name.json" >"$tmp/out" 2>&1 || { bad "$name eval"; return; }
  local got
  got=$(json_field "$tmp/$name.json" correct)
  if [ $((got - want)) -le 2 ] && [ $((want - got)) -le 2 ]; then ok "$name FP32: $got/10000 (reference $want)"; else
    bad "$name FP32: $got/10000, reference $want"; fi
}
check_reference resnet20 cifar10-resnet20.pt 8103
check_reference resnet56 cifar10-resnet56.pt 8320

mnv2="$shared/weights/imagenet-mobilenetv2-random.pt"
if [ -f "$mnv2" ]; then
  expect "dfq info on MobileNetV2" 0 "1x1000" -- "$dfq" info --model "$mnv2" --preset imagenet
  # The sample's 20 WordNet-id folders, mapped to outputs by a names file (the random model's accuracy means nothing).
  { for i in $(seq 0 999); do echo "unused_$i"; done; } >"$tmp/names.txt"
  k=0
  for d in $(ls "$shared/datasets/imagenet-sample"); do sed -i "$((k * 50 + 1))s/.*/$d/" "$tmp/names.txt"; k=$((k + 1)); done
  expect "MobileNetV2 eval on imagenet-sample with --class-names" 0 "images +20 " -- \
    "$dfq" eval --model "$mnv2" --data "$shared/datasets/imagenet-sample" --preset imagenet --class-names "$tmp/names.txt" --quiet
  expect "MobileNetV2 on 20 folders without names is refused" 1 "1000 class folders" -- \
    "$dfq" eval --model "$mnv2" --data "$shared/datasets/imagenet-sample" --preset imagenet
else
  skip "MobileNetV2: ../shared not found"
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
