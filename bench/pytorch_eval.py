#!/usr/bin/python3
"""PyTorch baseline for bench/fp32_throughput.sh: decode an ImageNet-style folder
with PIL, normalize, and run a TorchScript model, timing decode and model apart.

usage: pytorch_eval.py MODEL DATA_DIR [--threads 2] [--batch 256] [--channels-last]
Prints one JSON line: images, correct, decode_seconds, model_seconds, total_seconds, images_per_second.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC weights and inputs (oneDNN without layout reorders), as dfq runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    classes = sorted(d for d in os.listdir(args.data) if os.path.isdir(os.path.join(args.data, d)))
    files = [(os.path.join(args.data, c, f), label)
             for label, c in enumerate(classes)
             for f in sorted(os.listdir(os.path.join(args.data, c)))]
    model = torch.jit.load(args.model).eval()
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)

    start = time.perf_counter()
    images = np.empty((len(files), 3, 32, 32), dtype=np.float32)
    for i, (path, _) in enumerate(files):
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        images[i] = ((pixels - MEAN) / STD).transpose(2, 0, 1)
    labels = torch.tensor([label for _, label in files])
    decoded = time.perf_counter()

    correct = 0
    with torch.inference_mode():
        inputs = torch.from_numpy(images)
        for b in range(0, len(files), args.batch):
            logits = model(inputs[b:b + args.batch].contiguous(memory_format=layout))
            correct += int((logits.argmax(1) == labels[b:b + args.batch]).sum())
    done = time.perf_counter()
    print(json.dumps({
        "images": len(files), "correct": correct,
        "decode_seconds": decoded - start, "model_seconds": done - decoded, "total_seconds": done - start,
        "images_per_second": len(files) / (done - start), "threads": args.threads, "batch": args.batch, "channels_last": args.channels_last,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
