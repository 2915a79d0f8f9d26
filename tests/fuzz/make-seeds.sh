#!/usr/bin/env bash
# Regenerates the checked-in seed corpora (tests/fuzz/corpus/), e.g. after the
# .dfq format changes: real artifacts from the normal build's dfq (build/dfq,
# scripts/build.sh) and small images from make_image_seeds.cpp.
#   artifact/  the embedded model (weights/fashion_cnn.pt) W8A8, W4A4 with a residual
#              layer, W4A4 with lookup tables and power-of-two scales, mixed precision (--size-budget 4, 2/3/5/8-bit
#              bit streams); the fixture whole_net.pt (residual add, max pool, cat, mean, linear) W8A8 and W4A4;
#              fashion-mixed-v4.dfq is a version 4 file (nibbles and int8), kept as it is for the old reader
#              (tests/quant_test.cpp reads it too)
#   image/     JPEG/PNG/BMP, gray 28x28 and colour 32x32, RGBA, 16-bit, 1x1, sizes
#              that the imagenet preset enlarges or shrinks
set -euo pipefail
cd "$(dirname "$0")/../.."
dfq=build/dfq
[ -x "$dfq" ] || { echo "make-seeds: $dfq not found (bash scripts/build.sh)" >&2; exit 1; }
out=tests/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$out/image"
g++ -std=c++17 -O1 tests/fuzz/make_image_seeds.cpp -o "$tmp/make_image_seeds" $(pkg-config --cflags --libs opencv4)
"$tmp/make_image_seeds" "$out/image"

mkdir -p "$out/artifact"
# Few calibration images and iterations: the seeds need valid structure, not accuracy.
fast=(--calib-count 32 --synth-iters 20 --reconstruct-iters 20 --threads 2 --quiet --seed 1)
fashion=(--model weights/fashion_cnn.pt --preset fashion-mnist)
"$dfq" quantize "${fashion[@]}" "${fast[@]}" --wbits 8 --abits 8 --out "$out/artifact/fashion-w8a8.dfq"
"$dfq" quantize "${fashion[@]}" "${fast[@]}" --wbits 4 --abits 4 --residual-layers 2 --out "$out/artifact/fashion-w4a4-residual.dfq"
"$dfq" quantize "${fashion[@]}" "${fast[@]}" --wbits 4 --abits 4 --weight-lut --pow2-scales --out "$out/artifact/fashion-w4a4-lut-pow2.dfq"
"$dfq" quantize "${fashion[@]}" "${fast[@]}" --size-budget 4 --candidate-bits 2,3,5,8 --out "$out/artifact/fashion-mixed.dfq"
whole=(--model tests/data/models/whole_net.pt --preset cifar)
"$dfq" quantize "${whole[@]}" "${fast[@]}" --wbits 8 --abits 8 --out "$out/artifact/whole-net-w8a8.dfq"
"$dfq" quantize "${whole[@]}" "${fast[@]}" --wbits 4 --abits 4 --residual-layers 1 --out "$out/artifact/whole-net-w4a4.dfq"
ls -l "$out/artifact" "$out/image"
