#!/usr/bin/env bash
# Mixed precision's size/accuracy trade-off: dfq quantize --size-budget B for
# several B (bits per weight) at A4 (env ABITS), default options otherwise, 256
# synthetic calibration images (seed 0, bench/common.sh), the
# integer engine on the 10,000 CIFAR-10 test images; uniform weights at the
# integral budgets for comparison. Predicted = the ILP's summed divergence
# (KL of the logits, each layer quantized alone) at that budget.
# Writes results/pareto/*.json and results/pareto/pareto.md.
# usage: bench/pareto.sh   (env MODELS="20 56", BUDGETS="2.5 3 3.5 4 5 6", ABITS=4)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_setup
out=results/pareto
mkdir -p "$out" build/pareto
abits="${ABITS:-4}"
budgets="${BUDGETS:-2.5 3 3.5 4 5 6}"
for depth in ${MODELS:-20}; do
  m="cifar10-resnet$depth"
  synth=$(synthetic_set "$m" 0)
  for b in $budgets; do
    for kind in mixed uniform; do
      if [ "$kind" = mixed ]; then opts=(--size-budget "$b"); else
        [[ "$b" =~ ^[0-9]+$ ]] || continue
        opts=(--wbits "$b")
      fi
      name="$m-a$abits-$kind-$b"
      build/dfq quantize --model "$shared/weights/$m.pt" --preset cifar --abits "$abits" "${opts[@]}" --calib "$synth" \
        --out "build/pareto/$name.dfq" --json "$out/$name-quantize.json" --quiet >/dev/null
      build/dfq eval --qmodel "build/pareto/$name.dfq" --data "$shared/datasets/cifar10-test" --preset cifar --quiet \
        --json "$out/$name.json" >/dev/null
      echo "$name done" >&2
    done
  done
done
/usr/bin/python3 - "${MODELS:-20}" "$budgets" "$abits" <<'PY'
import json, os, sys
models, budgets, abits = sys.argv[1].split(), sys.argv[2].split(), sys.argv[3]
def load(name):
    p = f"results/pareto/{name}.json"
    return json.load(open(p)) if os.path.exists(p) else None
lines = ["# Mixed precision: size budget vs predicted and measured accuracy", "",
         f"Command: `bench/pareto.sh` (MODELS=\"{sys.argv[1]}\", BUDGETS=\"{sys.argv[2]}\", ABITS={abits}). "
         "Weights only (activations uniform), 256 synthetic calibration images, default options (AdaRound, "
         "bias correction); integer engine, CIFAR-10 test (10,000 images). Predicted: the ILP's objective, the "
         "summed KL divergence of the logits with each layer quantized alone (lower is better). The ILP's own "
         "curve at half-bit steps is in each run's JSON (`mixed_precision.pareto`).", ""]
for depth in models:
    m = f"cifar10-resnet{depth}"
    fp = json.load(open(f"results/quant/{m}-fp32.json"))["top1"] if os.path.exists(f"results/quant/{m}-fp32.json") else None
    lines += [f"## {m} (FP32 {fp:.2f})" if fp else f"## {m}", "",
              "| budget bits/weight | stored bits/weight | predicted divergence | mixed top-1 | uniform top-1 |",
              "|---|---|---|---|---|"]
    for b in budgets:
        q, e, u = load(f"{m}-a{abits}-mixed-{b}-quantize"), load(f"{m}-a{abits}-mixed-{b}"), load(f"{m}-a{abits}-uniform-{b}")
        if not q or not e:
            continue
        params = sum(l["parameters"] for l in q["layers"])
        lines.append(f"| {b} | {q['weight_bits_total'] / params:.3f} | {q['mixed_precision']['predicted_divergence']:.4g} | "
                     f"{e['top1']:.2f} | {u['top1']:.2f} |" if u else
                     f"| {b} | {q['weight_bits_total'] / params:.3f} | {q['mixed_precision']['predicted_divergence']:.4g} | "
                     f"{e['top1']:.2f} | - |")
    lines.append("")
open("results/pareto/pareto.md", "w").write("\n".join(lines))
print("\n".join(lines))
PY
