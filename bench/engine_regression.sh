#!/usr/bin/env bash
# Before/after check of a change to the op layer or the engines: the same
# synthetic sets quantized by two dfq binaries (ResNet-20 and ResNet-56 from
# ../shared, W8A8 and W4A4, the default recipe otherwise), then
#   - the two artifacts compared byte for byte (cmp) and integer-engine top-1
#     on the 10,000 CIFAR-10 test images with each binary on its own artifact;
#   - integer-engine and FP32 images/s of each binary (--predecode: decoding
#     excluded, 2 threads, batch 256), RUNS interleaved runs, medians.
# Writes results/engine_regression.md. Run it on an idle machine.
# usage: [OLD_LABEL=...] [NEW_LABEL=...] [DEPTHS="20 56"] bench/engine_regression.sh OLD_DFQ NEW_DFQ SYNTH_DIR_R20 SYNTH_DIR_R56 [RUNS]
#   OLD_LABEL, NEW_LABEL: what the binaries were built from (e.g. a commit), for the header
#   SYNTH_DIR_*: dfq synth output folders (the calibration set of both binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
old="$1" new="$2" synth20="$3" synth56="$4" runs="${5:-3}"
source bench/common.sh
shared=../shared
data="$shared/datasets/cifar10-test"
out=build/engine_regression
mkdir -p "$out" results
result=results/engine_regression.md

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
field() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

rows=()
for depth in ${DEPTHS:-20 56}; do
  m="cifar10-resnet$depth"
  synth_var="synth$depth"
  for bits in 8 4; do
    for who in old new; do
      bin="${!who}"
      "$bin" quantize --model "$shared/weights/$m.pt" --preset cifar --wbits $bits --abits $bits \
        --calib "${!synth_var}" --threads 2 --quiet --out "$out/$m-w$bits-$who.dfq" >/dev/null
      "$bin" eval --qmodel "$out/$m-w$bits-$who.dfq" --data "$data" --preset cifar --threads 2 --batch 256 --quiet \
        --json "$out/$m-w$bits-$who-top1.json" >/dev/null
    done
    same=$(cmp -s "$out/$m-w$bits-old.dfq" "$out/$m-w$bits-new.dfq" && echo "identical" || echo "differ")
    declare -A speed=()
    for run in $(seq "$runs"); do
      for who in old new; do
        bin="${!who}"
        "$bin" eval --qmodel "$out/$m-w$bits-$who.dfq" --data "$data" --preset cifar --threads 2 --batch 256 \
          --predecode --quiet --json "$out/speed.json" >/dev/null
        speed[$who]+="$(field "$out/speed.json" images_per_second) "
        if [ "$bits" = 8 ]; then
          "$bin" eval --model "$shared/weights/$m.pt" --data "$data" --preset cifar --threads 2 --batch 256 \
            --predecode --quiet --json "$out/speed.json" >/dev/null
          speed[fp32$who]+="$(field "$out/speed.json" images_per_second) "
        fi
      done
    done
    med() { echo "${speed[$1]}" | tr ' ' '\n' | grep . | median; }
    fp32="—"
    [ "$bits" = 8 ] && fp32="$(printf '%.0f / %.0f' "$(med fp32old)" "$(med fp32new)")"
    rows+=("| ResNet-$depth | W${bits}A${bits} | $same | $(printf '%.2f / %.2f' \
      "$(field "$out/$m-w$bits-old-top1.json" top1)" "$(field "$out/$m-w$bits-new-top1.json" top1)") | \
$(printf '%.0f / %.0f' "$(med old)" "$(med new)") | $fp32 |")
    unset speed
  done
done

{
  echo "# Engine regression: before and after the op-layer redesign"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), CPU: $(cpu_description)."
  echo "Command: \`DEPTHS=\"${DEPTHS:-20 56}\" bash bench/engine_regression.sh $old $new $synth20 $synth56 $runs\`"
  echo "(old: \`${OLD_LABEL:-$old}\`; new: \`${NEW_LABEL:-$new}\`)."
  echo
  echo "Same synthetic calibration sets for both binaries (\`dfq synth --count 256 --seed 0\`, default direct"
  echo "method), default quantization recipe (AdaRound, MMSE, bias correction). Top-1: integer engine on the"
  echo "10,000 CIFAR-10 test images. images/s: \`dfq eval --predecode\` (decoding excluded), 2 threads, batch"
  echo "256, median of $runs interleaved runs (old, new, old, new, ...)."
  echo
  echo "| model | bits | artifacts | integer top-1 old / new | integer images/s old / new | FP32 images/s old / new |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >"$result"
cat "$result"
