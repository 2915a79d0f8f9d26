#!/usr/bin/env bash
# Ablation at 4 bits (and W3A3): each technique's contribution, integer engine,
# 256 synthetic calibration images (seed 0, the set bench/seeds.sh makes: sets reproduce within a session
# only, so a table's runs must share one session's set), CIFAR-10 test.
#   mmse            --bias-correction none --reconstruct none
#   +residual       --residual-budget 0.25, same
#   +bias           residual, full bias correction
#   +adaround       residual, bias correction, AdaRound (dfq quantize's default)
#   adaround        no residual (uniform 4-bit size)
#   mixed           --size-budget W (the size of uniform W-bit weights) + AdaRound, no residual
#   mixed-wa        weight and input bits per layer from 2,3,4,5,6,8 within the size of uniform W-bit weights
#                   and the bit operations of uniform WxA (--size-budget W --bops-budget-bits W,A) + AdaRound
# Writes results/ablation/*.json and results/ablation/ablation.md.
# usage: bench/ablation.sh   (env MODELS="20 56", CONFIGS="4 4,4 8,3 3"; the table covers TABLE_MODELS and
#        TABLE_CONFIGS, default the same, so runs done earlier stay in it; FORCE=1 re-runs steps whose JSON exists)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_setup
out=results/ablation
mkdir -p "$out" build/ablation
IFS=',' read -r -a configs <<<"${CONFIGS:-4 4,4 8,3 3}"
for depth in ${MODELS:-20}; do
  m="cifar10-resnet$depth"
  synth=$(synthetic_set "$m" 0)
  for cfg in "${configs[@]}"; do
    read -r w a <<<"$cfg"
    for step in mmse +residual +bias +adaround adaround mixed mixed-wa; do
      case "$step" in
        mmse) opts=(--wbits "$w" --bias-correction none --reconstruct none) ;;
        +residual) opts=(--wbits "$w" --residual-budget 0.25 --bias-correction none --reconstruct none) ;;
        +bias) opts=(--wbits "$w" --residual-budget 0.25 --reconstruct none) ;;
        +adaround) opts=(--wbits "$w" --residual-budget 0.25) ;;
        adaround) opts=(--wbits "$w") ;;
        mixed) opts=(--size-budget "$w") ;;
        mixed-wa) opts=(--size-budget "$w" --bops-budget-bits "$w,$a" --candidate-bits 2,3,4,5,6,8 --candidate-abits 2,3,4,5,6,8) ;;
      esac
      name="$m-w${w}a${a}-$step"
      [ "${FORCE:-0}" != 1 ] && [ -f "$out/$name.json" ] && continue
      quantize_eval build/ablation "$out" "$name" "$shared/weights/$m.pt" "$synth" --abits "$a" "${opts[@]}"
    done
  done
done
/usr/bin/python3 - "${TABLE_MODELS:-${MODELS:-20}}" "${TABLE_CONFIGS:-${CONFIGS:-4 4,4 8,3 3}}" <<'EOF'
import json, os, sys
models, configs = sys.argv[1].split(), [c.split() for c in sys.argv[2].split(",")]
steps = ["mmse", "+residual", "+bias", "+adaround", "adaround", "mixed", "mixed-wa"]
def load(path):
    return json.load(open(path)) if os.path.exists(path) else None
lines = ["# Ablation (integer engine, CIFAR-10 test, 10,000 images; 256 synthetic calibration images)", "",
         "Command: `bench/ablation.sh` (MODELS=\"%s\", CONFIGS=\"%s\"). Top-1 %% (change vs FP32) and stored weight bits "
         "per weight. mmse: MMSE ranges only (no bias correction, no reconstruction); +residual: residual tensors "
         "within 25 %% extra weight bits; +bias: full bias correction; +adaround: AdaRound reconstruction (the "
         "default of `dfq quantize`); adaround: no residual tensors (the size of uniform W4); mixed: per-layer weight "
         "bits by the ILP at the average bits of uniform W (`--size-budget W`) + AdaRound; mixed-wa: weight and input "
         "bits per layer from 2,3,4,5,6,8 by the ILP within the size of uniform W and the bit operations of uniform WxA "
         "(`--size-budget W --bops-budget-bits W,A`) + AdaRound. All runs on one synthetic set (seed 0) made in one "
         "session." % (sys.argv[1], sys.argv[2]), "",
         "| model | config | FP32 | " + " | ".join(steps) + " |", "|---|---|---|" + "---|" * len(steps)]
for d in models:
    m = f"cifar10-resnet{d}"
    fp = load(f"results/quant/{m}-fp32.json")
    if not fp:
        continue
    for w, a in configs:
        cells = []
        for s in steps:
            j, q = load(f"results/ablation/{m}-w{w}a{a}-{s}.json"), load(f"results/ablation/{m}-w{w}a{a}-{s}-quantize.json")
            if not j:
                cells.append("-")
                continue
            params = sum(l["parameters"] for l in q["layers"])
            cells.append(f"{j['top1']:.2f} ({j['top1'] - fp['top1']:+.2f}), {q['weight_bits_total'] / params:.2f} b/w")
        lines.append(f"| {m} | W{w}A{a} | {fp['top1']:.2f} | " + " | ".join(cells) + " |")
text = "\n".join(lines) + "\n"
open("results/ablation/ablation.md", "w").write(text)
print(text)
EOF
