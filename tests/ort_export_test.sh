#!/usr/bin/env bash
# dfq export proven in ONNX Runtime (onnxruntime-node, tools/ort):
#  1. every supported op fixture (tests/data/models), quantized at W8A8 and
#     W4A4, exported at opset 17 (and W4A4 at opset 21), runs in ORT with
#     outputs within 0.05 of the output range of dfq's simulated engine
#     (tests/export_fixtures + tests/ort_fixtures.js);
#  2. the embedded Fashion-MNIST model on 2,500 test images (the first 250 of each class) at W8A8
#     and W4A4, opset 17 and 21: ORT's predictions (tools/ort_eval.js on the
#     tensors `dfq eval --save-inputs` wrote) equal `dfq eval --engine
#     simulated --predictions` on >= 99.8 % of the images and top-1 differs by
#     <= 0.1 point (tools/compare_predictions.py).
# usage: ort_export_test.sh DFQ EXPORT_FIXTURES SOURCE_DIR
# ORT runs with its exact int8 path on x86 CPUs without VNNI (session.x64quantprecision = 1,
# tools/ort_eval.js --exact), which users of such CPUs must set too (apps/README.md, dfq export).
# Exit 77 (ctest: skipped) without onnxruntime-node (scripts/install-ort.sh).
set -uo pipefail
dfq="$1" fixtures_bin="$2" src="$3"
bin_dir="$(dirname "$dfq")"
ort_dir="$src/tools/ort/node_modules/onnxruntime-node"
if [ ! -d "$ort_dir" ] || ! command -v node >/dev/null; then
  echo "skipped: onnxruntime-node not installed (bash scripts/install-ort.sh)"
  exit 77
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; failures=$((failures + 1)); }

# 1. Every op fixture.
if "$fixtures_bin" "$tmp/fixtures" >"$tmp/fx.log" 2>&1 && node "$src/tests/ort_fixtures.js" "$tmp/fixtures/list.tsv" >"$tmp/ort_fx.log" 2>&1; then
  ok "op fixtures in ORT: $(tail -1 "$tmp/ort_fx.log")"
else
  grep -v "^ok" "$tmp/fx.log" "$tmp/ort_fx.log" | head -20
  bad "op fixtures in ORT"
fi

# 2. The embedded model on Fashion-MNIST.
fm=/usr/share/datasets/fashion-mnist
data="$tmp/fashion"
classes=0_tshirt_top,1_trouser,2_pullover,3_dress,4_coat,5_sandal,6_shirt,7_sneaker,8_bag,9_ankle_boot
"$bin_dir/idx-to-folder" "$fm/t10k-images-idx3-ubyte.gz" "$fm/t10k-labels-idx1-ubyte.gz" "$data" --classes "$classes" \
  >/dev/null 2>&1 || { bad "idx-to-folder (dataset-fashion-mnist installed?)"; exit 1; }
# 250 images per class: the simulated engine (float64) takes ~7 ms per image.
for class_dir in "$data"/*/; do ls "$class_dir" | sort | tail -n +251 | sed "s|^|$class_dir|" | xargs rm -f; done
model="$src/weights/fashion_cnn.pt"
common=(--data "$data" --preset fashion-mnist --threads 2 --quiet)
"$dfq" synth --model "$model" --preset fashion-mnist --count 64 --iters 50 --seed 0 --threads 2 --quiet \
  --out "$tmp/synth" >"$tmp/synth.log" 2>&1 || { cat "$tmp/synth.log"; bad "synth"; exit 1; }
for bits in 8 4; do
  q="$tmp/w${bits}a${bits}.dfq"
  "$dfq" quantize --model "$model" --preset fashion-mnist --wbits $bits --abits $bits --calib "$tmp/synth" \
    --reconstruct none --threads 2 --quiet --out "$q" >"$tmp/q.log" 2>&1 || { cat "$tmp/q.log"; bad "quantize W${bits}A${bits}"; continue; }
  "$dfq" eval --qmodel "$q" --engine simulated "${common[@]}" --predictions "$tmp/sim$bits.csv" \
    --save-inputs "$tmp/inputs.f32" >/dev/null 2>&1 || { bad "eval simulated W${bits}A${bits}"; continue; }
  "$dfq" eval --qmodel "$q" --engine integer "${common[@]}" --predictions "$tmp/int$bits.csv" >/dev/null 2>&1 ||
    { bad "eval integer W${bits}A${bits}"; continue; }
  for opset in 17 21; do
    name="W${bits}A${bits} opset $opset"
    "$dfq" export --qmodel "$q" --out "$tmp/m.onnx" --opset $opset --quiet >"$tmp/x.log" 2>&1 ||
      { cat "$tmp/x.log"; bad "export $name"; continue; }
    node "$src/tools/ort_eval.js" --model "$tmp/m.onnx" --inputs "$tmp/inputs.f32" --predictions "$tmp/ort.csv" \
      --threads 2 --exact >"$tmp/ort.json" 2>"$tmp/ort.log" || { cat "$tmp/ort.log"; bad "ORT $name"; continue; }
    /usr/bin/python3 "$src/tools/compare_predictions.py" "$tmp/sim$bits.csv" "$tmp/ort.csv" --json "$tmp/c.json" >/dev/null ||
      { bad "compare $name"; continue; }
    verdict="$(/usr/bin/python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
good = c["agree_percent"] >= 99.8 and abs(c["top1_a"] - c["top1_b"]) <= 0.1
print(("ok" if good else "bad"), "agreement %.2f %% (%d of %d), top-1 simulated %.2f, ORT %.2f" % (
    c["agree_percent"], c["agree"], c["images"], c["top1_a"], c["top1_b"]))' "$tmp/c.json")"
    if [ "${verdict%% *}" = ok ]; then ok "$name: ORT vs simulated ${verdict#* }"; else bad "$name: ORT vs simulated ${verdict#* }"; fi
    /usr/bin/python3 "$src/tools/compare_predictions.py" "$tmp/int$bits.csv" "$tmp/ort.csv" --json "$tmp/ci.json" >/dev/null &&
      echo "     (integer engine vs ORT: $(/usr/bin/python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print("%.2f %%" % c["agree_percent"])' "$tmp/ci.json"))"
  done
done
[ "$failures" -eq 0 ] && echo "all passed" || echo "$failures failed"
[ "$failures" -eq 0 ]
