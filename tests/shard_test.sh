#!/usr/bin/env bash
# dfq synth/eval --shard I/N and --merge: three shards, run as separate
# processes side by side (as a scheduler's array job would run them), merged,
# must give exactly what one unsharded run gives: the synthetic images and
# labels byte for byte (synth.json but for its timing), the evaluation counts
# and the predictions CSV. Needs the embedded model and Debian's Fashion-MNIST
# only (no ../shared). The bad inputs (out-of-range shards, mixed runs, missing
# or duplicate shards) are rows of bad_inputs_test.sh.
# usage: shard_test.sh BUILD/dfq SOURCE_DIR
set -uo pipefail
dfq="$1"
src="$2"
bin_dir="$(dirname "$dfq")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok      $1"; }
bad() { failed=$((failed + 1)); echo "FAILED  $1"; }
model="$src/weights/fashion_cnn.pt"

# run_shards LOG_PREFIX CMD...: CMD --shard i/3 for i = 0, 1, 2 (with {} replaced by i), in parallel.
run_shards() {
  local prefix="$1" pids=() i code=0
  shift
  for i in 0 1 2; do
    "${@//\{\}/$i}" --shard "$i/3" >"$prefix$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 0 1 2; do wait "${pids[$i]}" || { code=1; sed 's/^/        | /' "$prefix$i.log"; }; done
  return $code
}

# without_timing FILE: the JSON without the lines that measure time (which no two runs share).
without_timing() { grep -Ev '"(seconds|image_iterations_per_second|images_per_second)":' "$1"; }

# --- synthesis --------------------------------------------------------------------------------
synth=("$dfq" synth --model "$model" --preset fashion-mnist --count 24 --batch 8 --iters 5 --seed 3 --threads 2 --quiet)
if "${synth[@]}" --out "$tmp/whole" >"$tmp/whole.log" 2>&1; then ok "unsharded synth"; else bad "unsharded synth"; cat "$tmp/whole.log"; fi
if run_shards "$tmp/synth" "${synth[@]}" --out "$tmp/shard{}"; then ok "synth --shard 0/3, 1/3, 2/3 in parallel"; else bad "synth shards"; fi
for i in 0 1 2; do
  [ -f "$tmp/shard$i/shard.json" ] && [ -f "$tmp/shard$i/images.pt" ] || bad "shard $i wrote shard.json and images.pt"
done
# Shard order on the command line does not matter.
if "$dfq" synth --merge "$tmp/shard2" "$tmp/shard0" "$tmp/shard1" --out "$tmp/merged" --dump-png >"$tmp/merge.log" 2>&1; then
  ok "synth --merge"
else bad "synth --merge"; sed 's/^/        | /' "$tmp/merge.log"; fi
cmp "$tmp/whole/images.pt" "$tmp/merged/images.pt" && ok "merged images.pt (images and labels) = unsharded, byte for byte" ||
  bad "merged images.pt differs from the unsharded run's"
if diff <(without_timing "$tmp/whole/synth.json") <(without_timing "$tmp/merged/synth.json") >"$tmp/diff"; then
  ok "merged synth.json = unsharded but for seconds and image-iterations/s"
else bad "merged synth.json differs"; head -20 "$tmp/diff"; fi
[ ! -e "$tmp/merged/shard.json" ] && ok "the merged set is no shard (no shard.json)" || bad "merged set has a shard.json"
[ "$(find "$tmp/merged/png" -name '*.png' | wc -l)" -eq 24 ] && ok "merge --dump-png wrote 24 PNGs" || bad "merge --dump-png"
# A single shard of one (--shard 0/1) merges into the unsharded set too.
if "${synth[@]}" --shard 0/1 --out "$tmp/one" >/dev/null 2>&1 && "$dfq" synth --merge "$tmp/one" --out "$tmp/one_merged" --quiet >/dev/null 2>&1 &&
   cmp -s "$tmp/whole/images.pt" "$tmp/one_merged/images.pt"; then ok "--shard 0/1 merges into the same set"; else bad "--shard 0/1"; fi

# --- evaluation -------------------------------------------------------------------------------
fm=/usr/share/datasets/fashion-mnist
data="$tmp/fashion"
"$bin_dir/idx-to-folder" "$fm/t10k-images-idx3-ubyte.gz" "$fm/t10k-labels-idx1-ubyte.gz" "$data" \
  --classes 0_tshirt_top,1_trouser,2_pullover,3_dress,4_coat,5_sandal,6_shirt,7_sneaker,8_bag,9_ankle_boot \
  >"$tmp/idx.log" 2>&1 || { bad "idx-to-folder"; cat "$tmp/idx.log"; }
# A quantized model of the merged synthetic set: the integer engine's predictions are exact in any batch.
"$dfq" quantize --model "$model" --preset fashion-mnist --calib "$tmp/merged" --reconstruct none --quiet \
  --out "$tmp/q.dfq" >"$tmp/q.log" 2>&1 || { bad "quantize on the merged set"; cat "$tmp/q.log"; }
for engine in fp32 integer; do
  if [ $engine = fp32 ]; then which=(--model "$model"); else which=(--qmodel "$tmp/q.dfq"); fi
  ev=("$dfq" eval "${which[@]}" --data "$data" --preset fashion-mnist --limit 301 --batch 64 --quiet)
  "${ev[@]}" --json "$tmp/$engine.json" --predictions "$tmp/$engine.csv" >"$tmp/e.log" 2>&1 || { bad "unsharded eval ($engine)"; cat "$tmp/e.log"; }
  if run_shards "$tmp/eval$engine" "${ev[@]}" --json "$tmp/$engine.shard{}.json"; then
    ok "eval --shard 0/3, 1/3, 2/3 in parallel ($engine)"
  else bad "eval shards ($engine)"; fi
  grep -q "301 images" "$tmp/eval${engine}0.log" && grep -q "shard     0/3: 101 of the 301 images" "$tmp/eval${engine}0.log" &&
    ok "shard 0/3 evaluates 101 of 301 images ($engine)" || bad "shard 0/3 image count ($engine)"
  if "$dfq" eval --merge "$tmp/$engine.shard1.json" "$tmp/$engine.shard2.json" "$tmp/$engine.shard0.json" \
     --json "$tmp/$engine.merged.json" --predictions "$tmp/$engine.merged.csv" >"$tmp/m.log" 2>&1; then
    ok "eval --merge ($engine)"
  else bad "eval --merge ($engine)"; sed 's/^/        | /' "$tmp/m.log"; fi
  cmp "$tmp/$engine.csv" "$tmp/$engine.merged.csv" && ok "merged predictions CSV = unsharded ($engine)" || bad "merged CSV differs ($engine)"
  if diff <(without_timing "$tmp/$engine.json") <(without_timing "$tmp/$engine.merged.json") >"$tmp/diff"; then
    ok "merged --json = unsharded but for seconds and images/s ($engine: top-1, top-5, per class)"
  else bad "merged --json differs ($engine)"; head -20 "$tmp/diff"; fi
  [ "$(grep '^top-' "$tmp/m.log")" = "$(grep '^top-' "$tmp/e.log")" ] && ok "merge prints the unsharded top-1 and top-5 ($engine)" ||
    bad "merge prints top-1 and top-5 ($engine)"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
