#!/usr/bin/env bash
# The example report (results/report/report.png): the embedded Fashion-MNIST
# CNN synthesized once, quantized at W8A8, W6A6, W4A4 and W3A3 (default
# options) into sibling run folders, each evaluated on the 10,000 test images
# with the integer engine, a card per run (tests/write_card.sh, until `dfq run`
# writes it), `dfq report` on each, and a screenshot of the W4A4 report.
# usage: bash results/report/example.sh [OUT_DIR (default build/report-example)]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-build/report-example}"
model=weights/fashion_cnn.pt
data=build/data/fashion-mnist-test
if [ ! -d "$data" ]; then
  fm=/usr/share/datasets/fashion-mnist
  build/idx-to-folder "$fm/t10k-images-idx3-ubyte.gz" "$fm/t10k-labels-idx1-ubyte.gz" "$data" \
    --classes 0_tshirt_top,1_trouser,2_pullover,3_dress,4_coat,5_sandal,6_shirt,7_sneaker,8_bag,9_ankle_boot
fi
mkdir -p "$out/runs"
build/dfq synth --model "$model" --preset fashion-mnist --method direct --count 128 --iters 200 --seed 0 \
  --out "$out/synth" --dump-png --quiet
build/dfq eval --model "$model" --data "$data" --preset fashion-mnist --quiet --json "$out/fp32.json" >/dev/null
for bits in "8 8" "6 6" "4 4" "3 3"; do
  read -r w a <<<"$bits"
  run="$out/runs/fashion_cnn-w${w}a${a}"
  mkdir -p "$run"
  ln -sfn "$(realpath "$out/synth")" "$run/synth"
  cp "$out/synth/synth.json" "$out/fp32.json" "$run/"
  build/dfq quantize --model "$model" --preset fashion-mnist --calib "$out/synth" --wbits "$w" --abits "$a" \
    --out "$run/model.dfq" --json "$run/quantize.json" --quiet >/dev/null
  build/dfq eval --qmodel "$run/model.dfq" --data "$data" --preset fashion-mnist --quiet --json "$run/integer.json" >/dev/null
  bash tests/write_card.sh "$run" "$model" "$w" "$a" "128 synthetic images (direct, 200 iterations)"
done
for run in "$out"/runs/*/; do build/dfq report --run "$run"; done
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$out/chromium-profile" --hide-scrollbars \
  --force-device-scale-factor=0.75 --window-size=1200,3650 --screenshot=results/report/report.png "file://$(realpath "$out/runs/fashion_cnn-w4a4/report.html")" \
  2>/dev/null
echo "wrote $out/runs/*/report.html and results/report/report.png"
