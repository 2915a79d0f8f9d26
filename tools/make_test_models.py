#!/usr/bin/env python3
"""Write the TorchScript importer fixtures under tests/data/models/.

Each fixture is a tiny eval-mode model, traced with torch.jit.trace, that
exercises one ATen op or variant the importer must convert (or must refuse).
The manifest (tests/data/models/manifest.json) lists, per file, the input
shape [N,C,H,W] (N = 2; a model with several inputs has the first in
"input_shape" and all of them in "input_shapes"), the aten:: node kinds
present in the inlined frozen graph (exactly what the C++ importer sees:
torch::jit::load, freeze_module, Inline), the other non-trivial prim:: kinds,
whether the importer must accept it, and for a refused op fixture the op and
module scope the error must name ("error_op", "error_scope").

After writing, every file is reloaded and checked:
  * the set of aten:: kinds in its frozen + inlined graph equals the
    manifest's "ops" (the script fails otherwise);
  * the reloaded module matches the Python model on random input.

A .pt archive also records, in its *.debug_pkl members, source ranges with this
script's line numbers; an existing file whose other members are unchanged is
left as it is, so editing the script does not rewrite every fixture. New
fixtures go at the end of fixtures(): the BN statistics and inputs come from
one shared generator, so inserting one earlier would change all that follow.

Deterministic: seed 0, one thread. Usage (from the repository root, Debian's
python3 with python3-torch):
    /usr/bin/python3 tools/make_test_models.py [--out tests/data/models]
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile

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



# ---------------------------------------------------------------- MobileNetV3 / EfficientNet /
# ShuffleNetV2 / segmentation-style ops (appended; every fixture above is unchanged)
class SqueezeExcite(nn.Module):
    """A block ending in squeeze-and-excitation as torchvision writes it
    (torchvision.ops.misc.SqueezeExcitation; MobileNetV3, EfficientNet, RegNetY):
    conv + BN + act, then scale = scale_act(fc2(act_se(fc1(adaptive_avg_pool2d(x, 1))))),
    `scale * x` (aten::mul broadcasting [N,C,1,1] against [N,C,H,W]), then a
    1x1 projection conv + BN as in the inverted-residual blocks."""

    def __init__(self, act, se_act, scale_act, cin=3, c=8, squeeze=4, cout=6):
        super().__init__()
        self.conv = nn.Conv2d(cin, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.act = act
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.activation = se_act
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.scale_activation = scale_act
        self.project = nn.Conv2d(c, cout, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        scale = self.scale_activation(scale)
        x = scale * x
        return self.project_bn(self.project(x))


def channel_shuffle(x, groups: int):
    """Verbatim torchvision.models.shufflenetv2.channel_shuffle (torchvision 0.14)."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups

    # reshape
    x = x.view(batchsize, groups, channels_per_group, height, width)

    x = torch.transpose(x, 1, 2).contiguous()

    # flatten
    x = x.view(batchsize, -1, height, width)

    return x


class ConvShuffleConv(nn.Module):
    def __init__(self, groups=2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 4, 1)
        self.groups = groups

    def forward(self, x):
        return self.conv2(channel_shuffle(self.conv1(x), self.groups))


