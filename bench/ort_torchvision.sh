#!/usr/bin/env bash
# torchvision architectures exported by dfq and run in ONNX Runtime: for each
# model's W8A8 and W4A8 artifacts of bench/torchvision_coverage.sh
# (build/torchvision/NAME/{w8a8,w4a8}.dfq: random weights, BN statistics from
# the 20 sample images, 8 synthetic calibration images), `dfq export` (opset
# 17), `dfq eval --engine simulated --predictions --save-inputs` on the 20
# images of ../shared/datasets/imagenet-sample, tools/ort_eval.js on the same
# tensors, and top-1 agreement (tools/compare_predictions.py). Accuracy means
# nothing (random weights); agreement does. Writes results/ort_torchvision.md
# with the rows of every model in OUT/ort-rows/, also from earlier runs (MODELS
# re-runs a subset).
# usage: [MODELS="mobilenet_v3_small efficientnet_b0"] [OUT=build/torchvision] bash bench/ort_torchvision.sh
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
out="${OUT:-build/torchvision}"
all_models="resnet18 resnet50 resnext50_32x4d wide_resnet50_2 mobilenet_v2 mobilenet_v3_small mobilenet_v3_large
mnasnet1_0 shufflenet_v2_x1_0 efficientnet_b0 efficientnet_v2_s regnet_x_400mf regnet_y_400mf densenet121 googlenet
inception_v3 vgg11_bn squeezenet1_0 alexnet"
models="${MODELS:-$all_models}"
data=../shared/datasets/imagenet-sample
names="$out/imagenet-sample-names.txt"
py=/usr/bin/python3
[ -f "$names" ] || { echo "bench: $names missing: run bench/torchvision_coverage.sh first" >&2; exit 1; }
bash scripts/install-ort.sh >/dev/null

precision=build/tests/simulate_precision  # the simulated engine in float32 and float64 (tests/simulate_precision.cpp)
[ -x "$precision" ] || { echo "bench: $precision missing (cmake --build build --target simulate_precision)" >&2; exit 1; }
mkdir -p "$out/ort-rows"
for m in $models; do
  rows=()
  size=224 eval_size=()
  [ "$m" = inception_v3 ] && size=299 eval_size=(--resize 342 --crop 299)
  for s in w8a8 w4a8; do
    d="$out/$m" q="$out/$m/$s.dfq"
    if [ ! -f "$q" ]; then rows+=("| $m | ${s^^} | no artifact ($q) | | | | | |"); continue; fi
    start=$(date +%s.%N)
    cell() { printf '%s' "$1" | tr '\n' ' ' | sed 's/|/\\|/g' | cut -c1-160; }
    if ! err=$(build/dfq export --qmodel "$q" --out "$d/$s.onnx" --input-size "${size}x$size" --quiet 2>&1); then
      rows+=("| $m | ${s^^} | ✗ $(cell "$err") | | | | | |"); continue
    fi
    bytes=$(stat -c %s "$d/$s.onnx")
    build/dfq eval --qmodel "$q" --engine simulated --data "$data" --preset imagenet "${eval_size[@]}" \
      --class-names "$names" --batch 20 --threads 2 --quiet --predictions "$d/$s-sim.csv" \
      --save-inputs "$d/$s-inputs.f32" >/dev/null 2>"$d/$s-sim.err" || { rows+=("| $m | ${s^^} | ok | simulated eval failed | | | | |"); continue; }
    if ! err=$(node tools/ort_eval.js --model "$d/$s.onnx" --inputs "$d/$s-inputs.f32" --predictions "$d/$s-ort.csv" \
        --logits "$d/$s-ort.bin" --threads 2 --batch 20 2>&1 >/dev/null); then
      rows+=("| $m | ${s^^} | ok ($bytes B) | ORT: $(cell "$err") | | | |"); continue
    fi
    $py tools/compare_predictions.py "$d/$s-sim.csv" "$d/$s-ort.csv" --json "$d/$s-sim-vs-ort.json" >/dev/null
    "$precision" "$q" "$d/$s-inputs.f32" "$d/$s-sim" || { rows+=("| $m | ${s^^} | ok | simulate_precision failed | | | |"); continue; }
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    rows+=("$($py - "$d/$s-ort.bin" "$d/$s-sim.f32.bin" "$d/$s-sim.f64.bin" "$d/$s-sim-vs-ort.json" <<PY
import json, sys
import numpy as np
o, f32, f64 = (np.fromfile(p, "<f4") for p in sys.argv[1:4])
n = json.load(open(sys.argv[4]))["images"]
o, f32, f64 = (a.reshape(n, -1) for a in (o, f32, f64))
agree = lambda a, b: "%d/%d" % ((a.argmax(1) == b.argmax(1)).sum(), n)
rel = lambda a, b: np.abs(a - b).max() / np.abs(b).max()
print("| $m | ${s^^} | ok ($bytes B) | %s | %s | %s | %.1e / %.1e | %.0f |" % (
    agree(o, f64), agree(f32, f64), agree(o, f32), rel(o, f64), rel(f32, f64), $seconds))
PY
)")
    echo "${rows[-1]}" >&2
  done
  printf '%s\n' "${rows[@]}" >"$out/ort-rows/$m.md"
done

{
  echo "# torchvision architectures: dfq export in ONNX Runtime"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), CPU: $(cpu_description). dfq commit $(git rev-parse --short HEAD);"
  echo "ONNX Runtime: onnxruntime-node 1.22.0, CPU EP, optimization level all, 2 threads."
  echo "Command: \`bash bench/ort_torchvision.sh\` (rows of models not re-run come from earlier runs: their seconds and"
  echo "commit may differ)"
  echo
  echo "Artifacts: those of \`bench/torchvision_coverage.sh\` (\`results/torchvision_coverage.md\`: random weights, BN"
  echo "statistics from the sample images, 8 synthetic calibration images; alexnet and squeezenet1_0 calibrated on"
  echo "the sample images). \`dfq export --opset 17 --input-size 224x224\` (inception_v3 299x299), then the simulated"
  echo "engine and ORT on the same preprocessed tensors of the 20 images of \`../shared/datasets/imagenet-sample\`."
  echo "Top-1 agreement (images with the same prediction) of ORT with \`dfq eval --engine simulated\` (float64), and,"
  echo "as the yardstick, of dfq's own simulated engine computed in float32 (what ORT computes in) with float64"
  echo "(\`tests/simulate_precision\`): with random weights these networks amplify the rare point where float32 and"
  echo "float64 round differently into different logits, so agreement with float64 can be no better than float32's"
  echo "own. Last column but one: max |difference| / max |float64 logits| of ORT and of float32 simulation."
  echo
  echo "| model | bits | export (opset 17) | ORT vs simulated | float32 vs float64 simulated | ORT vs float32 simulated | max rel. difference ORT / float32 | seconds |"
  echo "|---|---|---|---|---|---|---|---|"
  for m in $all_models; do [ -f "$out/ort-rows/$m.md" ] && cat "$out/ort-rows/$m.md"; done
} >results/ort_torchvision.md
cat results/ort_torchvision.md
