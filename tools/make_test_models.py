#!/usr/bin/env python3
"""Write the TorchScript importer fixtures under tests/data/models/.

Each fixture is a tiny eval-mode model, traced with torch.jit.trace, that
exercises one ATen op or variant the importer must convert. The manifest
(tests/data/models/manifest.json) lists, per file, the input shape [N,C,H,W]
(N = 2), the aten:: node kinds present in the inlined frozen graph (exactly
what the C++ importer sees: torch::jit::load, freeze_module, Inline), the
other non-trivial prim:: kinds, and whether the importer must accept it.

After writing, every file is reloaded and checked:
  * the set of aten:: kinds in its frozen + inlined graph equals the
    manifest's "ops" (the script fails otherwise);
  * the reloaded module matches the Python model on random input.

Deterministic: seed 0, one thread. Usage (from the repository root, Debian's
python3 with python3-torch):
    /usr/bin/python3 tools/make_test_models.py [--out tests/data/models]
"""
import argparse
import hashlib
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 0
# prim:: kinds that carry no computation; everything else is reported.
TRIVIAL_PRIM = {"prim::Constant", "prim::ListConstruct", "prim::TupleConstruct"}


# ---------------------------------------------------------------- helpers
def randomize_bn(model, gen):
    """Non-trivial BN running stats and affine parameters from a seeded generator."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)  # U(0.5, 2)
                m.weight.copy_(1.0 + 0.3 * torch.randn(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
    return model


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


# ---------------------------------------------------------------- fixtures
class ConvOnly(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(*args, **kwargs)

    def forward(self, x):
        return self.conv(x)


class DepthwiseBNReLU6(nn.Module):
    """MobileNet style: depthwise stride 2 + BN + ReLU6(inplace) (hardtanh_),
    then a depthwise conv with channel multiplier 2 (groups=4, 4 -> 8)."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU6(inplace=True)
        self.dw2 = nn.Conv2d(4, 8, 3, padding=1, groups=4)

    def forward(self, x):
        return self.dw2(self.act(self.bn(self.dw(x))))


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x):
        return self.bn(self.conv(x))