class ShuffleUnit(nn.Module):
    """conv + BN + ReLU stem (3 -> 8), then torchvision's ShuffleNetV2
    InvertedResidual(8, 8, stride=1) verbatim: x1, x2 = x.chunk(2, dim=1);
    cat((x1, branch2(x2)), 1); channel_shuffle(out, 2); then a 1x1 conv."""

    def __init__(self, c=8):
        super().__init__()
        b = c // 2
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU(inplace=True))
        self.branch2 = nn.Sequential(
            nn.Conv2d(b, b, 1, 1, 0, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
            nn.Conv2d(b, b, 3, 1, 1, bias=False, groups=b), nn.BatchNorm2d(b),
            nn.Conv2d(b, b, 1, 1, 0, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(c, 5, 1)

    def forward(self, x):
        x = self.stem(x)
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch2(x2)), dim=1)
        out = channel_shuffle(out, 2)
        return self.head(out)


class ChunkTwoBranches(nn.Module):
    """conv 3 -> 8, x.chunk(2, dim=1), a conv on each half, cat back."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        x1, x2 = self.conv(x).chunk(2, dim=1)
        return torch.cat((self.a(x1), F.relu(self.b(x2))), dim=1)


class SplitSizes(nn.Module):
    """conv 3 -> 8, torch.split(x, [3, 5], dim=1), a conv on each part, cat back."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(5, 2, 3, padding=1)

    def forward(self, x):
        p, q = torch.split(self.conv(x), [3, 5], dim=1)
        return torch.cat([self.a(p), self.b(q)], dim=1)


class PermuteRoundTrip(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        y = self.conv1(x).permute(0, 2, 3, 1)  # NHWC
        return self.conv2(y.permute(0, 3, 1, 2))


class ConvUpConv(nn.Module):
    """conv -> `up` (interpolation) -> conv, as in a segmentation decoder."""

    def __init__(self, up):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.up = up
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.up(self.conv1(x)))


class LayerNormChannels(nn.Module):
    """ConvNeXt style: conv, permute to NHWC, LayerNorm over C, permute back, conv."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = nn.LayerNorm(6)
        self.conv2 = nn.Conv2d(6, 4, 1)
        with torch.no_grad():
            self.norm.weight.copy_(1.0 + 0.3 * torch.randn(6))
            self.norm.bias.copy_(0.2 * torch.randn(6))

    def forward(self, x):
        y = self.norm(self.conv1(x).permute(0, 2, 3, 1))
        return self.conv2(y.permute(0, 3, 1, 2))


class CumsumHead(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, 1)


class UnsupportedCumsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.head = CumsumHead()

    def forward(self, x):
        return self.head(self.bn(self.conv(x)))


class VectorInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(x)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)

    def forward(self, x, y):
        return self.a(x) + self.b(y)


def fixtures():
    """(name, model factory, input shape, expected aten ops, supported, description[, extra]).

    The input shape is a list of shapes for a model with several inputs; `extra` holds
    further manifest fields (error_op, error_scope of a refused fixture)."""
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
        # Formerly the unsupported-op fixture; aten::sigmoid is supported now and conv + BN +
        # sigmoid is all this graph holds. Refusal tests use unsupported_cumsum.pt instead.
        ("unsupported_sigmoid", UnsupportedSigmoid, S, [conv, bn, "aten::sigmoid"], True,
         "conv-BN then module 'head' calling torch.sigmoid (the name is historical: sigmoid is "
         "supported now; unsupported_cumsum.pt is the refusal fixture)"),
        # Appended last: the shared generator leaves every fixture above unchanged.
        ("fixed_size_linear", FixedSizeHead, S, [conv, "aten::relu", "aten::flatten", "aten::linear"], True,
         "conv + ReLU + flatten + Linear(256, 5): takes 8x8 inputs only"),
        # ---- Appended after the above (same shared generator, so nothing above changes).
        # Activations of MobileNetV3 / EfficientNet / transformers-in-CNNs.
        ("hardswish", lambda: ConvActModule(nn.Hardswish()), S, [conv, "aten::hardswish"], True,
         "nn.Hardswish()"),
        ("hardswish_inplace", lambda: ConvActModule(nn.Hardswish(inplace=True)), S,
         [conv, "aten::hardswish_"], True,
         "nn.Hardswish(inplace=True)"),
        ("hardsigmoid", lambda: ConvActModule(nn.Hardsigmoid()), S, [conv, "aten::hardsigmoid"], True,
         "nn.Hardsigmoid()"),
        ("hardsigmoid_inplace", lambda: ConvActModule(nn.Hardsigmoid(inplace=True)), S,
         [conv, "aten::hardsigmoid_"], True,
         "nn.Hardsigmoid(inplace=True) (what F.hardsigmoid(x, inplace=True) in older torchvision SE traces to)"),
        ("silu", lambda: ConvActModule(nn.SiLU()), S, [conv, "aten::silu"], True,
         "nn.SiLU()"),
        ("silu_inplace", lambda: ConvActModule(nn.SiLU(inplace=True)), S, [conv, "aten::silu_"], True,
         "nn.SiLU(inplace=True)"),
        ("sigmoid", lambda: ConvActModule(Lambda(torch.sigmoid)), S, [conv, "aten::sigmoid"], True,
         "torch.sigmoid after a conv"),
        ("gelu", lambda: ConvActModule(nn.GELU()), S, [conv, "aten::gelu"], True,
         "nn.GELU() (approximate='none', the erf form)"),
        ("gelu_tanh", lambda: ConvActModule(nn.GELU(approximate="tanh")), S, [conv, "aten::gelu"], True,
         "nn.GELU(approximate='tanh')"),
        # Squeeze-and-excitation and elementwise multiplication.
        ("se_hardsigmoid", lambda: SqueezeExcite(nn.ReLU(inplace=True), nn.ReLU(), nn.Hardsigmoid()), S,
         [conv, bn, "aten::relu_", "aten::adaptive_avg_pool2d", "aten::relu", "aten::hardsigmoid",
          "aten::mul"], True,
         "MobileNetV3 style: conv+BN+ReLU(inplace), SE F.adaptive_avg_pool2d(x,1) -> 1x1 conv -> ReLU -> "
         "1x1 conv -> Hardsigmoid, scale * x (aten::mul [N,C,1,1] * [N,C,H,W]), 1x1 conv + BN"),
        ("se_sigmoid", lambda: SqueezeExcite(nn.SiLU(inplace=True), nn.SiLU(), nn.Sigmoid()), S,
         [conv, bn, "aten::silu_", "aten::adaptive_avg_pool2d", "aten::silu", "aten::sigmoid",
          "aten::mul"], True,
         "EfficientNet style: conv+BN+SiLU(inplace), SE F.adaptive_avg_pool2d(x,1) -> 1x1 conv -> SiLU -> "
         "1x1 conv -> Sigmoid, scale * x (aten::mul [N,C,1,1] * [N,C,H,W]), 1x1 conv + BN"),
        ("mul", lambda: TwoBranch(lambda a, b: a * b), S, [conv, "aten::mul"], True,
         "x * y of two same-shape conv outputs"),
        ("mul_scalar", lambda: ConvActModule(Lambda(lambda x: x * 0.5)), S, [conv, "aten::mul"], True,
         "x * 0.5: the tracer records aten::mul(Tensor, Tensor) whose second operand is a 0-dim "
         "float64 tensor constant {0.5} (no Scalar overload); the result stays float32"),
        # ShuffleNetV2 and other data movement.
        ("channel_shuffle", ConvShuffleConv, S,
         [conv, "aten::size", "aten::Int", "aten::floor_divide", "aten::view", "aten::transpose",
          "aten::contiguous"], True,
         "conv 3->8, torchvision's channel_shuffle(x, 2) verbatim (x.size(), //, view to 5-D, "
         "torch.transpose(x,1,2).contiguous(), view(b, -1, h, w)), conv 8->4"),
        ("shufflenet_unit", ShuffleUnit, S,
         [conv, bn, "aten::relu_", "aten::chunk", "aten::cat", "aten::size", "aten::Int", "aten::floor_divide",
          "aten::view", "aten::transpose", "aten::contiguous"], True,
         "conv+BN+ReLU stem, ShuffleNetV2 InvertedResidual(8, 8, stride 1): x.chunk(2, dim=1), "
         "cat((x1, branch2(x2)), 1), channel_shuffle(out, 2); then a 1x1 conv"),
        ("chunk_cat", ChunkTwoBranches, S, [conv, "aten::chunk", "aten::relu", "aten::cat"], True,
         "conv 3->8, x.chunk(2, dim=1), a conv on each half (3x3 4->4; 1x1 4->3 + ReLU), cat along dim 1"),
        ("split_sizes", SplitSizes, S, [conv, "aten::split_with_sizes", "aten::cat"], True,
         "conv 3->8, torch.split(x, [3, 5], dim=1), a conv on each part, cat along dim 1"),
        ("permute_roundtrip", PermuteRoundTrip, S, [conv, "aten::permute"], True,
         "conv, x.permute(0, 2, 3, 1) then .permute(0, 3, 1, 2) back, conv"),
        # Interpolation.
        ("upsample_nearest_scale2", lambda: ConvUpConv(nn.Upsample(scale_factor=2, mode="nearest")), S,
         [conv, "aten::upsample_nearest2d"], True,
         "nn.Upsample(scale_factor=2, mode='nearest'): 8x8 -> 16x16"),
        ("upsample_nearest_size", lambda: ConvUpConv(Lambda(lambda x: F.interpolate(x, size=(12, 16), mode="nearest"))),
         S, [conv, "aten::upsample_nearest2d"], True,
         "F.interpolate(x, size=(12, 16), mode='nearest'): 8x8 -> 12x16 (non-integer ratio on H)"),
        ("upsample_bilinear_scale2", lambda: ConvUpConv(Lambda(
            lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))), S,
         [conv, "aten::upsample_bilinear2d"], True,
         "F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False): 8x8 -> 16x16"),
        ("upsample_bilinear_align_corners", lambda: ConvUpConv(
            nn.Upsample(size=(12, 14), mode="bilinear", align_corners=True)), S,
         [conv, "aten::upsample_bilinear2d"], True,
         "nn.Upsample(size=(12, 14), mode='bilinear', align_corners=True): 8x8 -> 12x14"),
        # Refused, and meant to stay refused.
        ("unsupported_layer_norm", LayerNormChannels, S, [conv, "aten::permute", "aten::layer_norm"], False,
         "ConvNeXt-style LayerNorm over channels via permute: aten::layer_norm normalizes each pixel "
         "across channels with statistics computed at run time, which BN folding and dfq's per-channel "
         "quantization cannot express; must be refused naming aten::layer_norm and scope 'norm'",
         {"error_op": "aten::layer_norm", "error_scope": "norm"}),
        ("unsupported_cumsum", UnsupportedCumsum, S, [conv, bn, "aten::cumsum"], False,
         "conv-BN then module 'head' calling torch.cumsum(x, 1): a running sum across channels is no "
         "CNN op and has no quantized form; must be refused naming aten::cumsum and scope 'head' "
         "(the refusal fixture now that sigmoid is supported)",
         {"error_op": "aten::cumsum", "error_scope": "head"}),
        ("vector_input", VectorInput, [2, 16], ["aten::linear"], False,
         "vector input: forward(x) with x [N, 16] into nn.Linear(16, 5); dfq takes one [N,C,H,W] image "
         "input"),
        ("two_inputs", TwoInputs, [[2, 3, 8, 8], [2, 3, 8, 8]], [conv, "aten::add"], False,
         "two inputs: forward(x, y) = conv_a(x) + conv_b(y); dfq takes exactly one image input"),
        ("leaky_relu", lambda: ConvActModule(nn.LeakyReLU(0.1)), S, [conv, "aten::leaky_relu"], True,
         "conv -> nn.LeakyReLU(0.1)"),
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


def same_archive(a, b):
    """True if two TorchScript archives differ at most in their *.debug_pkl members.

    Those hold source ranges including this script's line numbers and call stack,
    so any edit to the script would otherwise rewrite every fixture's bytes."""
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        names = za.namelist()
        if names != zb.namelist():
            return False
        return all(za.read(n) == zb.read(n) for n in names if not n.endswith(".debug_pkl"))


def random_inputs(shape, gen):
    """One tensor for shape [N, ...], or a tuple for a list of shapes."""
    if isinstance(shape[0], list):
        return tuple(torch.randn(s, generator=gen) for s in shape)
    return (torch.randn(shape, generator=gen),)


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
    tmpdir = tempfile.mkdtemp(prefix="make_test_models.")
    kept = 0
    for name, factory, shape, expected, supported, desc, *extra in fixtures():
        torch.manual_seed(SEED)  # each model's init is independent of the others
        model = randomize_bn(factory(), gen).eval()
        example = random_inputs(shape, gen)
        with torch.no_grad():
            traced = torch.jit.trace(model, example)
        path = os.path.join(args.out, name + ".pt")
        # Saved under its own name (the archive's top folder is the file's stem); an
        # existing file with the same content but for debug info is left as it is.
        fresh = os.path.join(tmpdir, name + ".pt")
        traced.save(fresh)
        if os.path.exists(path) and same_archive(fresh, path):
            os.remove(fresh)
            kept += 1
        else:
            shutil.move(fresh, path)
        size = os.path.getsize(path)
        total += size

        fm, g = inlined_frozen_graph(path)
        aten, other = node_kinds(g)
        if args.verbose:
            print(g)
        # The reloaded, frozen module must match the Python model.
        x = random_inputs(shape, gen)
        with torch.no_grad():
            ref = model(*x)
            got = torch.jit.load(path).eval()(*x)
            got_frozen = fm.forward(*x)
        if not (torch.allclose(ref, got, atol=1e-5) and torch.allclose(ref, got_frozen, atol=1e-5)):
            problems.append(f"{name}: reloaded output differs from the Python model")
        if sorted(set(expected)) != aten:
            problems.append(f"{name}: expected aten ops {sorted(set(expected))}, graph has {aten}")
        digest = hashlib.sha256(open(path, "rb").read()).hexdigest()[:12]
        print(f"{name + '.pt':32s} {size:6d} B  in {shape}  out {list(ref.shape)}  "
              f"sha256 {digest}\n    aten: {', '.join(aten)}"
              + (f"\n    prim: {', '.join(other)}" if other else ""))
        several = isinstance(shape[0], list)
        entry = {"file": name + ".pt", "input_shape": shape[0] if several else shape}
        if several:
            entry["input_shapes"] = shape
        entry.update({"ops": aten, "prim_ops": other, "supported": supported, "description": desc})
        for e in extra:
            entry.update(e)
        manifest.append(entry)
    os.rmdir(tmpdir)

    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        # One fixture per line keeps the manifest readable and diffable.
        f.write("[\n" + ",\n".join(" " + json.dumps(e) for e in manifest) + "\n]\n")
    print(f"{len(manifest)} fixtures, {total} bytes of .pt files in {args.out} "
          f"({kept} unchanged but for debug info, left as they were)")
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
