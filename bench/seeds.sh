#!/usr/bin/env bash
# Uniform W4A4 vs mixed precision at the size of uniform W4, over synthesis seeds,
# integer engine, CIFAR-10 test. Every seed's set comes from synthetic_set (bench/common.sh): synthetic
# sets reproduce within a session but not across sessions (results/ablation/paired.md), so all steps
# of a table must come from one session's sets.
#   uniform             --wbits 4
#   mixed               --size-budget 4 (sensitivities in the float model, one layer quantized)
#   wa                  --size-budget 4 --bops-budget-bits 4,4, weight and activation bits from 2,3,4,5,6,8
#                       (the size of uniform W4 and the bit operations of uniform W4A4)
#   mixed5              --size-budget 4 --candidate-bits 2,3,4,5,6,8 (isolated, 5 bits a candidate too)
#   recon               --size-budget 4 --sensitivity reconstructed (one layer quantized, AdaRound first)
#   context             --size-budget 4 --sensitivity in-context (the rest of the model at W4A4)
# Writes OUT/*.json and OUT.md (OUT-notes.md, written by hand, is appended to it).
# usage: bench/seeds.sh   (env OUT=results/ablation/seeds, MODELS="20 56", SEEDS="0 1 2",
#        STEPS="uniform mixed mixed5 recon context wa"; FORCE=1 re-runs steps whose JSON exists,
#        TABLE_ONLY=1 only rewrites OUT.md from the JSON there)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_setup
out="${OUT:-results/ablation/seeds}"
mkdir -p "$out" build/seeds
for depth in ${MODELS:-20 56}; do
  [ "${TABLE_ONLY:-0}" = 1 ] && break
  m="cifar10-resnet$depth"
  for seed in ${SEEDS:-0 1 2}; do
    synth=$(synthetic_set "$m" "$seed")
    for step in ${STEPS:-uniform mixed mixed5 recon context}; do
      case "$step" in
        uniform) opts=(--wbits 4) ;;
        mixed) opts=(--size-budget 4) ;;
        mixed5) opts=(--size-budget 4 --candidate-bits 2,3,4,5,6,8) ;;
        recon) opts=(--size-budget 4 --sensitivity reconstructed) ;;
        context) opts=(--size-budget 4 --sensitivity in-context) ;;
        wa) opts=(--size-budget 4 --bops-budget-bits 4,4 --candidate-bits 2,3,4,5,6,8 --candidate-abits 2,3,4,5,6,8) ;;
        *) echo "bench: unknown step $step" >&2; exit 2 ;;
      esac
      name="$m-w4a4-$step-seed$seed"
      json="$out/$name.json"
      [ "${FORCE:-0}" != 1 ] && [ -f "$json" ] && continue
      quantize_eval build/seeds "$out" "$name" "$shared/weights/$m.pt" "$synth" --abits 4 "${opts[@]}" --seed "$seed"
    done
  done
done
/usr/bin/python3 - "${MODELS:-20 56}" "${SEEDS:-0 1 2}" "$out" <<'EOF'
import json, os, sys
models, seeds, out = sys.argv[1].split(), sys.argv[2].split(), sys.argv[3]
def top1(m, s, seed):
    p = f"{out}/{m}-w4a4-{s}-seed{seed}.json"
    return json.load(open(p))["top1"] if os.path.exists(p) else None
# The columns with at least one result.
steps = [s for s in ["uniform", "mixed", "mixed5", "recon", "context", "wa"]
         if any(top1(f"cifar10-resnet{d}", s, seed) is not None for d in models for seed in seeds)]
lines = ["# Uniform W4A4 vs mixed precision at the uniform W4 size, over synthesis seeds", "",
         "Command: `bench/seeds.sh`. Integer engine, CIFAR-10 test (10,000 images), 256 synthetic images from "
         "`dfq synth --method direct --seed S`, `dfq quantize --abits 4` with AdaRound (default), no residual tensors. "
         "uniform: `--wbits 4`; mixed: `--size-budget 4` (a layer's sensitivity measured in "
         "the float model with only that layer quantized); mixed5: the same with `--candidate-bits 2,3,4,5,6,8`; recon: `--size-budget 4 --sensitivity reconstructed` (the same "
         "after AdaRound of that layer); context: `--size-budget 4 --sensitivity in-context` (measured "
         "with the rest of the model at W4A4); wa: `--size-budget 4 --bops-budget-bits 4,4 --candidate-bits 2,3,4,5,6,8 "
         "--candidate-abits 2,3,4,5,6,8` (weight and input bits per layer, within the size of uniform W4 and the "
         "bit operations of uniform W4A4). Top-1 %, and the difference to uniform. All sets of this table were "
         f"synthesized in one session; results in `{out}/`.", "",
         "| model | seed | FP32 | " + " | ".join(steps) + " |", "|---|---|---|" + "---|" * len(steps)]
for d in models:
    m = f"cifar10-resnet{d}"
    fp_path = f"results/quant/{m}-fp32.json"
    fp = f"{json.load(open(fp_path))['top1']:.2f}" if os.path.exists(fp_path) else "-"
    sums = {s: [] for s in steps}
    for seed in seeds:
        base = top1(m, "uniform", seed)
        cells = []
        for s in steps:
            t = top1(m, s, seed)
            if t is None:
                cells.append("-"); continue
            if all(top1(m, x, seed) is not None for x in ("uniform", s)):
                sums[s].append(t - base)
            cells.append(f"{t:.2f}" if s == "uniform" or base is None else f"{t:.2f} ({t - base:+.2f})")
        if any(c != "-" for c in cells):
            lines.append(f"| {m} | {seed} | {fp} | " + " | ".join(cells) + " |")
    mean = ["" if s == "uniform" or not sums[s] else f"mean {sum(sums[s]) / len(sums[s]):+.2f} over {len(sums[s])}" for s in steps]
    lines.append(f"| {m} | | | " + " | ".join(mean) + " |")
notes = f"{out}-notes.md"  # the conclusions, written by hand
if os.path.exists(notes):
    lines += ["", open(notes).read().rstrip()]
text = "\n".join(lines) + "\n"
open(f"{out}.md", "w").write(text)
print(text)
EOF
