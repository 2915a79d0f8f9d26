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

# Data-free quantization: synthesize 256 calibration images from the model's BN
# statistics once, quantize to W8A8 and W4A4 (residual tensors within 25 % extra
# weight bits), evaluate both with the integer-only engine.
build/dfq synth --model weights/fashion_cnn.pt --preset fashion-mnist --method direct --count 256 --iters 200 \
  --out build/demo/synth --seed 0 --quiet
for cfg in "8 8 0" "4 4 0.25"; do
  read -r w a budget <<<"$cfg"
  build/dfq quantize --model weights/fashion_cnn.pt --preset fashion-mnist --wbits "$w" --abits "$a" \
    --residual-budget "$budget" --calib build/demo/synth --out "build/demo/fashion_cnn-w${w}a${a}.dfq" \
    --json "build/demo/fashion_cnn-w${w}a${a}-quantize.json" --quiet >/dev/null
  build/dfq eval --qmodel "build/demo/fashion_cnn-w${w}a${a}.dfq" --data "$data" --preset fashion-mnist --quiet \
    --json "build/demo/fashion_cnn-w${w}a${a}.json" >/dev/null
done
python3 - <<'PY'
import json
rows = [("FP32", "build/demo/fashion_cnn-fp32.json"), ("W8A8 (integer engine)", "build/demo/fashion_cnn-w8a8.json"),
        ("W4A4 + residual (integer engine)", "build/demo/fashion_cnn-w4a4.json")]
print("\naccuracy on the Fashion-MNIST test set (synthetic calibration, no training data):")
for name, path in rows:
    j = json.load(open(path))
    print(f"  {name:30s} top-1 {j['top1']:6.2f} %  ({j['correct']}/{j['images']})")
PY
