#!/usr/bin/python3
"""PyTorch baseline for direct synthesis speed: the same loop as `dfq synth
--method direct` (Adam on pixels, batch BN-statistics L2 loss via forward hooks,
cross-entropy to balanced labels, jitter + flip), weights frozen, eval-mode BN.
Prints JSON with image_iterations_per_second. Uses Debian's python3-torch.
usage: pytorch_synth.py STATE_DICT.pth DEPTH [--iters N] [--batch N] [--threads N]"""
import argparse, json, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F


from cifar_resnet import ResNet


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("state_dict"); ap.add_argument("depth", type=int)
    ap.add_argument("--iters", type=int, default=500); ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ResNet(a.depth)
    model.load_state_dict(torch.load(a.state_dict))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    terms = []

    def hook(bn, inputs, _output):
        var, mean = torch.var_mean(inputs[0], dim=(0, 2, 3), unbiased=False)
        std = torch.sqrt(var + bn.eps)
        terms.append(((mean - bn.running_mean) ** 2).sum() + ((std - torch.sqrt(bn.running_var + bn.eps)) ** 2).sum())

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(hook)
    x = torch.randn(a.batch, 3, 32, 32, requires_grad=True)
    labels = torch.arange(a.batch) % 10
    opt = torch.optim.Adam([x], lr=0.25)
    start = time.perf_counter()
    first = last = None
    for it in range(a.iters):
        for g in opt.param_groups:
            g["lr"] = 0.125 * (1 + math.cos(math.pi * it / a.iters))
        dy, dx = torch.randint(-2, 3, (2,)).tolist()
        inp = torch.roll(x, (dy, dx), (2, 3))
        if torch.randint(0, 2, (1,)).item():
            inp = inp.flip(3)
        terms.clear()
        logits = model(inp)
        bn = sum(terms)
        loss = bn + F.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = bn.item() if first is None else first
        last = bn.item()
    seconds = time.perf_counter() - start
    print(json.dumps({"tool": "pytorch", "depth": a.depth, "batch": a.batch, "iterations": a.iters,
                      "threads": a.threads, "seconds": seconds, "initial_bn_loss": first, "final_bn_loss": last,
                      "image_iterations_per_second": a.batch * a.iters / seconds}))


if __name__ == "__main__":
    main()
