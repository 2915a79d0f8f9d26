#!/usr/bin/env bash
# Integer-engine throughput on the 10,000 CIFAR-10 test images, 2 threads, batch
# 256: dfq eval --engine integer (fast kernels) on W8A8 and W4A4 models vs FP32
# dfq eval (BN folded, channels-last oneDNN) and PyTorch 1.13's own INT8 path
# (FX quantization, onednn engine, bench/pytorch_int8.py), decoding excluded
# (--predecode: images decoded before timing) and included. Runs interleaved,
# RUNS times each, because this shared host's speed drifts; medians go to
# results/int_throughput.md, every run to results/int_throughput.json. Measure on
# an idle machine: two processes of 2 OpenMP threads on 2 cores distort it 10x.
# The quantized models are quantized here (synthetic calibration, seed 0).
# usage: bench/int_throughput.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
source bench/common.sh
bench_setup
data="$shared/datasets/cifar10-test"
bash bench/python-deps.sh
mkdir -p results build/quant
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for depth in 20 56; do
  m="cifar10-resnet$depth"
  synth=$(synthetic_set "$m" 0)
  for bits in 8 4; do
    [ -f "build/quant/$m-speed-w${bits}a${bits}.dfq" ] ||
      build/dfq quantize --model "$shared/weights/$m.pt" --preset cifar --wbits $bits --abits $bits \
        --calib "$synth" --out "build/quant/$m-speed-w${bits}a${bits}.dfq" --quiet >/dev/null
  done
done

eval_json() {  # NAME ARGS...: one dfq eval run, JSON to $tmp/NAME.json
  local name="$1"
  shift
  build/dfq eval "$@" --data "$data" --preset cifar --threads 2 --batch 256 --quiet --json "$tmp/$name.json" >/dev/null
}
for depth in 20 56; do
  m="cifar10-resnet$depth"
  for run in $(seq "$runs"); do
    for decode in pre incl; do
      flag=""; [ "$decode" = pre ] && flag="--predecode"
      eval_json "$m-fp32-$decode-$run" --model "$shared/weights/$m.pt" $flag
      for bits in 8 4; do
        eval_json "$m-w${bits}a${bits}-$decode-$run" --qmodel "build/quant/$m-speed-w${bits}a${bits}.dfq" $flag
      done
    done
    /usr/bin/python3 bench/pytorch_int8.py "$shared/weights/$m.pth" "$depth" --test "$data" --threads 2 --batch 256 \
      >"$tmp/$m-torch-$run.json" 2>"$tmp/$m-torch-$run.err" || { cat "$tmp/$m-torch-$run.err" >&2; exit 1; }
    echo "$m run $run done" >&2
  done
done

/usr/bin/python3 - "$tmp" "$runs" <<'PY'
import json, statistics, sys, platform, subprocess
tmp, runs = sys.argv[1], int(sys.argv[2])
raw, rows = [], []
for m in ("cifar10-resnet20", "cifar10-resnet56"):
    med, top1 = {}, {}
    for key in ("fp32", "w8a8", "w4a4"):
        for decode in ("pre", "incl"):
            v = []
            for run in range(1, runs + 1):
                j = json.load(open(f"{tmp}/{m}-{key}-{decode}-{run}.json"))
                v.append(j["images_per_second"]); top1[key] = j["top1"]
                raw.append({"model": m, "config": key, "decoding": decode, "run": run, **j})
            med[(key, decode)] = statistics.median(v)
    t = [json.load(open(f"{tmp}/{m}-torch-{run}.json")) for run in range(1, runs + 1)]
    raw += [{"model": m, "config": "pytorch", "run": i + 1, **x} for i, x in enumerate(t)]
    tq = statistics.median(x["int8_images_per_second"] for x in t)
    tf = statistics.median(x["fp32_images_per_second"] for x in t)
    for key in ("w8a8", "w4a4"):
        rows.append(f"| {m} | {key.upper()} | {top1[key]:.2f} | {med[(key, 'pre')]:.0f} | {med[('fp32', 'pre')]:.0f} | "
                    f"{med[(key, 'pre')] / med[('fp32', 'pre')]:.2f}x | {med[(key, 'incl')]:.0f} | "
                    f"{med[('fp32', 'incl')]:.0f} | {med[(key, 'incl')] / med[('fp32', 'incl')]:.2f}x |")
    rows.append(f"| {m} | PyTorch INT8 ({t[0]['engine']}) | {t[0]['int8_top1']:.2f} | {tq:.0f} | {tf:.0f} (PyTorch FP32) | "
                f"{tq / tf:.2f}x | | | |")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
md = ["# Integer engine throughput (images/s)", "",
      f"10,000 CIFAR-10 test JPEGs, batch 256, 2 threads, median of {runs} interleaved runs. dfq's integer engine",
      "(fast kernels: oneDNN int8 with VNNI, own requantization) vs dfq's FP32 path (BN folded, channels-last),",
      "decoding excluded (images decoded before timing) and included; PyTorch 1.13's INT8 (FX, calibrated on",
      f"256 training images) vs PyTorch FP32, both pre-decoded. CPU: {cpu}, {platform.machine()}.", "",
      "Command: `bench/int_throughput.sh " + str(runs) + "`", "",
      "| model | engine | top-1 % | int img/s (pre-decoded) | FP32 img/s | speed-up | int img/s (decoding incl.) | FP32 img/s | speed-up |",
      "|---|---|---|---|---|---|---|---|---|", *rows, ""]
open("results/int_throughput.md", "w").write("\n".join(md))
json.dump(raw, open("results/int_throughput.json", "w"), indent=1)
print("\n".join(md))
PY