class BNStandalone(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(x)


class ConvActModule(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = act

    def forward(self, x):
        return self.act(self.conv(x))


class TwoBranch(nn.Module):
    """Two convs on the same input combined by `combine`."""

    def __init__(self, combine, cin=3, c1=4, c2=4):
        super().__init__()
        self.a = nn.Conv2d(cin, c1, 3, padding=1)
        self.b = nn.Conv2d(cin, c2, 1)
        self.combine = combine

    def forward(self, x):
        return self.combine(self.a(x), self.b(x))


class AddInplace(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.a(x)
        y += self.b(x)
        return y


class OptionABlock(nn.Module):
    """CIFAR ResNet block with the option-A shortcut: 4 -> 8 channels, stride 2."""

    def __init__(self, cin=4, planes=8):
        super().__init__()
        self.planes = planes
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        c = self.planes
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, c // 4, c // 4), "constant", 0)
        return F.relu(out + shortcut)


class Head(nn.Module):
    """Pooling + flatten variant + classifier, after a conv."""

    def __init__(self, flatten, linear, cin=3, c=4, pool=2):
        super().__init__()
        self.conv = nn.Conv2d(cin, c, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.flatten = flatten
        self.fc = linear

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.conv(x))))


class Addmm(nn.Module):
    def __init__(self, cin=16, cout=5):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.w = nn.Parameter(torch.randn(cout, cin) * 0.2)
        self.b = nn.Parameter(torch.randn(cout) * 0.1)

    def forward(self, x):
        x = torch.flatten(self.pool(self.conv(x)), 1)
        return torch.addmm(self.b, x, self.w.t())


class MeanHead(nn.Module):
    def __init__(self, keepdim):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.keepdim = keepdim

    def forward(self, x):
        return self.conv(x).mean((2, 3), keepdim=self.keepdim)


class WholeNet(nn.Module):
    """conv-BN-ReLU stem, residual block, maxpool, cat of two branches, mean, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True))
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.branch_a = nn.Sequential(nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.branch_b = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
                                      nn.ReLU())
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = self.relu2(y + x)
        x = self.pool(x)
        x = torch.cat([self.branch_a(x), self.branch_b(x)], 1)
        x = x.mean((2, 3))
        return self.fc(x)


class SigmoidHead(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x)


class FixedSizeHead(nn.Module):
    """conv -> ReLU -> flatten -> Linear sized for 8x8 inputs only (no pooling):
    the CLI's bad-input tests give it images of another size."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))


class UnsupportedSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.head = SigmoidHead()

    def forward(self, x):
        return self.head(self.bn(self.conv(x)))


def fixtures():
    """(name, model factory, input shape, expected aten ops, supported, description)."""
    conv = "aten::_convolution"
    bn = "aten::batch_norm"
    S = [2, 3, 8, 8]
    return [
        ("conv_bias", lambda: ConvOnly(3, 4, 3, padding=1), S, [conv], True,
         "3x3 conv with bias"),
        ("conv_nobias", lambda: ConvOnly(3, 4, 3, padding=1, bias=False), S, [conv], True,
         "3x3 conv without bias"),
        ("conv_stride2_pad", lambda: ConvOnly(3, 5, 3, stride=2, padding=1), [2, 3, 9, 9], [conv], True,
         "3x3 conv stride 2 padding 1 on an odd 9x9 input"),
        ("conv_dilation2", lambda: ConvOnly(3, 4, 3, padding=2, dilation=2), [2, 3, 10, 10], [conv], True,
         "3x3 conv dilation 2 padding 2"),
        ("conv_grouped", lambda: ConvOnly(4, 6, 3, padding=1, groups=2), [2, 4, 8, 8], [conv], True,
         "grouped conv, groups=2, 4 -> 6"),
        ("conv_depthwise", lambda: ConvOnly(4, 4, 3, padding=1, groups=4), [2, 4, 8, 8], [conv], True,
         "depthwise conv, groups=channels=4"),
        ("conv_depthwise_bn_relu6", DepthwiseBNReLU6, [2, 4, 8, 8], [conv, bn, "aten::hardtanh_"], True,
         "depthwise stride 2 + BN + ReLU6(inplace=True), then depthwise with channel multiplier 2"),
        ("conv_1x1", lambda: ConvOnly(4, 6, 1), [2, 4, 8, 8], [conv], True,
         "1x1 conv"),
        ("conv_3x1_asym_pad", lambda: ConvOnly(3, 4, (3, 1), padding=(1, 0)), S, [conv], True,
         "non-square 3x1 kernel, padding (1,0)"),
        ("conv_bn", ConvBN, S, [conv, bn], True,
         "conv without bias + BatchNorm2d"),
        ("bn_standalone", BNStandalone, S, [bn], True,
         "BatchNorm2d directly on the input"),
        ("relu", lambda: ConvActModule(Lambda(F.relu)), S, [conv, "aten::relu"], True,
         "F.relu"),
        ("relu_inplace", lambda: ConvActModule(nn.ReLU(inplace=True)), S, [conv, "aten::relu_"], True,
         "nn.ReLU(inplace=True)"),
        ("relu6_module", lambda: ConvActModule(nn.ReLU6()), S, [conv, "aten::hardtanh"], True,
         "nn.ReLU6 module (traces as hardtanh 0..6)"),
        ("relu6_functional", lambda: ConvActModule(Lambda(F.relu6)), S, [conv, "aten::relu6"], True,
         "F.relu6 called functionally"),
        ("hardtanh", lambda: ConvActModule(Lambda(lambda x: F.hardtanh(x, -0.5, 0.7))), S,
         [conv, "aten::hardtanh"], True,
         "F.hardtanh(x, -0.5, 0.7)"),
        ("clamp", lambda: ConvActModule(Lambda(lambda x: torch.clamp(x, 0, 6))), S,
         [conv, "aten::clamp"], True,
         "torch.clamp(x, 0, 6)"),
        ("add", lambda: TwoBranch(lambda a, b: a + b), S, [conv, "aten::add"], True,
         "x + y of two conv branches"),
        ("add_alpha", lambda: TwoBranch(lambda a, b: torch.add(a, b, alpha=0.5)), S,
         [conv, "aten::add"], True,
         "torch.add(x, y, alpha=0.5)"),
        ("add_inplace", AddInplace, S, [conv, "aten::add_"], True,
         "x += y"),
        ("shortcut_option_a", OptionABlock, [2, 4, 8, 8],
         [conv, bn, "aten::relu", "aten::slice", "aten::add", "aten::pad"], True,
         "ResNet option-A shortcut F.pad(x[:, :, ::2, ::2], (0,0,0,0,c//4,c//4)) + residual add"),
        ("slice_channels", lambda: ConvActModule(Lambda(lambda x: x[:, 1:5:2])), S,
         [conv, "aten::slice"], True,
         "x[:, 1:5:2] on the channels of a conv output"),
        ("pad_spatial", lambda: ConvActModule(Lambda(lambda x: F.pad(x, (1, 2, 0, 1)))), S,
         [conv, "aten::pad"], True,
         "F.pad(x, (1, 2, 0, 1)) constant 0 on W and H"),
        ("pad_channels", lambda: ConvActModule(Lambda(lambda x: F.pad(x, (0, 0, 0, 0, 1, 2), "constant", 0.0))), S,
         [conv, "aten::pad"], True,
         "F.pad(x, (0,0,0,0,1,2)) on the channel dim"),
        ("maxpool", lambda: ConvActModule(nn.MaxPool2d(3, 2, 1)), S, [conv, "aten::max_pool2d"], True,
         "MaxPool2d(3, stride 2, padding 1)"),
        ("maxpool_ceil", lambda: ConvActModule(nn.MaxPool2d(3, 2, ceil_mode=True)), S,
         [conv, "aten::max_pool2d"], True,
         "MaxPool2d(3, stride 2, ceil_mode=True): 8x8 -> 4x4 (3x3 without ceil)"),
        ("avgpool", lambda: ConvActModule(nn.AvgPool2d(2)), S, [conv, "aten::avg_pool2d"], True,
         "AvgPool2d(2)"),
        ("avgpool_exclude_pad", lambda: ConvActModule(nn.AvgPool2d(3, 2, 1, count_include_pad=False)), S,
         [conv, "aten::avg_pool2d"], True,
         "AvgPool2d(3, stride 2, padding 1, count_include_pad=False)"),
        ("adaptive_avg_1", lambda: ConvActModule(nn.AdaptiveAvgPool2d(1)), S,
         [conv, "aten::adaptive_avg_pool2d"], True,
         "AdaptiveAvgPool2d(1)"),
        ("adaptive_avg_2x2", lambda: ConvActModule(nn.AdaptiveAvgPool2d((2, 2))), S,
         [conv, "aten::adaptive_avg_pool2d"], True,
         "AdaptiveAvgPool2d((2, 2))"),
        ("flatten", lambda: Head(Lambda(lambda x: torch.flatten(x, 1)), nn.Linear(16, 5)), S,
         [conv, "aten::adaptive_avg_pool2d", "aten::flatten", "aten::linear"], True,
         "torch.flatten(x, 1) + nn.Linear"),
        ("view_size", lambda: Head(Lambda(lambda x: x.view(x.size(0), -1)), nn.Linear(16, 5)), S,
         [conv, "aten::adaptive_avg_pool2d", "aten::size", "aten::view", "aten::linear"], True,
         "x.view(x.size(0), -1)"),
        ("reshape_size", lambda: Head(Lambda(lambda x: x.reshape(x.size(0), -1)), nn.Linear(16, 5)), S,
         [conv, "aten::adaptive_avg_pool2d", "aten::size", "aten::reshape", "aten::linear"], True,
         "x.reshape(x.size(0), -1)"),
        ("view_const", lambda: Head(Lambda(lambda x: x.view(-1, 4 * 2 * 2)), nn.Linear(16, 5)), S,
         [conv, "aten::adaptive_avg_pool2d", "aten::view", "aten::linear"], True,
         "x.view(-1, C*H*W) with constant C*H*W = 16"),
        ("linear", lambda: Head(Lambda(lambda x: torch.flatten(x, 1)), nn.Linear(16, 5)), S,
         [conv, "aten::adaptive_avg_pool2d", "aten::flatten", "aten::linear"], True,
         "nn.Linear(16, 5) with bias"),
        ("linear_nobias", lambda: Head(Lambda(lambda x: torch.flatten(x, 1)), nn.Linear(16, 5, bias=False)), S,
         [conv, "aten::adaptive_avg_pool2d", "aten::flatten", "aten::linear"], True,
         "nn.Linear(16, 5, bias=False)"),
        ("addmm", Addmm, [2, 4, 8, 8],
         [conv, "aten::adaptive_avg_pool2d", "aten::flatten", "aten::addmm"], True,
         "torch.addmm(self.b, x, self.w.t())"),
        ("dropout", lambda: ConvActModule(nn.Dropout(0.5)), S, [conv, "aten::dropout"], True,
         "nn.Dropout(0.5) in eval mode (identity)"),
        ("cat", lambda: TwoBranch(lambda a, b: torch.cat([a, b], 1), c1=4, c2=3), S,
         [conv, "aten::cat"], True,
         "torch.cat of two conv branches (4 + 3 channels) along dim 1"),
        ("mean", lambda: MeanHead(False), S, [conv, "aten::mean"], True,
         "x.mean((2, 3)) keepdim=False"),
        ("mean_keepdim", lambda: MeanHead(True), S, [conv, "aten::mean"], True,
         "x.mean((2, 3), keepdim=True)"),
        ("whole_net", WholeNet, [2, 3, 16, 16],
         [conv, bn, "aten::relu_", "aten::relu", "aten::add", "aten::max_pool2d", "aten::cat",
          "aten::mean", "aten::linear"], True,
         "conv-BN-ReLU stem, residual block, maxpool, cat of two branches, mean, linear"),
        ("unsupported_sigmoid", UnsupportedSigmoid, S, [conv, bn, "aten::sigmoid"], False,
         "conv-BN then module 'head' calling torch.sigmoid: must be refused naming aten::sigmoid "
         "and scope 'head'"),
        # Appended last: the shared generator leaves every fixture above unchanged.
        ("fixed_size_linear", FixedSizeHead, S, [conv, "aten::relu", "aten::flatten", "aten::linear"], True,
         "conv + ReLU + flatten + Linear(256, 5): takes 8x8 inputs only"),
    ]


# ---------------------------------------------------------------- inspection
def inlined_frozen_graph(path):
    """What the C++ importer sees: load, eval, freeze_module (no folding), Inline."""
    m = torch.jit.load(path)
    m.eval()
    fm = torch._C._freeze_module(m._c)
    g = fm._get_method("forward").graph
    torch._C._jit_pass_inline(g)
    return fm, g


def node_kinds(g):
    aten, other = set(), set()
    for n in g.nodes():
        k = n.kind()
        if k.startswith("aten::"):
            aten.add(k)
        elif k not in TRIVIAL_PRIM:
            other.add(k)
    return sorted(aten), sorted(other)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/models")
    ap.add_argument("--verbose", action="store_true", help="print every inlined frozen graph")
    args = ap.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    gen = torch.Generator().manual_seed(SEED)

    manifest, problems, total = [], [], 0
    for name, factory, shape, expected, supported, desc in fixtures():
        torch.manual_seed(SEED)  # each model's init is independent of the others
        model = randomize_bn(factory(), gen).eval()
        example = torch.randn(shape, generator=gen)
        with torch.no_grad():
            traced = torch.jit.trace(model, example)
        path = os.path.join(args.out, name + ".pt")
        traced.save(path)
        size = os.path.getsize(path)
        total += size

        fm, g = inlined_frozen_graph(path)
        aten, other = node_kinds(g)
        if args.verbose:
            print(g)
        # The reloaded, frozen module must match the Python model.
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            ref = model(x)
            got = torch.jit.load(path).eval()(x)
            got_frozen = fm.forward(x)
        if not (torch.allclose(ref, got, atol=1e-5) and torch.allclose(ref, got_frozen, atol=1e-5)):
            problems.append(f"{name}: reloaded output differs from the Python model")
        if sorted(set(expected)) != aten:
            problems.append(f"{name}: expected aten ops {sorted(set(expected))}, graph has {aten}")
        digest = hashlib.sha256(open(path, "rb").read()).hexdigest()[:12]
        print(f"{name + '.pt':32s} {size:6d} B  in {shape}  out {list(ref.shape)}  "
              f"sha256 {digest}\n    aten: {', '.join(aten)}"
              + (f"\n    prim: {', '.join(other)}" if other else ""))
        entry = {"file": name + ".pt", "input_shape": shape, "ops": aten, "prim_ops": other,
                 "supported": supported, "description": desc}
        if not supported:
            entry["error_op"] = "aten::sigmoid"
            entry["error_scope"] = "head"
        manifest.append(entry)

    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        # One fixture per line keeps the manifest readable and diffable.
        f.write("[\n" + ",\n".join(" " + json.dumps(e) for e in manifest) + "\n]\n")
    print(f"{len(manifest)} fixtures, {total} bytes of .pt files in {args.out}")
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
