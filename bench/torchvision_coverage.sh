#!/usr/bin/env bash
# Coverage of torchvision ImageNet architectures (random weights, BN statistics
# estimated on the 20 sample images: tools/make_torchvision_models.py --bn-data), one row per model:
#   import       dfq info: imported (nodes, BN layers) or the op it refuses
#   FP32         dfq eval --save-outputs on ../shared/datasets/imagenet-sample (20 images), then PyTorch on
#                the same inputs (tools/compare_outputs.py): max|dfq - torch| / max|torch| over the logits
#   synth        dfq synth --method direct, 16 images x 50 iterations; image-iterations/s from synth.json
#                (models without BN layers calibrate on the 20 sample images instead: --calib-data)
#   W8A8, W4A8   dfq quantize --calib the synthetic set; then the integer and the simulated engine on the
#                20 images: top-1 agreement integer vs simulated (and integer vs dfq FP32)
# and the seconds of each step. A failing step records the first line of its error and the row goes on
# (steps that need it are skipped); the next model always runs. Accuracy means nothing (random weights):
# only agreement does. Writes results/torchvision_coverage.md (rewritten after every model, with the rows of
# every model that has one in OUT/rows/, also from earlier runs: MODELS re-runs a subset).
#
# usage: [MODELS="resnet18 vgg11_bn"] [OUT=build/torchvision] [THREADS=2] [DFQ=build/dfq]
#        [RECONSTRUCT=none] [TIMEOUT=7200] [DFQ_COMMIT="text"] bash bench/torchvision_coverage.sh
#   OUT        models (OUT/models/NAME.pt, built when missing), per-model outputs and logs (OUT/NAME/)
#   THREADS    --threads of every dfq call and of PyTorch
#   TIMEOUT    seconds after which a step is stopped and recorded as timed out
#   DFQ        the dfq binary; DFQ_COMMIT says what it was built from, for the header (default: this checkout's HEAD)
set -uo pipefail
cd "$(dirname "$0")/.."

all_models="resnet18 resnet50 resnext50_32x4d wide_resnet50_2 mobilenet_v2 mobilenet_v3_small mobilenet_v3_large
mnasnet1_0 shufflenet_v2_x1_0 efficientnet_b0 efficientnet_v2_s regnet_x_400mf regnet_y_400mf densenet121 googlenet
inception_v3 vgg11_bn squeezenet1_0 alexnet convnext_tiny"
command="$(for v in MODELS OUT THREADS DFQ RECONSTRUCT WEIGHT_OBJECTIVE SYNTH_COUNT SYNTH_ITERS TIMEOUT DFQ_COMMIT; do [ -n "${!v+x}" ] && printf '%s="%s" ' "$v" "${!v}"; done)bash bench/torchvision_coverage.sh"
models="${MODELS:-$all_models}"
out="${OUT:-build/torchvision}"
threads="${THREADS:-2}"
dfq="${DFQ:-build/dfq}"
reconstruct="${RECONSTRUCT:-none}"
dfq_commit="${DFQ_COMMIT:-commit $(git rev-parse --short HEAD 2>/dev/null)}"  # what $dfq was built from
timeout_s="${TIMEOUT:-7200}"
py=/usr/bin/python3
data=../shared/datasets/imagenet-sample
result=results/torchvision_coverage.md
synth_count="${SYNTH_COUNT:-8}"
synth_iters="${SYNTH_ITERS:-25}"
calib_count="$synth_count"
weight_objective="${WEIGHT_OBJECTIVE:-weight}"  # the default 'output' costs ~12 min per ResNet-18 quantization here

[ -d "$data" ] || { echo "bench: $data not found (needs ../shared)" >&2; exit 1; }
bash scripts/install-python-deps.sh
[ -x "$dfq" ] || { [ "$dfq" = build/dfq ] && bash scripts/build.sh; }
[ -x "$dfq" ] || { echo "bench: $dfq not found (build it, or set DFQ)" >&2; exit 1; }
mkdir -p "$out/models" "$out/rows" results
source bench/common.sh

