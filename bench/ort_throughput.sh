#!/usr/bin/env bash
# ONNX Runtime's int8 against dfq's integer engine and dfq FP32: images/s on
# ResNet-20 and ResNet-56 (../shared), W8A8 and W4A4, decoding excluded
# (dfq eval --predecode; ORT: session.run() only, on the tensors dfq eval
# --save-inputs wrote), 2 threads, median of RUNS interleaved runs (dfq FP32,
# dfq integer, ORT, ...). ORT: onnxruntime-node 1.22.0, graph optimization
# level all, the opset-17 file of dfq export; with --profile-nodes, which
# kernels it actually ran (QLinearConv = an integer convolution; Conv = float,
# on dequantized weights). Reads the artifacts bench/ort_agreement.sh wrote
# (OUT/MODEL-SETTING.dfq): run that first. Writes results/ort_throughput.md.
# usage: [RUNS=3] [OUT=build/ort_agreement] [MODELS="cifar10-resnet20 cifar10-resnet56"] bash bench/ort_throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_setup
out="${OUT:-build/ort_agreement}"
runs="${RUNS:-3}"
models="${MODELS:-cifar10-resnet20 cifar10-resnet56}"
data="$shared/datasets/cifar10-test"
py=/usr/bin/python3
field() { $py -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

rows=()
kernels=()
for m in $models; do
  inputs="$out/$m-inputs.f32"
  [ -f "$inputs" ] || { echo "bench: $inputs missing: run bench/ort_agreement.sh first" >&2; exit 1; }
  for s in w8a8 w4a4; do
    q="$out/$m-$s.dfq" onnx="$out/$m-$s-o17.onnx"
    [ -f "$q" ] && [ -f "$onnx" ] || { echo "bench: $q or $onnx missing: run bench/ort_agreement.sh" >&2; exit 1; }
    fp32="" int="" ort=""
    for run in $(seq "$runs"); do
      if [ "$s" = w8a8 ]; then
        build/dfq eval --model "$shared/weights/$m.pt" --data "$data" --preset cifar --threads 2 --batch 256 \
          --predecode --quiet --json "$out/speed.json" >/dev/null
        fp32+="$(field "$out/speed.json" images_per_second) "
      fi
      build/dfq eval --qmodel "$q" --data "$data" --preset cifar --threads 2 --batch 256 --predecode --quiet \
        --json "$out/speed.json" >/dev/null
      int+="$(printf '%.0f' "$(field "$out/speed.json" images_per_second)") "
      node tools/ort_eval.js --model "$onnx" --inputs "$inputs" --predictions "$out/speed.csv" --threads 2 \
        --batch 256 >"$out/speed-ort.json"
      ort+="$(printf '%.0f' "$(field "$out/speed-ort.json" images_per_second)") "
    done
    node tools/ort_eval.js --model "$onnx" --inputs "$inputs" --predictions "$out/speed.csv" --threads 2 \
      --batch 256 --profile-nodes --profile-out "$out/$m-$s-kernels.json" >/dev/null
    f="—"
    [ "$s" = w8a8 ] && f="$(printf '%.0f' "$(echo "$fp32" | median)")"
    rows+=("| ${m#cifar10-} | ${s^^} | $f | $(printf '%.0f' "$(echo "$int" | median)") | $(printf '%.0f' "$(echo "$ort" | median)") | ${int% } | ${ort% } |")
    kernels+=("| ${m#cifar10-} | ${s^^} | $($py -c "
import json,sys
k = json.load(open(sys.argv[1]))['op_types']
print(', '.join('%s %d' % (t, n) for t, n in sorted(k.items(), key=lambda x: -x[1])))" "$out/$m-$s-kernels.json") |")
  done
done

{
  echo "# ONNX Runtime int8 vs dfq's integer engine vs dfq FP32: images/s"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), CPU: $(cpu_description); 2 cores. dfq commit $(git rev-parse --short HEAD);"
  echo "ONNX Runtime: onnxruntime-node 1.22.0, CPU EP, graph optimization level all. Command: \`RUNS=$runs bash bench/ort_throughput.sh\`"
  echo "(artifacts and ONNX files of \`bench/ort_agreement.sh\`: default recipe on 256 synthetic images)."
  echo
  echo "10,000 CIFAR-10 test images, 2 threads, batch 256, decoding excluded (dfq: \`dfq eval --predecode\`;"
  echo "ORT: the time inside session.run() on the tensors of \`dfq eval --save-inputs\`), median of $runs interleaved runs."
  echo
  echo "| model | bits | dfq FP32 | dfq integer | ORT (QDQ, opset 17) | dfq integer runs | ORT runs |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "What ORT ran after its graph optimizations (kernels of one batch, \`tools/ort_eval.js --profile-nodes\`):"
  echo
  echo "| model | bits | kernels by op type |"
  echo "|---|---|---|"
  printf '%s\n' "${kernels[@]}"
} >results/ort_throughput.md
cat results/ort_throughput.md
