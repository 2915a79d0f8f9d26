#!/usr/bin/env bash
# Speed at 224x224 (issue 20): dfq FP32 and dfq's integer engine on every kernel
# path this CPU supports, for torchvision's ResNet-18, ResNet-50 and
# MobileNetV2 (random weights, BN statistics from the sample images: the
# artifacts of bench/torchvision_coverage.sh, build/torchvision/models/M.pt, build/torchvision/M/{
# w8a8.dfq,w4a8.dfq}; speed only), against PyTorch FP32 and PyTorch INT8
# (bench/pytorch_imagenet_speed.py). Images: the 20 of
# ../shared/datasets/imagenet-sample, each linked REPEAT times (default 8) into
# build/imagenet-repeat so a run lasts a few batches; the imagenet preset
# (resize 256, crop 224). dfq: `dfq eval --predecode` (decoding excluded) and
# without it (decoding included, --decode-threads 1). RUNS interleaved rounds,
# medians, into results/imagenet_speed.md. Measure on an idle machine.
# usage: [RUNS=3] [REPEAT=8] [MODELS="resnet18 resnet50 mobilenet_v2"] [PORTABLE=1] bash bench/imagenet_speed.sh
#   PORTABLE=1: also the portable kernel path (minutes per model at 224)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_setup
runs="${RUNS:-3}" repeat="${REPEAT:-8}"
models="${MODELS:-resnet18 resnet50 mobilenet_v2}"
src=../shared/datasets/imagenet-sample
data=build/imagenet-repeat
names=build/torchvision/imagenet-sample-names.txt  # class folders -> outputs (written by torchvision_coverage.sh)
[ -f "$names" ] || { echo "bench: $names missing: run bench/torchvision_coverage.sh first" >&2; exit 1; }
bash bench/python-deps.sh
rm -rf "$data"
for dir in "$src"/*/; do
  class=$(basename "$dir")
  mkdir -p "$data/$class"
  for f in "$dir"*; do
    for k in $(seq "$repeat"); do ln -s "$(realpath "$f")" "$data/$class/$k-$(basename "$f")"; done
  done
done
images=$(find "$data" -type l | wc -l)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for m in $models; do
  for f in ../models/$m.pt w8a8.dfq w4a8.dfq; do
    [ -f "build/torchvision/$m/$f" ] || { echo "bench: build/torchvision/$m/$f missing: run bench/torchvision_coverage.sh" >&2; exit 1; }
  done
done
first="build/torchvision/$(echo "$models" | cut -d' ' -f1)/w8a8.dfq"
mapfile -t supported < <(kernel_paths "$first" --data "$data" --preset imagenet --class-names "$names")
[ ${#supported[@]} -gt 0 ] || { echo "bench: no kernel path ran $first" >&2; exit 1; }
if [ "${PORTABLE:-0}" != 1 ]; then  # the portable loop takes minutes at 224
  mapfile -t supported < <(printf '%s\n' "${supported[@]}" | grep -vx portable)
fi
echo "paths: ${supported[*]}" >&2

run_eval() {  # NAME ENV... -- ARGS...: one dfq eval, JSON to $tmp/NAME.json
  local name="$1"
  shift
  eval_env "$tmp/$name.json" "$@" --data "$data" --preset imagenet --class-names "$names" --threads 2 --batch 32
}
for run in $(seq "$runs"); do
  for m in $models; do
    d="build/torchvision/$m"
    run_eval "$m-fp32-pre-$run" -- --model "build/torchvision/models/$m.pt" --predecode
    run_eval "$m-fp32-incl-$run" -- --model "build/torchvision/models/$m.pt"
    for s in w8a8 w4a8; do
      for p in "${supported[@]}"; do
        run_eval "$m-$s-$p-pre-$run" DFQ_INT_KERNELS=$p -- --qmodel "$d/$s.dfq" --predecode
      done
      run_eval "$m-$s-default-incl-$run" -- --qmodel "$d/$s.dfq"
    done
    /usr/bin/python3 bench/pytorch_imagenet_speed.py "$m" "build/torchvision/models/$m.pt" --threads 2 --batch 32 \
      >"$tmp/$m-torch-$run.json" 2>"$tmp/$m-torch-$run.err" || { cat "$tmp/$m-torch-$run.err" >&2; exit 1; }
    echo "round $run: $m done" >&2
  done
done

/usr/bin/python3 - "$tmp" "$runs" "$models" "$(cpu_description)" "$(git rev-parse --short HEAD)" "$images" \
  "${supported[@]}" <<'PY'
import json, statistics, sys
tmp, runs, models, cpu, commit, images = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4], sys.argv[5], sys.argv[6]
paths = sys.argv[7:]
def med(name, key="images_per_second"):
    v = [json.load(open(f"{tmp}/{name}-{r}.json"))[key] for r in range(1, runs + 1)]
    return statistics.median(v), " ".join("%.1f" % x for x in v)
rows = []
for m in models:
    fp, fpv = med(f"{m}-fp32-pre")
    fi, _ = med(f"{m}-fp32-incl")
    tf, tfv = med(f"{m}-torch", "fp32_images_per_second")
    ti, tiv = med(f"{m}-torch", "int8_images_per_second")
    rows.append(f"| {m} | dfq FP32 | | {fpv} | {fp:.1f} | 1.00x | {fi:.1f} |")
    rows.append(f"| {m} | PyTorch FP32 (TorchScript, channels-last) | | {tfv} | {tf:.1f} | {tf / fp:.2f}x | |")
    rows.append(f"| {m} | PyTorch INT8 (torchvision quantizable, onednn) | | {tiv} | {ti:.1f} | {ti / fp:.2f}x | |")
    for s in ("w8a8", "w4a8"):
        incl, _ = med(f"{m}-{s}-default-incl")
        for i, p in enumerate(paths):
            v, vv = med(f"{m}-{s}-{p}-pre")
            cell = f"{incl:.1f}" if i == 0 else ""
            rows.append(f"| {m} | dfq integer {s.upper()} | {p} | {vv} | {v:.1f} | {v / fp:.2f}x | {cell} |")
md = ["# Speed at 224x224: dfq FP32, dfq integer per kernel path, PyTorch FP32 and INT8 (images/s)", "",
      f"CPU: {cpu}; 2 threads, batch 32, {images} images (the 20 ImageNet samples, each repeated), imagenet preset",
      f"(resize 256, crop 224). {runs} interleaved rounds, medians. dfq commit {commit}.",
      "Command: `bash bench/imagenet_speed.sh`. Models: torchvision architectures with random weights (BN statistics",
      "from the sample images; `bench/torchvision_coverage.sh`): speed only. PyTorch: random input tensors.", "",
      "Pre-decoded: decoding excluded; `decoding incl.`: `dfq eval` without --predecode, 1 decode thread (integer: the",
      "default path).", "",
      "| model | engine | path | runs (pre-decoded) | median | vs dfq FP32 | decoding incl. |",
      "|---|---|---|---|---|---|---|", *rows, ""]
open("results/imagenet_speed.md", "w").write("\n".join(md))
print("\n".join(md))
PY
