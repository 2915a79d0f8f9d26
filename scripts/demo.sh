#!/usr/bin/env bash
# The main job on the embedded default: the project's own Fashion-MNIST CNN
# (weights/fashion_cnn.pt), evaluated on the 10,000 Fashion-MNIST test images
# from Debian's dataset-fashion-mnist, converted once to an ImageNet-style folder.
set -euo pipefail
cd "$(dirname "$0")/.."

data=build/data/fashion-mnist-test
src=/usr/share/datasets/fashion-mnist
build/idx-to-folder "$src/t10k-images-idx3-ubyte.gz" "$src/t10k-labels-idx1-ubyte.gz" "$data" \
  --classes 0_tshirt_top,1_trouser,2_pullover,3_dress,4_coat,5_sandal,6_shirt,7_sneaker,8_bag,9_ankle_boot

mkdir -p build/demo
build/dfq eval --model weights/fashion_cnn.pt --data "$data" --preset fashion-mnist \
  --json build/demo/fashion_cnn-fp32.json
