#!/usr/bin/env bash
# Power-of-two scales and 4-bit -> 8-bit weight lookup tables (issue 6, item 4)
# against uniform per-channel scales: integer engine, CIFAR-10 test (10,000
# images), 256 synthetic calibration images (seed 0, bench/common.sh),
# dfq quantize's defaults otherwise (MMSE output objective, full bias
# correction, AdaRound: between table levels for a lookup table).
#   uniform    (default: per-channel scales, any real)
#   pow2       --pow2-scales
#   pow2+lut   --pow2-scales --weight-lut
#   lut        --weight-lut
# Writes results/pow2_lut/*.json and results/pow2_lut.md.
# usage: bench/pow2_lut.sh   (env MODELS="20 56", CONFIGS="4 4,4 8", VARIANTS="uniform pow2 pow2+lut lut";
#        runs whose JSON exists are kept, FORCE=1 re-runs them)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_setup
out=results/pow2_lut
mkdir -p "$out" build/pow2_lut
models="${MODELS:-20 56}"
variants="${VARIANTS:-uniform pow2 pow2+lut lut}"
IFS=',' read -r -a configs <<<"${CONFIGS:-4 4,4 8}"
for depth in $models; do
  m="cifar10-resnet$depth"
  synth=$(synthetic_set "$m" 0)
  [ -f "$out/$m-fp32.json" ] ||
    build/dfq eval --model "$shared/weights/$m.pt" --data "$shared/datasets/cifar10-test" --preset cifar --quiet \
      --json "$out/$m-fp32.json" >/dev/null
  for cfg in "${configs[@]}"; do
    read -r w a <<<"$cfg"
    for variant in $variants; do
      case "$variant" in
        uniform) opts=() ;;
        pow2) opts=(--pow2-scales) ;;
        pow2+lut) opts=(--pow2-scales --weight-lut) ;;
        lut) opts=(--weight-lut) ;;
        *) echo "bench: unknown variant $variant" >&2; exit 1 ;;
      esac
      name="$m-w${w}a${a}-$variant"
      [ "${FORCE:-0}" != 1 ] && [ -f "$out/$name.json" ] && continue
      quantize_eval build/pow2_lut "$out" "$name" "$shared/weights/$m.pt" "$synth" --wbits "$w" --abits "$a" ${opts[@]+"${opts[@]}"}
    done
  done
done
/usr/bin/python3 - "$models" "${CONFIGS:-4 4,4 8}" "$variants" <<'EOF'
import json, os, statistics, sys
models, configs, variants = sys.argv[1].split(), [c.split() for c in sys.argv[2].split(",")], sys.argv[3].split()
root = "results/pow2_lut"
def load(name):
    path = os.path.join(root, name + ".json")
    return json.load(open(path)) if os.path.exists(path) else None
lines = ["# Power-of-two scales and weight lookup tables (integer engine, CIFAR-10 test, 10,000 images)", "",
         f"Command: `bench/pow2_lut.sh` (MODELS=\"{sys.argv[1]}\", CONFIGS=\"{sys.argv[2]}\"). 256 synthetic calibration "
         "images (`dfq synth --method direct --seed 0`), `dfq quantize` defaults otherwise (per-channel weights, MMSE with "
         "the output objective, full bias correction, AdaRound; with a table AdaRound chooses between its two levels "
         "around each weight). uniform: any real scale; pow2: `--pow2-scales` (every weight, activation and input scale "
         "2^k, so every requantization is a shift); lut: `--weight-lut` (4-bit codes into a per-layer table of 16 int8 "
         "levels). Top-1 % of the integer engine (change vs FP32); accuracy is deterministic, times are not (shared "
         "2-core machine).", "",
         "| model | config | FP32 | " + " | ".join(variants) + " |", "|---|---|---|" + "---|" * len(variants)]
details = ["", "Artifact bytes, mean table objective / uniform grid objective over the table layers (lower is better; "
           "the fit's own objective, before AdaRound), and quantize seconds (rough):", "",
           "| model | config | variant | artifact bytes | table objective ratio (mean, min) | quantize s |", "|---|---|---|---|---|---|"]
for d in models:
    m = f"cifar10-resnet{d}"
    fp = load(f"{m}-fp32")
    for w, a in configs:
        cells = []
        for v in variants:
            j = load(f"{m}-w{w}a{a}-{v}")
            cells.append(f"{j['top1']:.2f} ({j['top1'] - fp['top1']:+.2f})" if j and fp else "-")
            q = load(f"{m}-w{w}a{a}-{v}-quantize")
            if q:
                ratios = [l["lut_objective_ratio"] for l in q["layers"] if "lut_objective_ratio" in l]
                r = f"{statistics.mean(ratios):.3f}, {min(ratios):.3f}" if ratios else "-"
                details.append(f"| ResNet-{d} | W{w}A{a} | {v} | {q['artifact_bytes']:.0f} | {r} | {q['seconds']:.1f} |")
        lines.append(f"| ResNet-{d} | W{w}A{a} | {fp['top1']:.2f} | " + " | ".join(cells) + " |" if fp else "")
open("results/pow2_lut.md", "w").write("\n".join(lines + details) + "\n")
print("\n".join(lines + details))
EOF
