#!/usr/bin/env bash
# Accuracy of dfq quantize on the CIFAR-10 test folder, ResNet-20 (and ResNet-56
# with MODELS="20 56"): W8A8, W6A6, W4A8, W4A4, each without and with residual
# tensors (--residual-budget 0.25), calibrated on 256 synthetic images (dfq
# synth, direct, seed 0) and on the 1,000 real training images; every model
# evaluated by the simulated engine and by the integer engine.
# Writes every run's JSON to results/quant/ and the table (bench/quant_table.py) to results/quant/accuracy.md.
# usage: bench/quant_accuracy.sh   (env MODELS="20 56", CONFIGS="8 8,6 6,4 8,4 4", CALIBS="synthetic real",
#        BUDGETS="0 0.25" to run a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_setup
models="${MODELS:-20}"
IFS=',' read -r -a configs <<<"${CONFIGS:-8 8,6 6,4 8,4 4}"
out=results/quant
mkdir -p "$out" build/quant
for depth in $models; do
  m="cifar10-resnet$depth"
  synth=$(synthetic_set "$m" 0)
  build/dfq eval --model "$shared/weights/$m.pt" --data "$shared/datasets/cifar10-test" --preset cifar --quiet \
    --json "$out/$m-fp32.json" >/dev/null
  for cfg in "${configs[@]}"; do
    read -r w a <<<"$cfg"
    for calib in ${CALIBS:-synthetic real}; do
      src="$synth"; [ "$calib" = real ] && src="$shared/datasets/cifar10-train-1k"
      count=256; [ "$calib" = real ] && count=1000
      for budget in ${BUDGETS:-0 0.25}; do
        name="$m-w${w}a${a}-$calib-res$budget"
        build/dfq quantize --model "$shared/weights/$m.pt" --preset cifar --wbits "$w" --abits "$a" \
          --residual-budget "$budget" --calib "$src" --calib-count "$count" --out "build/quant/$name.dfq" \
          --json "$out/$name-quantize.json" --quiet >/dev/null
        for engine in simulated integer; do
          suffix=""; [ "$engine" = integer ] && suffix="-integer"
          build/dfq eval --qmodel "build/quant/$name.dfq" --data "$shared/datasets/cifar10-test" --preset cifar \
            --engine "$engine" --quiet --json "$out/$name$suffix.json" >/dev/null
        done
        echo "$name done" >&2
      done
    done
  done
done
/usr/bin/python3 bench/quant_table.py "$models" "${CONFIGS:-8 8,6 6,4 8,4 4}"
