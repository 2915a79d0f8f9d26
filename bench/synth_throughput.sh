#!/usr/bin/env bash
# Direct-synthesis speed in image-iterations per second (one forward + backward
# of one image), batch 64, 2 threads: `dfq synth --method direct` vs the same
# loop in PyTorch 1.13 (bench/pytorch_synth.py: frozen weights, BN hooks with
# var_mean). dfq: ResNet-20 at 500 iterations (the ZeroQ setting), ResNet-56 at
# 200; the slower PyTorch loop at 100 (its rate does not depend on the count).
# Runs interleave, RUNS times, because this shared host's speed drifts; medians
# go to results/synth_throughput.md, every run to results/synth_throughput.json.
# usage: bench/synth_throughput.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
shared=../shared
[ -f "$shared/weights/cifar10-resnet20.pt" ] || { echo "bench: $shared/weights not found (needs ../shared)" >&2; exit 1; }
bash bench/python-deps.sh
[ -x build/dfq ] || bash scripts/build.sh
mkdir -p results
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for run in $(seq "$runs"); do
  for spec in "20 500" "56 200"; do
    read -r depth iters <<<"$spec"
    model="cifar10-resnet$depth"
    build/dfq synth --model "$shared/weights/$model.pt" --preset cifar --method direct --count 64 --batch 64 \
      --iters "$iters" --threads 2 --quiet --out "$tmp/out" --json "$tmp/$model-dfq-$run.json" >/dev/null
    /usr/bin/python3 bench/pytorch_synth.py "$shared/weights/$model.pth" "$depth" --iters 100 --batch 64 \
      --threads 2 >"$tmp/$model-torch-$run.json"
    echo "$model run $run done" >&2
  done
done

/usr/bin/python3 - "$tmp" "$runs" <<'PY'
import json, statistics, sys, platform, subprocess
tmp, runs = sys.argv[1], int(sys.argv[2])
rows, raw = [], []
for model, iters in (("cifar10-resnet20", 500), ("cifar10-resnet56", 200)):
    ips = {"dfq": [], "torch": []}
    for run in range(1, runs + 1):
        for k in ips:
            j = json.load(open(f"{tmp}/{model}-{k}-{run}.json"))
            ips[k].append(j["image_iterations_per_second"])
            raw.append({"model": model, "run": run, "tool": k, **j})
    med = {k: statistics.median(v) for k, v in ips.items()}
    spread = {k: f"{min(v):.0f}-{max(v):.0f}" for k, v in ips.items()}
    rows.append(f"| {model} | {iters} | {med['dfq']:.0f} ({spread['dfq']}) | {med['torch']:.0f} ({spread['torch']}) | "
                f"{med['dfq'] / med['torch']:.2f}x |")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
md = ["# Direct synthesis speed (image-iterations/s)", "",
      f"Batch 64, 2 threads, median of {runs} interleaved runs (range in parentheses). "
      f"CPU: {cpu}, {platform.machine()}.", "",
      "Command: `bench/synth_throughput.sh " + str(runs) + "`", "",
      "| model | dfq iterations | dfq synth | PyTorch 1.13, same loop (100 iterations) | dfq / PyTorch |",
      "|---|---|---|---|---|", *rows, ""]
open("results/synth_throughput.md", "w").write("\n".join(md))
json.dump(raw, open("results/synth_throughput.json", "w"), indent=1)
print("\n".join(md))
PY
