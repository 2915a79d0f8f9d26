#!/usr/bin/env bash
# Uniform W4A4 vs mixed precision at the size of uniform W4, over synthesis seeds,
# integer engine, CIFAR-10 test. Seed 0 reuses bench/ablation.sh's set and JSON.
#   uniform             --wbits 4
#   mixed               --size-budget 4 (sensitivities in the float model, one layer quantized)
#   mixed5              --size-budget 4 --candidate-bits 2,3,4,5,6,8 (isolated, 5 bits a candidate too)
#   recon               --size-budget 4 --sensitivity reconstructed (one layer quantized, AdaRound first)
#   context             --size-budget 4 --sensitivity in-context (the rest of the model at W4A4)
# Writes results/ablation/seeds/*.json and results/ablation/seeds.md.
# usage: bench/seeds.sh   (env MODELS="20 56", SEEDS="0 1 2", STEPS="uniform mixed mixed5 recon context";
#        FORCE=1 re-runs steps whose JSON exists, TABLE_ONLY=1 only rewrites seeds.md from the JSON there)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/quantize-eval.sh
shared=../shared
[ -d "$shared/datasets/cifar10-test" ] || { echo "bench: needs ../shared" >&2; exit 1; }
[ -x build/dfq ] || bash scripts/build.sh
out=results/ablation/seeds
mkdir -p "$out" build/seeds
for depth in ${MODELS:-20 56}; do
  [ "${TABLE_ONLY:-0}" = 1 ] && break
  m="cifar10-resnet$depth"
  for seed in ${SEEDS:-0 1 2}; do
    synth="build/seeds/$m-synth-seed$seed"
    [ "$seed" = 0 ] && synth="build/quant/$m-synth"
    [ -f "$synth/images.pt" ] ||
      build/dfq synth --model "$shared/weights/$m.pt" --preset cifar --method direct --count 256 --seed "$seed" \
        --out "$synth" --quiet >/dev/null
    for step in ${STEPS:-uniform mixed mixed5 recon context}; do
      case "$step" in
        uniform) opts=(--wbits 4) ;;
        mixed) opts=(--size-budget 4) ;;
        mixed5) opts=(--size-budget 4 --candidate-bits 2,3,4,5,6,8) ;;
        recon) opts=(--size-budget 4 --sensitivity reconstructed) ;;
        context) opts=(--size-budget 4 --sensitivity in-context) ;;
        *) echo "bench: unknown step $step" >&2; exit 2 ;;
      esac
      name="$m-w4a4-$step-seed$seed"
      json="$out/$name.json"
      # Seed 0 of uniform and isolated mixed is bench/ablation.sh's run (same commands).
      if [ "$seed" = 0 ] && { [ "$step" = uniform ] || [ "$step" = mixed ]; }; then
        src="results/ablation/$m-w4a4-$([ "$step" = uniform ] && echo adaround || echo mixed)"
        if [ -f "$src.json" ] && [ "${FORCE:-0}" != 1 ]; then
          cp "$src.json" "$json"; cp "$src-quantize.json" "$out/$name-quantize.json"; continue
        fi
      fi
      [ "${FORCE:-0}" != 1 ] && [ -f "$json" ] && continue
      quantize_eval build/seeds "$out" "$name" "$shared/weights/$m.pt" "$synth" --abits 4 "${opts[@]}" --seed "$seed"
    done
  done
done
/usr/bin/python3 - "${MODELS:-20 56}" "${SEEDS:-0 1 2}" <<'EOF'
import json, os, sys
models, seeds = sys.argv[1].split(), sys.argv[2].split()
def top1(m, s, seed):
    p = f"results/ablation/seeds/{m}-w4a4-{s}-seed{seed}.json"
    return json.load(open(p))["top1"] if os.path.exists(p) else None
# The columns with at least one result.
steps = [s for s in ["uniform", "mixed", "mixed5", "recon", "context"]
         if any(top1(f"cifar10-resnet{d}", s, seed) is not None for d in models for seed in seeds)]
lines = ["# Uniform W4A4 vs mixed precision at the uniform W4 size, over synthesis seeds", "",
         "Command: `bench/seeds.sh`. Integer engine, CIFAR-10 test (10,000 images), 256 synthetic images from "
         "`dfq synth --method direct --seed S`, `dfq quantize --abits 4` with AdaRound (default), no residual tensors. "
         "uniform: `--wbits 4`; mixed: `--size-budget 4` (a layer's sensitivity measured in "
         "the float model with only that layer quantized); mixed5: the same with `--candidate-bits 2,3,4,5,6,8`; recon: `--size-budget 4 --sensitivity reconstructed` (the same "
         "after AdaRound of that layer); context: `--size-budget 4 --sensitivity in-context` (measured "
         "with the rest of the model at W4A4). Top-1 %, and the difference to uniform.", "",
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
notes = "results/ablation/seeds-notes.md"  # the conclusions, written by hand
if os.path.exists(notes):
    lines += ["", open(notes).read().rstrip()]
text = "\n".join(lines) + "\n"
open("results/ablation/seeds.md", "w").write(text)
print(text)
EOF
