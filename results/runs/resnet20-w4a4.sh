#!/usr/bin/env bash
# The whole pipeline on ResNet-20 at W4A4, from nothing: `dfq run` with an
# empty cache (synthesis of 256 images, quantization with the default options:
# MMSE ranges, residual tensors within 25 % extra weight bits, bias correction,
# AdaRound, then FP32 and integer-engine evaluation of the 10,000 CIFAR-10 test
# images, card and report), timed as a whole. Keeps the small files of the run
# (card, JSON, report) in results/runs/cifar10-resnet20-w4a4/ with a screenshot
# of the report (report.html itself, 1.4 MB with its inline images, is not
# committed); the synthetic set and the artifact stay in OUT_DIR.
# With MIXED=1: weight and input bits per layer by the ILP within the size of uniform W4 and the bit
# operations of uniform W4A4 (results/ablation/mixed-wa.md) instead of residual tensors, kept in
# results/runs/cifar10-resnet20-w4a4-mixed-wa/.
# usage: bash results/runs/resnet20-w4a4.sh [OUT_DIR (default build/runs)]   (env MIXED=1)
set -euo pipefail
cd "$(dirname "$0")/../.."
shared=../shared
[ -d "$shared/datasets/cifar10-test" ] || { echo "needs ../shared" >&2; exit 1; }
out="${1:-build/runs}"
name=cifar10-resnet20-w4a4
scheme=(--wbits 4 --abits 4 --residual-budget 0.25)
if [ "${MIXED:-0}" = 1 ]; then
  name=cifar10-resnet20-w4a4-mixed-wa
  scheme=(--abits 4 --size-budget 4 --bops-budget-bits 4,4 --candidate-bits 2,3,4,5,6,8 --candidate-abits 2,3,4,5,6,8)
fi
run="$out/$name"
keep="results/runs/$name"
rm -rf "$run" "$out/cache" && mkdir -p "$out" "$keep"
start=$(date +%s.%N)
build/dfq run --model "$shared/weights/cifar10-resnet20.pt" --data "$shared/datasets/cifar10-test" --preset cifar \
  "${scheme[@]}" --calib-count 256 --seed 0 --threads 2 --cache "$out/cache" --quiet \
  --out "$run" | tee "$keep/stdout.txt"
end=$(date +%s.%N)
python3 -c "print(f'wall seconds (dfq run, empty cache): {$end - $start:.1f}')" | tee "$keep/wall.txt"
cp "$run"/{card.md,card.json,quantize.json,fp32.json,integer.json,synth.json,report.html} "$keep/"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$out/chromium-profile" --hide-scrollbars \
  --force-device-scale-factor=0.75 --window-size=1200,3650 --screenshot="$keep/report.png" \
  "file://$(realpath "$keep/report.html")" 2>/dev/null
echo "kept $keep/ (card, JSON, report.html, report.png)"
