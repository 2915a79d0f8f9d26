#!/usr/bin/env bash
# dfq's ONNX export against ONNX Runtime, image by image: ResNet-20 and
# ResNet-56 (../shared), 256 synthetic calibration images (seed 0, the same set
# for every setting of a model), the default recipe (AdaRound, MMSE, bias
# correction) at W8A8, W4A8, W4A4 and the mixed weight+activation recipe
# (--size-budget 4 --bops-budget-bits 4,4, candidates 2,3,4,5,6,8). Per
# setting: dfq export (opset 17; opset 21 too where 4-bit tensors exist),
# `dfq eval --engine simulated` and `--engine integer` with --predictions on
# the 10,000 CIFAR-10 test images (--save-inputs: the preprocessed tensors),
# tools/ort_eval.js on the same tensors, tools/compare_predictions.py.
# Acceptance (issue 19): ORT's top-1 predictions equal the simulated engine's
# on >= 99.8 % of the images and top-1 differs by <= 0.1 point.
# Writes results/onnx_runtime.md (+ .json rows in OUT).
# usage: [MODELS="cifar10-resnet20 cifar10-resnet56"] [SETTINGS="w8a8 w4a8 w4a4 mixed-wa"] [OUT=build/ort_agreement]
#        [SYNTH_cifar10_resnet20=DIR] [SYNTH_cifar10_resnet56=DIR] [ARGS_cifar10_resnet56="--reconstruct none"]
#        [REUSE=1] bash bench/ort_agreement.sh
#   SYNTH_*: a dfq synth output folder to calibrate on (default: build/seeds/MODEL-synth-seed0, made when missing)
#   ARGS_*:  extra dfq quantize options for that model (shown in the table)
#   REUSE=1: a setting whose comparison files exist in OUT is reported from them, not run again
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_setup
bash scripts/install-ort.sh >/dev/null
out="${OUT:-build/ort_agreement}"
models="${MODELS:-cifar10-resnet20 cifar10-resnet56}"
settings="${SETTINGS:-w8a8 w4a8 w4a4 mixed-wa}"
data="$shared/datasets/cifar10-test"
mkdir -p "$out" results
py=/usr/bin/python3
field() { $py -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
agree() { $py tools/compare_predictions.py "$1" "$2" --json "$3" >/dev/null; }

rows=()
for m in $models; do
  synth_var="SYNTH_${m//-/_}"  # e.g. SYNTH_cifar10_resnet20=DIR: an existing set instead of build/seeds
  synth="${!synth_var:-$(synthetic_set "$m" 0)}"
  for s in $settings; do
    case "$s" in
      w8a8) opts=(--wbits 8 --abits 8) ;;
      w4a8) opts=(--wbits 4 --abits 8) ;;
      w4a4) opts=(--wbits 4 --abits 4) ;;
      mixed-wa) opts=(--abits 4 --size-budget 4 --bops-budget-bits 4,4 --candidate-bits 2,3,4,5,6,8 --candidate-abits 2,3,4,5,6,8) ;;
      *) echo "unknown setting $s" >&2; exit 2 ;;
    esac
    base="$out/$m-$s"
    args_var="ARGS_${m//-/_}"
    read -r -a extra <<<"${!args_var:-}"
    recipe="default${extra[*]:+ + ${extra[*]}}"
    echo "== $m $s" >&2
    if [ "${REUSE:-0}" = 1 ] && [ -f "$base-o17-sim-vs-ort.json" ]; then
      recipe="$(cat "$base.recipe" 2>/dev/null || echo default)"
    else
    echo "$recipe" >"$base.recipe"
    build/dfq quantize --model "$shared/weights/$m.pt" --preset cifar --calib "$synth" --threads 2 --quiet \
      "${opts[@]}" "${extra[@]}" --out "$base.dfq" >/dev/null
    inputs=()
    [ -f "$out/$m-inputs.f32" ] || inputs=(--save-inputs "$out/$m-inputs.f32")
    build/dfq eval --qmodel "$base.dfq" --engine simulated --data "$data" --preset cifar --threads 2 --quiet \
      --predictions "$base-sim.csv" "${inputs[@]}" >/dev/null
    build/dfq eval --qmodel "$base.dfq" --engine integer --data "$data" --preset cifar --threads 2 --quiet \
      --predictions "$base-int.csv" >/dev/null
    fi
    for opset in 17 21; do
      [ "$opset" = 21 ] && [ "$s" = w8a8 ] && continue  # no 4-bit tensor: the same file but for its opset
      if [ "${REUSE:-0}" != 1 ] || [ ! -f "$base-o$opset-int-vs-ort.json" ]; then
      build/dfq export --qmodel "$base.dfq" --out "$base-o$opset.onnx" --opset $opset --quiet
      node tools/ort_eval.js --model "$base-o$opset.onnx" --inputs "$out/$m-inputs.f32" --threads 2 --exact \
        --predictions "$base-o$opset-ort.csv" >"$base-o$opset-ort.json"
      agree "$base-sim.csv" "$base-o$opset-ort.csv" "$base-o$opset-sim-vs-ort.json"
      agree "$base-int.csv" "$base-o$opset-ort.csv" "$base-o$opset-int-vs-ort.json"
      fi
      c="$base-o$opset-sim-vs-ort.json" i="$base-o$opset-int-vs-ort.json"
      rows+=("$($py - "$c" "$i" "$m" "$s" "$opset" "$recipe" <<'PY'
import json, sys
c, i = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
m, s, opset, recipe = sys.argv[3:7]
ok = c["agree_percent"] >= 99.8 and abs(c["top1_a"] - c["top1_b"]) <= 0.1
print("| %s | %s | %s | %s | %.2f | %.2f | %.2f | %.2f %% (%d) | %.2f %% (%d) | %s |" % (
    m.replace("cifar10-", ""), s, recipe, opset, c["top1_a"], i["top1_a"], c["top1_b"], c["agree_percent"], c["disagree"],
    i["agree_percent"], i["disagree"], "yes" if ok else "**no**"))
PY
)")
    done
  done
done

{
  echo "# dfq export in ONNX Runtime: image-by-image agreement"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), CPU: $(cpu_description). ONNX Runtime: onnxruntime-node 1.22.0 (CPU EP, graph"
  echo "optimization level all, 2 threads). dfq commit $(git rev-parse --short HEAD)."
  echo "Command: \`MODELS=\"$models\" SETTINGS=\"$settings\" $(env | grep -E '^(SYNTH|ARGS)_|^REUSE=' | sed 's/=\(.*\)/="\1"/' | tr '\n' ' ')bash bench/ort_agreement.sh\`"
  echo
  echo "256 synthetic calibration images per model (\`dfq synth --count 256 --seed 0\`, one set for every setting),"
  echo "default recipe (AdaRound, MMSE ranges, bias correction; the recipe column adds options); mixed-wa: weight and activation bits per layer by"
  echo "the ILP within the size of uniform W4 and the BOPs of uniform W4A4. 10,000 CIFAR-10 test images: dfq"
  echo "evaluates and writes the preprocessed tensors (\`--save-inputs\`); ORT runs the exported file on those same"
  echo "tensors. Agreement: images with the same top-1 prediction (in parentheses, how many differ)."
  echo "Acceptance: ORT vs simulated >= 99.8 % and |top-1 difference| <= 0.1 point."
  echo
  echo "| model | setting | recipe | opset | top-1 simulated | top-1 integer | top-1 ORT | ORT vs simulated | ORT vs integer | accepted |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >results/onnx_runtime.md
cat results/onnx_runtime.md
