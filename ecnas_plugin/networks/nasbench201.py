"""NAS-Bench-201 network in PyTorch, built to the layout of NAS-Bench-201's CIFAR model.

Layout (Dong & Yang 2020): stem conv3x3 (no bias) + BN; three stages of ``N`` cells with ``C``,
``2C``, ``4C`` channels, separated by ResNet basic blocks with stride 2 (ReLU-Conv3x3-BN twice,
shortcut 2x2 avg-pool + 1x1 conv); final BN + ReLU, global average pool, linear classifier.
A cell has 4 nodes; node ``j`` sums ``op(node i)`` over ``i < j``; the cell outputs node 3.
Ops: ``none`` (zero), ``skip_connect`` (identity), ``nor_conv_1x1``/``nor_conv_3x3``
(ReLU-Conv-BN, conv without bias), ``avg_pool_3x3`` (stride 1, padding not counted).

An architecture is the 6 edge op names in the order of the arch string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (edges 0->1, 0->2, 1->2, 0->3, 1->3, 2->3), or that string.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import nn

from ecnas_plugin.adapters import nasbench201 as codec
from ecnas_plugin.errors import UnknownName

NB201_OPS = codec.OPS
# (source node, target node) of each position in the arch string.
EDGES = codec.STRING_EDGES


def parse_arch(arch: str | Sequence[str]) -> tuple[str, ...]:
    """The 6 edge op names of ``arch`` (an arch string or a sequence of names), in arch-string order.
    Validation is the codec's."""
    if isinstance(arch, str):
        return codec.parse_arch_str(arch)
    return codec.parse_arch_str(codec.to_arch_str(tuple(arch)))


ACTIVATIONS = {"relu": nn.ReLU, "hardswish": nn.Hardswish, "mish": nn.Mish}  # JAHS-Bench-201's three


def activation_layer(name: str) -> nn.Module:
    """The activation module named ``name`` (a key of ACTIVATIONS)."""
    if name not in ACTIVATIONS:
        raise UnknownName("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


class ReLUConvBN(nn.Sequential):
    """Activation (ReLU in NB201), conv without bias, affine BN: NB201's ``nor_conv`` op and
    basic-block branch; JAHS-Bench-201 swaps the activation."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, activation: str = "relu"):
        super().__init__(
            activation_layer(activation),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The ``none`` op: contributes zeros (kept so FLOP hooks see the same graph as NB201)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def _edge_op(name: str, channels: int, activation: str = "relu") -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    return ReLUConvBN(channels, channels, 1 if name == "nor_conv_1x1" else 3, activation=activation)


class NB201Cell(nn.Module):
    """The NB201 cell: a 4-node DAG whose 6 edges carry the architecture's ops."""

    def __init__(self, ops: Sequence[str], channels: int, activation: str = "relu"):
        super().__init__()
        self.edge_ops = nn.ModuleList(_edge_op(name, channels, activation) for name in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            terms = [op(nodes[src]) for (src, dst), op in zip(EDGES, self.edge_ops) if dst == target]
            nodes.append(sum(terms[1:], terms[0]))
        return nodes[3]


class ResNetBasicBlock(nn.Module):
    """NB201's reduction block: two ReLU-Conv3x3-BN (the first with stride 2) plus a pooled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, activation: str = "relu"):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2, activation=activation)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, activation=activation)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """The NAS-Bench-201 network for one cell; see the module docstring for the layout."""

    def __init__(self, arch: str | Sequence[str], *, C: int = 16, N: int = 5, num_classes: int = 10,
                 in_channels: int = 3, activation: str = "relu"):
        super().__init__()
        self.ops = parse_arch(arch)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)]
        channels = C
        for stage in range(3):
            if stage > 0:
                layers.append(ResNetBasicBlock(channels, channels * 2, activation))
                channels *= 2
            layers.extend(NB201Cell(self.ops, channels, activation) for _ in range(N))
        layers += [nn.BatchNorm2d(channels), activation_layer(activation)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def build_nb201(arch: str | Sequence[str], *, C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3,
                activation: str = "relu", device: torch.device | str | None = None) -> NB201Network:
    """Build the NB201 network for ``arch``; defaults are NB201's CIFAR-10 configuration (C=16, N=5,
    ReLU)."""
    with torch.device(device) if device is not None else nullcontext():
        return NB201Network(arch, C=C, N=N, num_classes=num_classes, in_channels=in_channels, activation=activation)


def nb201_param_count(arch: str | Sequence[str], *, C: int = 16, N: int = 5, num_classes: int = 10,
                      in_channels: int = 3) -> int:
    """Trainable parameters of ``build_nb201(arch, ...)``, computed without building it."""
    ops = parse_arch(arch)
    per_channel_cell = {"nor_conv_1x1": 1, "nor_conv_3x3": 9}  # conv weights are k*k*c*c
    total = 9 * in_channels * C + 2 * C  # stem conv + BN
    channels = C
    for stage in range(3):
        if stage > 0:
            wide = 2 * channels
            total += 9 * channels * wide + 2 * wide + 9 * wide * wide + 2 * wide + channels * wide
            channels = wide
        total += N * sum(per_channel_cell[op] * channels * channels + 2 * channels for op in ops if op in per_channel_cell)
    return total + 2 * channels + channels * num_classes + num_classes
