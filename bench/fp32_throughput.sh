#!/usr/bin/env bash
# FP32 evaluation throughput, decoding included: dfq eval vs PyTorch (Debian's
# python3-torch, PIL decoding) on the 10,000 CIFAR-10 test images, 2 threads.
# usage: bench/fp32_throughput.sh [RUNS]   (writes results/fp32_throughput.{json,md})
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
shared=../shared
data="$shared/datasets/cifar10-test"
[ -d "$data" ] || { echo "bench: $data not found (needs ../shared)" >&2; exit 1; }
for p in python3-torch python3-pil python3-numpy; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
[ -x build/dfq ] || bash scripts/build.sh

out=results/fp32_throughput.json
mkdir -p results
echo "[" >"$out.tmp"
first=1
for model in cifar10-resnet20 cifar10-resnet56; do
  for run in $(seq "$runs"); do
    build/dfq eval --model "$shared/weights/$model.pt" --data "$data" --preset cifar --threads 2 --batch 256 \
      --quiet --json /tmp/dfq-bench.json >/dev/null
    dfq_line=$(tr -d '\n' </tmp/dfq-bench.json)
    torch_line=$(/usr/bin/python3 bench/pytorch_eval.py "$shared/weights/$model.pt" "$data" --threads 2 --batch 256)
    [ $first -eq 1 ] || echo "," >>"$out.tmp"
    first=0
    printf '{"model": "%s", "run": %d, "dfq": %s, "pytorch": %s}' "$model" "$run" "$dfq_line" "$torch_line" >>"$out.tmp"
    echo "$model run $run: dfq $(grep -o '"images_per_second": [0-9.]*' /tmp/dfq-bench.json) | pytorch $(echo "$torch_line" | grep -o '"images_per_second": [0-9.]*')"
  done
done
echo "]" >>"$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