# A names file for the model's 1000 outputs: the sample's 20 WordNet-id folders at lines 0, 50, ..., 950
# (any fixed mapping: the weights are random, so the labels only need to be valid).
names="$out/imagenet-sample-names.txt"
folders=($(ls "$data"))
for k in $(seq 0 999); do
  if [ $((k % 50)) -eq 0 ] && [ $((k / 50)) -lt "${#folders[@]}" ]; then echo "${folders[$((k / 50))]}"; else echo "unused_$k"; fi
done >"$names"


# cell TEXT: TEXT made safe for a markdown table cell, at most 200 characters.
cell() { printf '%s' "$1" | tr '\n' ' ' | sed 's/|/\\|/g' | cut -c1-200; }

# first_error LOG RC: the first line of a failed step's error.
first_error() {
  local log="$1" rc="$2" line
  if [ "$rc" -eq 124 ]; then echo "timed out after $timeout_s s"; return; fi
  line=$(grep -m1 -E '^error: ' "$log")
  [ -n "$line" ] || line=$(grep -E '^[A-Za-z_.]*(Error|Exception)\b' "$log" | tail -1)
  [ -n "$line" ] || line=$(grep -m1 -v '^[[:space:]]*$' "$log")
  if [ "$rc" -gt 128 ]; then line="killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null))${line:+: $line}"; fi
  echo "${line:-exit code $rc, no output}"
}

# step NAME LOG CMD...: runs CMD (stdout and stderr into LOG) under the timeout; sets secs[NAME] and, on
# failure, err (the first error line, also added to the model's error list). Returns CMD's exit code.
declare -A secs
errors=()
step() {
  local name="$1" log="$2" t0 rc
  shift 2
  t0=$(date +%s.%N)
  timeout --kill-after=30 "$timeout_s" "$@" >"$log" 2>&1
  rc=$?
  secs[$name]=$(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)")
  err=""
  if [ "$rc" -ne 0 ]; then
    err=$(first_error "$log" "$rc")
    errors+=("$name: $err")
    echo "  $name failed ($err)" >&2
  else
    echo "  $name ${secs[$name]} s" >&2
  fi
  return "$rc"
}

