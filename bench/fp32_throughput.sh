#!/usr/bin/env bash
# FP32 evaluation throughput, decoding included, on the 10,000 CIFAR-10 test
# images with 2 threads: dfq eval vs PyTorch 1.13 (Debian's python3-torch, PIL
# decoding) in its default layout and in channels-last. The three run
# interleaved, RUNS times per model, because this shared host's speed drifts;
# medians go to results/fp32_throughput.md, every run to results/fp32_throughput.json.
# usage: bench/fp32_throughput.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
shared=../shared
data="$shared/datasets/cifar10-test"
[ -d "$data" ] || { echo "bench: $data not found (needs ../shared)" >&2; exit 1; }
bash bench/python-deps.sh
[ -x build/dfq ] || bash scripts/build.sh
mkdir -p results
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for model in cifar10-resnet20 cifar10-resnet56; do
  for run in $(seq "$runs"); do
    build/dfq eval --model "$shared/weights/$model.pt" --data "$data" --preset cifar --threads 2 --batch 256 \
      --quiet --json "$tmp/$model-dfq-$run.json" >/dev/null
    /usr/bin/python3 bench/pytorch_eval.py "$shared/weights/$model.pt" "$data" --threads 2 --batch 256 \
      >"$tmp/$model-torch-$run.json"
    /usr/bin/python3 bench/pytorch_eval.py "$shared/weights/$model.pt" "$data" --threads 2 --batch 256 \
      --channels-last >"$tmp/$model-torchcl-$run.json"
    echo "$model run $run done" >&2
  done
done

/usr/bin/python3 - "$tmp" "$runs" <<'PY'
import json, statistics, sys, platform, subprocess
tmp, runs = sys.argv[1], int(sys.argv[2])
rows, raw = [], []
for model in ("cifar10-resnet20", "cifar10-resnet56"):
    ips = {k: [] for k in ("dfq", "torch", "torchcl")}
    correct = {}
    for run in range(1, runs + 1):
        for k in ips:
            j = json.load(open(f"{tmp}/{model}-{k}-{run}.json"))
            ips[k].append(j["images_per_second"])
            correct[k] = j["correct"]
            raw.append({"model": model, "run": run, "tool": k, **j})
    med = {k: statistics.median(v) for k, v in ips.items()}
    rows.append(f"| {model} | {med['dfq']:.0f} ({correct['dfq']}) | {med['torch']:.0f} ({correct['torch']}) | "
                f"{med['torchcl']:.0f} ({correct['torchcl']}) | {med['dfq'] / med['torch']:.2f}x | "
                f"{med['dfq'] / med['torchcl']:.2f}x |")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
md = ["# FP32 evaluation throughput (images/s, decoding included)", "",
      f"10,000 CIFAR-10 test JPEGs, batch 256, 2 threads, median of {runs} interleaved runs; "
      f"correct predictions in parentheses. CPU: {cpu}, {platform.machine()}.", "",
      "Command: `bench/fp32_throughput.sh " + str(runs) + "`", "",
      "| model | dfq eval | PyTorch 1.13 | PyTorch 1.13 channels-last | dfq / PyTorch | dfq / PyTorch CL |",
      "|---|---|---|---|---|---|", *rows, ""]
open("results/fp32_throughput.md", "w").write("\n".join(md))
json.dump(raw, open("results/fp32_throughput.json", "w"), indent=1)
print("\n".join(md))
PY
