#!/usr/bin/python3
"""Writes results/quant/accuracy.md from the JSON files bench/quant_accuracy.sh
leaves in results/quant/ (a configuration not run shows as "-"): top-1 of the
simulated and integer engines, synthetic vs real calibration, with and without
residual tensors, and the artifact sizes.
usage: quant_table.py "20 56" "8 8,6 6,4 8,4 4" """
import json
import os
import sys

models, configs = sys.argv[1].split(), [c.split() for c in sys.argv[2].split(",")]
root = "results/quant"


def load(name):
    path = os.path.join(root, name + ".json")
    return json.load(open(path)) if os.path.exists(path) else None


def cell(m, w, a, calib, budget, suffix, fp):
    j = load(f"{m}-w{w}a{a}-{calib}-res{budget}{suffix}")
    return f"{j['top1']:.2f} ({j['top1'] - fp:+.2f})" if j else "-"


lines = ["# Quantized accuracy (CIFAR-10 test, 10,000 images)", "",
         f"Command: `bench/quant_accuracy.sh` (MODELS=\"{sys.argv[1]}\", CONFIGS=\"{sys.argv[2]}\"). Default options",
         "(MMSE ranges with the output objective for weights, per-channel weights, full bias correction, AdaRound",
         "reconstruction, residual adds reading the branch accumulator, first/last layer at the same bits); a \"-\" was",
         "not run with these defaults; residual = `--residual-budget 0.25`. Synthetic calibration: 256 images from",
         "`dfq synth --method direct --seed 0`; real: the 1,000 CIFAR-10 training images of ../shared. Top-1 %",
         "(change vs FP32). `sim`: simulated (fake-quant) engine; `int`: integer-only engine, same artifact.", "",
         "| model | config | sim synthetic | sim synthetic + residual | sim real 1k | sim real 1k + residual "
         "| int synthetic | int synthetic + residual | int real 1k |",
         "|---|---|---|---|---|---|---|---|---|"]
sizes = ["", "## Artifact sizes (bytes; synthetic calibration)", "",
         "| model | FP32 parameters | config | artifact | artifact + residual (budget 0.25) |", "|---|---|---|---|---|"]
for d in models:
    m = f"cifar10-resnet{d}"
    fp_json = load(f"{m}-fp32")
    if not fp_json:
        continue
    fp = fp_json["top1"]
    lines.append(f"| {m} | FP32 | {fp:.2f} | | | | | | |")
    for w, a in configs:
        cells = [cell(m, w, a, c, b, "", fp) for c in ("synthetic", "real") for b in ("0", "0.25")]
        cells += [cell(m, w, a, "synthetic", b, "-integer", fp) for b in ("0", "0.25")]
        cells.append(cell(m, w, a, "real", "0", "-integer", fp))
        lines.append(f"| {m} | W{w}A{a} | " + " | ".join(cells) + " |")
        q0, q1 = load(f"{m}-w{w}a{a}-synthetic-res0-quantize"), load(f"{m}-w{w}a{a}-synthetic-res0.25-quantize")
        if q0:
            sizes.append(f"| {m} | {q0['fp32_parameter_bytes']:.0f} | W{w}A{a} | {q0['artifact_bytes']:.0f} "
                         f"({q0['fp32_parameter_bytes'] / q0['artifact_bytes']:.1f}x smaller) | "
                         + (f"{q1['artifact_bytes']:.0f}" if q1 else "-") + " |")
text = "\n".join(lines + sizes) + "\n"
open(os.path.join(root, "accuracy.md"), "w").write(text)
print(text)
