#!/usr/bin/env python3
"""Compare `dfq eval --save-outputs` files with PyTorch or with each other.

    compare_outputs.py --model M.pt OUTPUTS.pt
        runs the TorchScript model M.pt (PyTorch, FP32, eval) on the inputs saved in
        OUTPUTS.pt (exactly what dfq's model saw) and prints
        "relative error E (max |dfq - torch| X / max |torch| Y over N x K logits); top-1 agreement k/N"
    compare_outputs.py A.pt B.pt
        prints the top-1 agreement of two saved files on the same images: "top-1 agreement k/N"
        (e.g. the integer and the simulated engine of one .dfq)

--json FILE also writes the figures. Exit code 0 unless a file cannot be read
or the two files do not hold the same images. Debian's /usr/bin/python3 with
python3-torch.
"""
import argparse
import json
import sys

import torch


def load(path):
    d = torch.load(path)
    for key in ("inputs", "logits", "labels", "paths"):
        if key not in d:
            sys.exit(f"error: {path}: not a dfq eval --save-outputs file (no '{key}')")
    return d


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", nargs="+", help="one file with --model, two files without")
    parser.add_argument("--model", help="TorchScript model to run on the saved inputs")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", help="write the figures as JSON to this file")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    result = {}
    if args.model:
        if len(args.outputs) != 1:
            sys.exit("error: --model takes one saved-outputs file")
        d = load(args.outputs[0])
        model = torch.jit.load(args.model).eval()
        with torch.no_grad():
            ref = torch.cat([model(x) for x in d["inputs"].split(args.batch)])
            # PyTorch against itself in another memory layout (dfq runs channels-last): how much float
            # summation order alone moves these logits (random-weight networks amplify it).
            own = torch.cat([model(x.contiguous(memory_format=torch.channels_last))
                             for x in d["inputs"].split(args.batch)])
        got = d["logits"]
        if ref.shape != got.shape:
            sys.exit(f"error: PyTorch logits {tuple(ref.shape)}, dfq's {tuple(got.shape)}")
        diff = (got - ref).abs().max().item()
        scale = ref.abs().max().item()
        rel = diff / scale if scale > 0 else float("inf")
        agree = int((got.argmax(1) == ref.argmax(1)).sum())
        n = got.shape[0]
        own_rel = (own - ref).abs().max().item() / scale if scale > 0 else float("inf")
        result = {"relative_error": rel, "max_abs_diff": diff, "max_abs_torch": scale, "top1_agreement": agree,
                  "images": n, "torch_channels_last_relative_error": own_rel}
        print(f"relative error {rel:.3e} (max |dfq - torch| {diff:.3e} / max |torch| {scale:.3e} over "
              f"{n} x {got.shape[1]} logits; PyTorch channels-last vs its own NCHW: {own_rel:.1e}); "
              f"top-1 agreement {agree}/{n}")
    else:
        if len(args.outputs) != 2:
            sys.exit("error: give two saved-outputs files (or --model and one)")
        a, b = load(args.outputs[0]), load(args.outputs[1])
        if list(a["paths"]) != list(b["paths"]):
            sys.exit("error: the two files do not hold the same images")
        n = a["logits"].shape[0]
        agree = int((a["logits"].argmax(1) == b["logits"].argmax(1)).sum())
        same_inputs = bool(torch.equal(a["inputs"], b["inputs"]))
        result = {"top1_agreement": agree, "images": n, "same_inputs": same_inputs}
        print(f"top-1 agreement {agree}/{n}" + ("" if same_inputs else " (inputs differ)"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