json_number() { "$py" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2" 2>/dev/null; }

# quantize_row BITS: dfq quantize at W<BITS>A8, then both engines on the sample; sets q_cell and e_cell.
quantize_row() {
  local w="$1" dir="$2" q="$2/w$1a8.dfq" calib
  if [ "$bn" -gt 0 ]; then
    if [ ! -f "$dir/synth/images.pt" ]; then q_cell="skipped (no synthetic set)"; e_cell="—"; return; fi
    calib=(--calib "$dir/synth")
  else
    calib=(--calib-data "$data")
  fi
  if step "w${w}a8" "$dir/w${w}a8-quantize.log" "$dfq" quantize --model "$model" --preset imagenet --wbits "$w" --abits 8 \
      "${calib[@]}" --calib-count "$calib_count" --reconstruct "$reconstruct" --weight-objective "$weight_objective" --threads "$threads" --quiet \
      --out "$q" --json "$dir/w${w}a8-quantize.json"; then
    q_cell="ok"
  else
    q_cell="✗ $(cell "$err")"; e_cell="—"; return
  fi
  local engine ok=1
  for engine in integer simulated; do
    step "w${w}a8-$engine" "$dir/w${w}a8-$engine.log" "$dfq" eval --qmodel "$q" --engine "$engine" "${eval_args[@]}" \
      --save-outputs "$dir/w${w}a8-$engine.pt" --json "$dir/w${w}a8-$engine.json" || ok=0
  done
  if [ "$ok" -eq 0 ]; then e_cell="✗ $(cell "$err")"; return; fi
  local a b
  a=$("$py" tools/compare_outputs.py "$dir/w${w}a8-integer.pt" "$dir/w${w}a8-simulated.pt" 2>&1 | tail -1)
  e_cell="$(echo "$a" | grep -Eo '[0-9]+/[0-9]+' || cell "$a")"
  if [ -f "$dir/fp32.pt" ]; then
    b=$("$py" tools/compare_outputs.py "$dir/fp32.pt" "$dir/w${w}a8-integer.pt" 2>&1 | grep -Eo '[0-9]+/[0-9]+')
    [ -n "$b" ] && e_cell="$e_cell ($b)"
  fi
}

write_table() {
  {
    echo "# torchvision architectures in dfq: import, FP32, synthesis, W8A8/W4A8"
    echo
    echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'). Command: \`$command\` (dfq: \`$dfq\`, built from $dfq_commit)."
    echo
    echo "CPU: $(cpu_description); $(nproc) cores. Threads: $threads for every dfq call and for PyTorch."
    echo
    echo "Models: torchvision $("$py" -c 'import torchvision; print(torchvision.__version__)' 2>/dev/null) architectures with"
    echo "**random weights** (\`weights=None\`, seed 0), BN statistics estimated on the 20 sample images (on Gaussian"
    echo "noise, EfficientNet and RegNetY came out so ill-conditioned that PyTorch disagreed with itself by up to 0.5"
    echo "relative between memory layouts), traced at 1x3x224x224 (inception_v3 299x299):"
    echo "\`tools/make_torchvision_models.py --bn-data\`. Their accuracy means nothing; agreement does."
    echo "Images: the 20 of \`$data\`, preset imagenet (inception_v3: --resize 342 --crop 299), classes mapped to"
    echo "outputs by \`--class-names\` (WordNet ids at lines 0, 50, ..., 950)."
    echo
    echo "- **import**: \`dfq info\`: dfq nodes, BN layers; ✗ = refused, with the op."
    echo "- **FP32 vs PyTorch**: \`dfq eval --save-outputs\`, then PyTorch 1.13 on the same inputs"
    echo "  (\`tools/compare_outputs.py\`): max |dfq − PyTorch| / max |PyTorch| over the 20 x 1000 logits, and top-1 agreement."
    echo "- **synth**: \`dfq synth --method direct --count $synth_count --batch $synth_count --iters $synth_iters\`; image-iterations/s"
    echo "  from synth.json. Models without BN (squeezenet1_0, alexnet) skip it and calibrate on the 20 sample images (\`--calib-data\`)."
    echo "- **W8A8 / W4A8**: \`dfq quantize --calib SYNTH_DIR --calib-count $calib_count --reconstruct $reconstruct --weight-objective $weight_objective\` (defaults otherwise:"
    echo "  MMSE ranges, per-channel weights, full bias correction; cheap settings: the bench is about coverage, not accuracy)."
    echo "- **int vs sim**: top-1 agreement of the integer and the simulated engine on the 20 images; in parentheses,"
    echo "  the integer engine vs dfq FP32."
    echo "- **seconds**: import / FP32 eval / synth / W8A8 quantize / W8A8 both evals / W4A8 quantize / W4A8 both evals."
    echo
    echo "| model | import | FP32 vs PyTorch | synth img-it/s | W8A8 | W8A8 int vs sim (vs FP32) | W4A8 | W4A8 int vs sim (vs FP32) | seconds |"
    echo "|---|---|---|---|---|---|---|---|---|"
    local m
    for m in $all_models; do [ -f "$out/rows/$m.md" ] && cat "$out/rows/$m.md"; done
    echo
    echo "## Errors (first line of each failed step)"
    echo
    local any=0
    for m in $all_models; do [ -s "$out/rows/$m.errors" ] && { any=1; sed "s/^/- $m, /" "$out/rows/$m.errors"; }; done
    [ "$any" -eq 0 ] && echo "None."
    echo
    echo "Logs of every step: \`$out/NAME/*.log\`."
  } >"$result.tmp" && mv "$result.tmp" "$result"
}

for name in $models; do
  echo "== $name" >&2
  errors=()
  secs=()
  dir="$out/$name"
  rm -rf "$dir"
  mkdir -p "$dir"
  model="$out/models/$name.pt"
  size=224 eval_size=()
  [ "$name" = inception_v3 ] && size=299 eval_size=(--resize 342 --crop 299)
  eval_args=(--data "$data" --preset imagenet "${eval_size[@]}" --class-names "$names" --batch 20 --threads "$threads" --quiet)
  import_cell="—" fp32_cell="—" synth_cell="—" q8_cell="—" e8_cell="—" q4_cell="—" e4_cell="—"

  if ! step make "$dir/make.log" "$py" tools/make_torchvision_models.py --out "$out/models" --models "$name" --threads "$threads" \
      --bn-data "$data"; then
    import_cell="✗ model not built"
  elif step import "$dir/info.log" "$dfq" info --model "$model" --input-size "$size" --threads "$threads"; then
    nodes=$(grep -Eo '^nodes: [0-9]+' "$dir/info.log" | grep -Eo '[0-9]+')
    bn=$(grep -Eo 'batch-norm layers \([0-9]+\)' "$dir/info.log" | grep -Eo '[0-9]+')
    bn=${bn:-0} nodes=${nodes:-?}
    import_cell="ok ($nodes nodes, $bn BN)"

    if step fp32 "$dir/fp32.log" "$dfq" eval --model "$model" "${eval_args[@]}" --save-outputs "$dir/fp32.pt" --json "$dir/fp32.json"; then
      if step compare "$dir/compare.log" "$py" tools/compare_outputs.py --model "$model" "$dir/fp32.pt" --threads "$threads" \
          --json "$dir/compare.json"; then
        fp32_cell="$("$py" -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%.1e (%d/%d; PyTorch NCHW vs channels-last %.1e)" % (j["relative_error"], j["top1_agreement"], j["images"], j["torch_channels_last_relative_error"]))' "$dir/compare.json")"
      else fp32_cell="✗ compare: $(cell "$err")"; fi
    else fp32_cell="✗ $(cell "$err")"; fi

    if [ "$bn" -gt 0 ]; then
      if step synth "$dir/synth.log" "$dfq" synth --model "$model" --preset imagenet --input-size "$size" --method direct \
          --count "$synth_count" --batch "$synth_count" --iters "$synth_iters" --seed 1 --threads "$threads" --quiet --out "$dir/synth"; then
        synth_cell=$(printf '%.1f' "$(json_number "$dir/synth/synth.json" image_iterations_per_second)")
      else synth_cell="✗ $(cell "$err")"; fi
    else
      synth_cell="— (no BN)"
    fi
    quantize_row 8 "$dir"; q8_cell="$q_cell" e8_cell="$e_cell"
    quantize_row 4 "$dir"; q4_cell="$q_cell" e4_cell="$e_cell"
  else
    op=$(grep -Eo 'unsupported op [a-z_]+::[A-Za-z0-9_]+' "$dir/info.log" | head -1 | sed 's/unsupported op //')
    import_cell="✗ ${op:-refused}"
  fi

  s() { local v="${secs[$1]:-}"; echo "${v:--}"; }
  sum() { local t=0 k; for k in "$@"; do t=$(echo "$t + ${secs[$k]:-0}" | bc); done; [ "$t" = 0 ] && echo - || printf '%.1f' "$t"; }
  seconds="$(s import) / $(s fp32) / $(s synth) / $(s w8a8) / $(sum w8a8-integer w8a8-simulated) / $(s w4a8) / $(sum w4a8-integer w4a8-simulated)"
  echo "| $name | $import_cell | $fp32_cell | $synth_cell | $q8_cell | $e8_cell | $q4_cell | $e4_cell | $seconds |" >"$out/rows/$name.md"
  printf '%s\n' "${errors[@]}" | sed '/^$/d; s/|/\\|/g' | sed 's/^\([^:]*\): \(.*\)$/\1: `\2`/' >"$out/rows/$name.errors"
  cat "$out/rows/$name.md" >&2
  write_table
done
write_table
echo "wrote $result" >&2
