#!/usr/bin/env bash
# The integer engine on every kernel path this CPU supports (DFQ_INT_KERNELS=
# onednn|avx_vnni|avx2|portable, which also sets the requantization loops'
# instruction set) against dfq FP32, ResNet-20 and ResNet-56 at W8A8 and W4A4,
# 10,000 CIFAR-10 test images, 2 threads, batch 256, decoding excluded
# (--predecode). FP32 twice: as the CPU runs it, and with DNNL_MAX_CPU_ISA=AVX2
# (LibTorch's oneDNN convolutions limited to AVX2), so that on an AVX-512 machine
# the avx2 row can be read against the FP32 an AVX2-only CPU would run. PyTorch
# 1.13's own INT8 (bench/pytorch_int8.py) in the same rounds. RUNS interleaved
# rounds, medians; every run in results/int_kernel_paths.json. Measure on an
# idle machine. Artifacts: build/quant/MODEL-speed-wBaB.dfq (made as
# bench/int_throughput.sh makes them when missing: default recipe, synthetic
# calibration, seed 0).
# usage: [RUNS=3] [MODELS="cifar10-resnet20 cifar10-resnet56"] bash bench/int_kernel_paths.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_setup
runs="${RUNS:-3}"
models="${MODELS:-cifar10-resnet20 cifar10-resnet56}"
data="$shared/datasets/cifar10-test"
bash bench/python-deps.sh
mkdir -p results build/quant
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for m in $models; do
  for bits in 8 4; do
    art="build/quant/$m-speed-w${bits}a${bits}.dfq"
    [ -f "$art" ] || build/dfq quantize --model "$shared/weights/$m.pt" --preset cifar --wbits $bits --abits $bits \
      --calib "$(synthetic_set "$m" 0)" --out "$art" --quiet >/dev/null
  done
done
first="build/quant/$(echo "$models" | cut -d' ' -f1)-speed-w8a8.dfq"
mapfile -t supported < <(kernel_paths "$first" --data "$data" --preset cifar)
[ ${#supported[@]} -gt 0 ] || { echo "bench: no kernel path ran $first" >&2; exit 1; }
echo "paths: ${supported[*]}" >&2

run_eval() {  # NAME ENV... -- ARGS...: one dfq eval, JSON to $tmp/NAME.json
  local name="$1"
  shift
  eval_env "$tmp/$name.json" "$@" --data "$data" --preset cifar --threads 2 --batch 256 --predecode
}
for run in $(seq "$runs"); do
  for m in $models; do
    run_eval "$m-fp32-$run" -- --model "$shared/weights/$m.pt"
    run_eval "$m-fp32avx2-$run" DNNL_MAX_CPU_ISA=AVX2 -- --model "$shared/weights/$m.pt"
    for bits in 8 4; do
      for p in "${supported[@]}"; do
        run_eval "$m-w${bits}a${bits}-$p-$run" DFQ_INT_KERNELS=$p -- --qmodel "build/quant/$m-speed-w${bits}a${bits}.dfq"
      done
    done
    depth="${m#cifar10-resnet}"
    /usr/bin/python3 bench/pytorch_int8.py "$shared/weights/$m.pth" "$depth" --test "$data" --threads 2 --batch 256 \
      >"$tmp/$m-torch-$run.json" 2>"$tmp/$m-torch-$run.err" || { cat "$tmp/$m-torch-$run.err" >&2; exit 1; }
    echo "round $run: $m done" >&2
  done
done

/usr/bin/python3 - "$tmp" "$runs" "$models" "$(cpu_description)" "$(git rev-parse --short HEAD)" "${supported[@]}" <<'PY'
import json, statistics, sys
tmp, runs, models, cpu, commit, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4], sys.argv[5], sys.argv[6:]
raw, rows = [], []
def cell(name):
    js = [json.load(open(f"{tmp}/{name}-{r}.json")) for r in range(1, runs + 1)]
    raw.extend({"cell": name, "run": r + 1, **j} for r, j in enumerate(js))
    v = [j["images_per_second"] for j in js]
    return statistics.median(v), v, js[0].get("correct")
for m in models:
    fp32, fv, _ = cell(f"{m}-fp32")
    fp32a, fav, _ = cell(f"{m}-fp32avx2")
    rows.append(f"| {m} | FP32 | | {' '.join('%.0f' % x for x in fv)} | {fp32:.0f} | 1.00x | {fp32 / fp32a:.2f}x | |")
    rows.append(f"| {m} | FP32, DNNL_MAX_CPU_ISA=AVX2 | | {' '.join('%.0f' % x for x in fav)} | {fp32a:.0f} | "
                f"{fp32a / fp32:.2f}x | 1.00x | |")
    for bits in (8, 4):
        for p in paths:
            med, v, correct = cell(f"{m}-w{bits}a{bits}-{p}")
            rows.append(f"| {m} | W{bits}A{bits} | {p} | {' '.join('%.0f' % x for x in v)} | {med:.0f} | "
                        f"{med / fp32:.2f}x | {med / fp32a:.2f}x | {correct} |")
    t = [json.load(open(f"{tmp}/{m}-torch-{r}.json")) for r in range(1, runs + 1)]
    raw.extend({"cell": f"{m}-pytorch", "run": r + 1, **x} for r, x in enumerate(t))
    tq = [x["int8_images_per_second"] for x in t]
    rows.append(f"| {m} | PyTorch INT8 ({t[0]['engine']}) | | {' '.join('%.0f' % x for x in tq)} | "
                f"{statistics.median(tq):.0f} | {statistics.median(tq) / fp32:.2f}x | {statistics.median(tq) / fp32a:.2f}x | |")
md = ["# Integer kernel paths against FP32 (images/s, decoding excluded)", "",
      f"CPU: {cpu}; 2 threads, batch 256, 10,000 CIFAR-10 test images, {runs} interleaved rounds (median). "
      f"dfq commit {commit}.",
      f"Command: `RUNS={runs} MODELS=\"{' '.join(models)}\" bash bench/int_kernel_paths.sh`. Artifacts: "
      "`build/quant/MODEL-speed-wBaB.dfq`.", "",
      "Paths forced by `DFQ_INT_KERNELS` (also the requantization loops' instruction set). FP32 twice: as this CPU",
      "runs it, and with `DNNL_MAX_CPU_ISA=AVX2` (the FP32 of an AVX2-only CPU, for reading the avx2 rows on an",
      "AVX-512 machine). `correct`: of 10,000, equal on every path (the kernels are bit-exact).", "",
      "| model | config | path | runs | median | vs FP32 | vs FP32 (AVX2) | correct |",
      "|---|---|---|---|---|---|---|---|", *rows, ""]
open("results/int_kernel_paths.md", "w").write("\n".join(md))
json.dump(raw, open("results/int_kernel_paths.json", "w"), indent=1)
print("\n".join(md))
PY
