# Sourced by the benchmarks; run from the repository root.

# bench_setup: sets $shared (../shared) and checks that its CIFAR-10 test folder is there; builds dfq if needed.
bench_setup() {
  shared=../shared
  [ -d "$shared/datasets/cifar10-test" ] || { echo "bench: $shared/datasets/cifar10-test not found (needs ../shared)" >&2; exit 1; }
  [ -x build/dfq ] || bash scripts/build.sh
}

# synthetic_set MODEL SEED: prints the folder holding MODEL's 256 synthetic calibration images for SEED
# (dfq synth --method direct), build/seeds/MODEL-synth-seedSEED, synthesizing them first when missing.
# One place for every bench, because a set reproduces bit for bit within a session but not across
# sessions (results/ablation/paired.md): the runs of one table must share one session's sets.
synthetic_set() {
  local model="$1" seed="$2" dir="build/seeds/$1-synth-seed$2"
  if [ ! -f "$dir/images.pt" ]; then
    build/dfq synth --model "$shared/weights/$model.pt" --preset cifar --method direct --count 256 --seed "$seed" \
      --out "$dir" --quiet >/dev/null
  fi
  echo "$dir"
}

# quantize_eval BUILD_DIR OUT_DIR NAME MODEL SYNTH QUANTIZE_ARGS...: dfq quantize
# MODEL on the synthetic set SYNTH (256 images) into BUILD_DIR/NAME.dfq with its
# report in OUT_DIR/NAME-quantize.json, then the integer engine on the CIFAR-10
# test folder into OUT_DIR/NAME.json; prints the pair's wall time on stderr.
quantize_eval() {
  local build_dir="$1" out_dir="$2" name="$3" model="$4" synth="$5"
  shift 5
  local start
  start=$(date +%s.%N)
  build/dfq quantize --model "$model" --preset cifar "$@" --calib "$synth" --calib-count 256 \
    --out "$build_dir/$name.dfq" --json "$out_dir/$name-quantize.json" --quiet >/dev/null
  build/dfq eval --qmodel "$build_dir/$name.dfq" --data "$shared/datasets/cifar10-test" --preset cifar --quiet \
    --json "$out_dir/$name.json" >/dev/null
  echo "$name done ($(echo "$(date +%s.%N) - $start" | bc) s)" >&2
}

# cpu_description: the CPU model and which int8-relevant features it has, for the header of every results file.
cpu_description() {
  local f have=() lack=()
  for f in avx2 avx512_vnni avx_vnni; do
    if grep -m1 '^flags' /proc/cpuinfo | grep -qw "$f"; then have+=("$f"); else lack+=("$f"); fi
  done
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), ${have[*]:-no avx2/vnni}${lack:+ (not: ${lack[*]})}"
}

# kernel_paths QMODEL EVAL_ARGS...: the DFQ_INT_KERNELS paths this CPU runs, one per line, best first. A path
# the CPU lacks is refused at its first kernel, so each is probed with a one-image dfq eval of QMODEL
# (EVAL_ARGS: its data folder and preset).
kernel_paths() {
  local qmodel="$1" p
  shift
  for p in onednn avx_vnni avx2 portable; do
    DFQ_INT_KERNELS=$p build/dfq eval --qmodel "$qmodel" "$@" --limit 1 --quiet >/dev/null 2>&1 && echo "$p"
  done
}

# eval_env JSON ENV... -- ARGS...: one dfq eval of ARGS under the environment assignments ENV (none: start
# with --), its metrics to JSON.
eval_env() {
  local json="$1" envs=()
  shift
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" build/dfq eval "$@" --quiet --json "$json" >/dev/null
}
