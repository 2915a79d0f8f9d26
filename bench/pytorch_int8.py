#!/usr/bin/python3
"""PyTorch's own INT8 post-training quantization of the CIFAR-10 ResNets, as the
baseline for dfq's integer engine: accuracy and throughput of the quantized model.

What it does:
  1. Builds the CIFAR ResNet (option-A shortcut, same class as bench/pytorch_synth.py)
     and loads the STATE_DICT. Checks FP32 top-1 on the test folder (the reference
     in ../shared/README.md: ResNet-20 81.03 %, ResNet-56 83.20 %).
  2. FX graph mode PTQ: prepare_fx with get_default_qconfig_mapping(engine)
     (fuses conv+bn(+relu), add+relu; HistogramObserver activations, per-channel
     weights for onednn, per-tensor for qnnpack), calibrates on the first
     --calib-count images of the calibration folder taken round-robin over the
     classes, then convert_fx. Engine: onednn, falling back to qnnpack if onednn
     fails (the JSON says which ran).
  3. Decodes all test images up front (PIL, /255, ImageNet mean/std as
     bench/pytorch_eval.py, untimed), then times the INT8 model alone over batches
     of --batch with --threads intra-op threads ("decoding excluded"), and the FP32
     model the same way for reference. One untimed warm-up batch precedes each.

The quantized model takes a float tensor: the quantize_per_tensor of the input
and the dequantize of the logits are part of the timed INT8 model. Ops without a
quantized kernel (see stderr for the converted graph) run on dequantized values.

usage: pytorch_int8.py STATE_DICT.pth DEPTH --test DIR [--calib DIR] [--calib-count 256]
                       [--threads 2] [--batch 256]
Prints one JSON line on stdout; progress on stderr. Uses Debian's python3-torch.
"""
import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from cifar_resnet import ResNet

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # as bench/pytorch_eval.py and
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)   # ../shared/README.md (CIFAR checkpoints)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def list_folder(root):
    """[(path, label)] per class, sorted folder names = label indices."""
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    return [[(os.path.join(root, c, f), label) for f in sorted(os.listdir(os.path.join(root, c)))]
            for label, c in enumerate(classes)]


def decode(files):
    images = np.empty((len(files), 3, 32, 32), dtype=np.float32)
    for i, (path, _) in enumerate(files):
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        images[i] = ((pixels - MEAN) / STD).transpose(2, 0, 1)
    return torch.from_numpy(images), torch.tensor([label for _, label in files])


def evaluate(model, images, labels, batch):
    """(correct, seconds) over all images; one untimed warm-up batch first."""
    with torch.inference_mode():
        model(images[:batch])
        correct = 0
        start = time.perf_counter()
        for b in range(0, len(images), batch):
            logits = model(images[b:b + batch])
            correct += int((logits.argmax(1) == labels[b:b + batch]).sum())
        seconds = time.perf_counter() - start
    return correct, seconds


def quantize(float_model, engine, calib, batch):
    torch.backends.quantized.engine = engine
    example = (calib[:1],)
    prepared = prepare_fx(copy.deepcopy(float_model), get_default_qconfig_mapping(engine), example)
    with torch.inference_mode():
        for b in range(0, len(calib), batch):
            prepared(calib[b:b + batch])
    quantized = convert_fx(prepared)
    with torch.inference_mode():
        quantized(calib[:2])  # fail here, not in the timed loop, if the engine lacks a kernel
    return quantized


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("state_dict")
    ap.add_argument("depth", type=int)
    ap.add_argument("--test", required=True, help="ImageNet-style test folder")
    ap.add_argument("--calib", default="../shared/datasets/cifar10-train-1k")
    ap.add_argument("--calib-count", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    model = ResNet(a.depth)
    model.load_state_dict(torch.load(a.state_dict, map_location="cpu"))
    model.eval()

    # Calibration set: round-robin over classes so a small count still covers all of them.
    per_class = list_folder(a.calib)
    calib_files = [f for i in range(max(map(len, per_class))) for c in per_class if i < len(c) for f in [c[i]]]
    calib_files = calib_files[:a.calib_count]
    calib, _ = decode(calib_files)
    log(f"decoded {len(calib)} calibration images from {a.calib}")

    test_files = [f for c in list_folder(a.test) for f in c]
    t = time.perf_counter()
    images, labels = decode(test_files)
    log(f"decoded {len(images)} test images in {time.perf_counter() - t:.1f} s (untimed)")

    fp32_correct, fp32_seconds = evaluate(model, images, labels, a.batch)
    log(f"fp32: top-1 {100 * fp32_correct / len(images):.2f} %, {len(images) / fp32_seconds:.0f} images/s")

    engine, quantized = None, None
    for candidate in ("onednn", "qnnpack"):
        if candidate not in torch.backends.quantized.supported_engines:
            log(f"engine {candidate} not supported by this build")
            continue
        try:
            t = time.perf_counter()
            quantized = quantize(model, candidate, calib, a.batch)
            engine = candidate
            log(f"quantized with engine {engine} in {time.perf_counter() - t:.1f} s")
            break
        except Exception as e:  # noqa: BLE001 -- report and try the next engine
            log(f"engine {candidate} failed: {type(e).__name__}: {e}")
    if quantized is None:
        sys.exit("no quantized engine worked")
    log("converted graph:\n" + str(quantized.graph))

    int8_correct, int8_seconds = evaluate(quantized, images, labels, a.batch)
    log(f"int8: top-1 {100 * int8_correct / len(images):.2f} %, {len(images) / int8_seconds:.0f} images/s")

    print(json.dumps({
        "model": f"cifar10-resnet{a.depth}", "engine": engine, "threads": a.threads, "batch": a.batch,
        "calibration_images": len(calib),
        "fp32_top1": 100 * fp32_correct / len(images), "int8_top1": 100 * int8_correct / len(images),
        "fp32_images_per_second": len(images) / fp32_seconds,
        "int8_images_per_second": len(images) / int8_seconds,
        "int8_seconds": int8_seconds, "torch_version": torch.__version__,
    }))


if __name__ == "__main__":
    main()
