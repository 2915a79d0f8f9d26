#!/usr/bin/env python3
"""Write torchvision ImageNet architectures with random weights as TorchScript files.

For the import/coverage bench (bench/torchvision_coverage.sh): each model is
built with weights=None (nothing is downloaded), torch.manual_seed(0); its BN
running statistics are then estimated (momentum=None, i.e. the cumulative
average, train mode, no grad) so that BN layers carry non-trivial statistics
for dfq synth: with --bn-data DIR on the images of that ImageNet-style folder
(resized and centre-cropped like dfq's imagenet preset, ImageNet mean/std), in
batches of 10; else on 4 batches of 8 Gaussian-noise images. Noise statistics
leave EfficientNet and RegNetY so ill-conditioned on real images (logits in
the hundreds or thousands) that PyTorch disagrees with itself by up to 0.5
relative between NCHW and channels-last: an FP32 comparison then measures
float round-off, not dfq. Then eval(), torch.jit.trace at 1x3x224x224 (inception_v3: 299x299) and
saved as OUT/NAME.pt. An existing file is kept (delete it to rebuild). The
accuracy of these models means nothing; they exist to test import, the FP32
path against PyTorch, synthesis and quantization on real architectures.

Usage (Debian's python3 with python3-torch and python3-torchvision, not a
pyenv python):
    /usr/bin/python3 tools/make_torchvision_models.py --out build/torchvision/models [--models resnet18,vgg11_bn]
        [--bn-data ../shared/datasets/imagenet-sample]
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torchvision

MODELS = [
    "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "mnasnet1_0", "shufflenet_v2_x1_0", "efficientnet_b0", "efficientnet_v2_s",
    "regnet_x_400mf", "regnet_y_400mf", "densenet121", "googlenet", "inception_v3", "vgg11_bn",
    "squeezenet1_0", "alexnet", "convnext_tiny",
]
BN_BATCHES = 4
BN_BATCH_SIZE = 8


def input_size(name):
    return 299 if name == "inception_v3" else 224


def build(name):
    kwargs = {"weights": None}
    if name in ("inception_v3", "googlenet"):
        kwargs.update(aux_logits=False, init_weights=True)
    return getattr(torchvision.models, name)(**kwargs)


def folder_images(folder, size):
    """The images of an ImageNet-style folder, preprocessed like dfq's imagenet preset (shorter side to
    size * 256 / 224, centre crop size x size, ImageNet mean/std): one N x 3 x size x size tensor."""
    from PIL import Image
    resize = size * 256 // 224
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    images = []
    for cls in sorted(os.listdir(folder)):
        for f in sorted(os.listdir(os.path.join(folder, cls))):
            img = Image.open(os.path.join(folder, cls, f)).convert("RGB")
            w, h = img.size
            scale = resize / min(w, h)
            img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
            x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, 3)
            images.append((x.permute(2, 0, 1).float() / 255.0 - mean) / std)
    if not images:
        sys.exit(f"error: --bn-data {folder}: no images")
    return torch.stack(images)


def estimate_bn_statistics(model, size, gen, bn_data=None):
    """Cumulative-average BN statistics over the --bn-data images or Gaussian-noise batches; returns the BN
    layer count."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all batches
    model.train()
    with torch.no_grad():
        if bn_data:
            for batch in folder_images(bn_data, size).split(10):
                model(batch)
        else:
            for _ in range(BN_BATCHES):
                model(torch.randn(BN_BATCH_SIZE, 3, size, size, generator=gen))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum  # the architecture's own, so the saved module looks like any other
    return len(bns)


def make(name, path, bn_data):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = build(name)
    size = input_size(name)
    t0 = time.time()
    bn = estimate_bn_statistics(model, size, gen, bn_data)
    model.eval()
    example = torch.randn(1, 3, size, size, generator=gen)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
        # The traced module must reproduce the Python model (a trace can silently freeze control flow).
        ref, got = model(example), traced(example)
    err = (ref - got).abs().max().item() / max(ref.abs().max().item(), 1e-30)
    if err > 1e-4:
        raise RuntimeError(f"{name}: traced output differs from the model (relative {err:.2e})")
    tmp = path + ".tmp"
    traced.save(tmp)
    os.replace(tmp, path)
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: wrote {path} ({params / 1e6:.1f} M parameters, {bn} BN layers, input 1x3x{size}x{size}, "
          f"{time.time() - t0:.1f} s)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated torchvision names")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--bn-data", help="ImageNet-style folder whose images estimate the BN statistics "
                        "(default: Gaussian noise)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    names = [n for n in args.models.replace(" ", ",").split(",") if n]
    unknown = [n for n in names if not hasattr(torchvision.models, n)]
    if unknown:
        sys.exit(f"error: unknown torchvision model(s): {', '.join(unknown)}")
    os.makedirs(args.out, exist_ok=True)
    failed = 0
    for name in names:
        path = os.path.join(args.out, name + ".pt")
        if os.path.exists(path):
            print(f"{name}: {path} exists, kept", flush=True)
            continue
        try:
            make(name, path, args.bn_data)
        except Exception as e:  # one model's failure must not stop the others
            failed += 1
            print(f"error: {name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr, flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
