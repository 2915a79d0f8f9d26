#!/usr/bin/python3
"""PyTorch baselines for bench/imagenet_speed.sh: images/s of a torchvision
classifier at 224x224 (random weights: speed only), FP32 (TorchScript file, as
dfq loads it, channels-last) and PyTorch's own INT8 (torchvision's quantizable
variant of the same architecture, eager-mode PTQ with the onednn engine,
calibrated on 2 random batches), decoding excluded (random input tensors).

usage: pytorch_imagenet_speed.py ARCH TORCHSCRIPT [--threads 2] [--batch 32] [--batches 5]
ARCH: resnet18, resnet50 or mobilenet_v2 (the architectures torchvision ships
quantizable). Prints one JSON line: fp32_images_per_second,
int8_images_per_second, engine, torch.
"""
import argparse
import json
import time

import torch
import torchvision.models.quantization as tq


def images_per_second(model, x, batches):
    with torch.inference_mode():
        model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
        return batches * x.shape[0] / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("arch", choices=["resnet18", "resnet50", "mobilenet_v2"])
    p.add_argument("torchscript")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.batch, 3, 224, 224)

    fp32 = torch.jit.load(a.torchscript).eval().to(memory_format=torch.channels_last)
    fp32_ips = images_per_second(fp32, x.contiguous(memory_format=torch.channels_last), a.batches)

    engine = "onednn"
    torch.backends.quantized.engine = engine
    model = getattr(tq, a.arch)(weights=None, quantize=False).eval()
    model.fuse_model()
    model.qconfig = torch.ao.quantization.get_default_qconfig(engine)
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.inference_mode():
        for _ in range(2):
            model(torch.randn(8, 3, 224, 224))
    torch.ao.quantization.convert(model, inplace=True)
    int8_ips = images_per_second(model, x, a.batches)
    print(json.dumps({"arch": a.arch, "fp32_images_per_second": fp32_ips, "int8_images_per_second": int8_ips,
                      "engine": engine, "threads": a.threads, "batch": a.batch, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
