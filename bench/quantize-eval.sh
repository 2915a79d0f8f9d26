# Sourced by the accuracy benchmarks (ablation, pow2_lut, seeds).
# quantize_eval BUILD_DIR OUT_DIR NAME MODEL SYNTH QUANTIZE_ARGS...: dfq quantize
# MODEL on the synthetic set SYNTH (256 images) into BUILD_DIR/NAME.dfq with its
# report in OUT_DIR/NAME-quantize.json, then the integer engine on the CIFAR-10
# test folder into OUT_DIR/NAME.json; prints the pair's wall time on stderr.
# Expects $shared (../shared) and the repository root as the working directory.
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
