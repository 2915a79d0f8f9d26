#!/usr/bin/env bash
# The example report (results/report/report.png): the embedded Fashion-MNIST
# CNN synthesized once, quantized at W8A8, W6A6, W4A4 and W3A3 (default
# options) into sibling run folders by `dfq run` (the synthetic set and the FP32
# evaluation reused from its cache after the first), each evaluated on the
# 10,000 test images with the integer engine, and a screenshot of the W4A4 report.
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
for bits in "8 8" "6 6" "4 4" "3 3"; do
  read -r w a <<<"$bits"
  build/dfq run --model "$model" --data "$data" --preset fashion-mnist --wbits "$w" --abits "$a" --calib-count 128 \
    --iters 200 --seed 0 --cache "$out/cache" --quiet --out "$out/runs/fashion_cnn-w${w}a${a}" >/dev/null
done
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$out/chromium-profile" --hide-scrollbars \
  --force-device-scale-factor=0.75 --window-size=1200,3650 --screenshot=results/report/report.png "file://$(realpath "$out/runs/fashion_cnn-w4a4/report.html")" \
  2>/dev/null
echo "wrote $out/runs/*/report.html and results/report/report.png"
