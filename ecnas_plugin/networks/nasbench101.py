"""NAS-Bench-101 network in PyTorch, built to the layout of NAS-Bench-101's CIFAR-10 model.

Layout (Ying et al. 2019, ``nasbench/lib/model_builder.py``): stem conv3x3-BN-ReLU; ``num_stacks``
stacks of ``cells_per_stack`` cells; a 2x2 max-pool and channel doubling before every stack but
the first; global average pool; dense layer. Inside a cell, vertex channels follow NB101's
``compute_vertex_channels``: the cell's output channels are split among the vertices feeding the
output (concatenated), earlier vertices take the max of their successors, tensors flowing between
interior vertices are truncated to the receiver's channels, and tensors from the cell input are
always 1x1-projected (conv-BN-ReLU). Convolutions have no bias; BN has scale and shift.

A cell is anything with ``.matrix`` and ``.ops`` (e.g. the codec's ``Cell``) or a
``(matrix, ops)`` pair; the matrix must already be pruned (every vertex on an input-output path).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from ecnas_plugin.adapters.nasbench101 import CONV1X1, CONV3X3, MAXPOOL3X3, as_cell
from ecnas_plugin.errors import InvalidArchitecture

_KERNEL = {CONV3X3: 3, CONV1X1: 1}

# NB101 used TF batch norm with momentum 0.997 (moving = 0.997 * moving + 0.003 * batch).
NB101_BN_MOMENTUM = 0.003
NB101_BN_EPS = 1e-5


def cell_spec(cell: object) -> tuple[np.ndarray, list[str]]:
    """Return ``(matrix, ops)`` of a cell given as a codec ``Cell``, an object with
    ``.matrix``/``.ops`` or a pair. The codec checks every NB101 rule; the builder also needs the
    cell pruned, as NB101 prunes before building."""
    cell = as_cell(cell)
    if cell.pruned() != cell:
        raise InvalidArchitecture("not-pruned", "some vertices are not on an input-output path; prune first", cell)
    return cell.as_numpy(), list(cell.ops)


def compute_vertex_channels(in_channels: int, out_channels: int, matrix: np.ndarray) -> list[int]:
    """Channels of every vertex of a cell, computed as NAS-Bench-101 does.

    The output channels are split evenly among the interior vertices that feed the output (the
    first ``out % k`` of them get one extra); every other interior vertex takes the max of the
    vertices it feeds. Vertex 0 has ``in_channels``, the output vertex ``out_channels``.
    """
    n = matrix.shape[0]
    channels = [0] * n
    channels[0], channels[n - 1] = in_channels, out_channels
    if n == 2:
        return channels
    fan_in = int(matrix[1:, n - 1].sum())
    base, extra = divmod(out_channels, fan_in)
    for v in range(1, n - 1):
        if matrix[v, n - 1]:
            channels[v] = base + (1 if extra > 0 else 0)
            extra -= 1 if extra > 0 else 0
    for v in range(n - 3, 0, -1):
        if not matrix[v, n - 1]:
            for dst in range(v + 1, n - 1):
                if matrix[v, dst]:
                    channels[v] = max(channels[v], channels[dst])
    if any(c <= 0 for c in channels[1:-1]):
        raise InvalidArchitecture(
            "too-few-channels", f"{out_channels} output channels cannot be split among {fan_in} vertices", matrix.tolist()
        )
    return channels


class ConvBnRelu(nn.Sequential):
    """Conv (no bias, 'same' padding) then batch norm then ReLU, as NB101's ``conv_bn_relu``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bn_momentum: float):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, eps=NB101_BN_EPS, momentum=bn_momentum),
            nn.ReLU(),
        )


def _vertex_op(op: str, channels: int, bn_momentum: float) -> nn.Module:
    if op == MAXPOOL3X3:
        return nn.MaxPool2d(3, stride=1, padding=1)
    return ConvBnRelu(channels, channels, _KERNEL[op], bn_momentum)


class NB101Cell(nn.Module):
    """One NB101 module (cell): sums into interior vertices, concatenation into the output."""

    def __init__(self, matrix: np.ndarray, ops: Sequence[str], in_channels: int, out_channels: int,
                 bn_momentum: float = NB101_BN_MOMENTUM):
        super().__init__()
        self.matrix = matrix
        self.channels = compute_vertex_channels(in_channels, out_channels, matrix)
        n = matrix.shape[0]
        self.num_vertices = n
        # Input tensors are always projected to the receiving vertex's channels.
        self.projections = nn.ModuleDict(
            {str(t): ConvBnRelu(in_channels, self.channels[t], 1, bn_momentum) for t in range(1, n) if matrix[0, t]}
        )
        self.vertex_ops = nn.ModuleDict(
            {str(t): _vertex_op(ops[t], self.channels[t], bn_momentum) for t in range(1, n - 1)}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, m = self.num_vertices, self.matrix
        values: list[torch.Tensor] = [x]
        to_output = []
        for t in range(1, n - 1):
            width = self.channels[t]
            # Channel counts never increase along edges; slicing drops the odd extra channel.
            inputs = [values[s][:, :width] for s in range(1, t) if m[s, t]]
            if m[0, t]:
                inputs.append(self.projections[str(t)](x))
            summed = sum(inputs[1:], inputs[0])
            values.append(self.vertex_ops[str(t)](summed))
            if m[t, n - 1]:
                to_output.append(values[t])
        if not to_output:
            return self.projections[str(n - 1)](x)
        out = to_output[0] if len(to_output) == 1 else torch.cat(to_output, dim=1)
        if m[0, n - 1]:
            out = out + self.projections[str(n - 1)](x)
        return out


class NB101Network(nn.Module):
    """The NAS-Bench-101 CIFAR network for one cell; see the module docstring for the layout."""

    def __init__(self, cell: object, *, stem_channels: int = 128, num_stacks: int = 3, cells_per_stack: int = 3,
                 num_classes: int = 10, in_channels: int = 3, bn_momentum: float = NB101_BN_MOMENTUM):
        super().__init__()
        matrix, ops = cell_spec(cell)
        self.matrix, self.ops = matrix, ops
        layers: list[nn.Module] = [ConvBnRelu(in_channels, stem_channels, 3, bn_momentum)]
        channels = stem_channels
        for stack in range(num_stacks):
            c_in = channels
            if stack > 0:
                # TF 'same' 2x2/2 pooling equals ceil-mode pooling on odd sizes.
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
                channels *= 2
            for _ in range(cells_per_stack):
                layers.append(NB101Cell(matrix, ops, c_in, channels, bn_momentum))
                c_in = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def build_nb101(cell: object, *, stem_channels: int = 128, num_stacks: int = 3, cells_per_stack: int = 3,
                num_classes: int = 10, in_channels: int = 3, bn_momentum: float = NB101_BN_MOMENTUM,
                device: torch.device | str | None = None) -> NB101Network:
    """Build the NB101 network for ``cell``; defaults are NB101's CIFAR-10 configuration.

    ``bn_momentum`` uses PyTorch's convention (NB101: 0.003); raise it (e.g. 0.1) for runs of a few
    hundred steps so eval-mode statistics settle. ``device="meta"`` builds without memory, for
    counting parameters.
    """
    with torch.device(device) if device is not None else nullcontext():
        return NB101Network(cell, stem_channels=stem_channels, num_stacks=num_stacks, cells_per_stack=cells_per_stack,
                            num_classes=num_classes, in_channels=in_channels, bn_momentum=bn_momentum)


def nb101_param_count(cell: object, *, stem_channels: int = 128, num_stacks: int = 3, cells_per_stack: int = 3,
                      num_classes: int = 10, in_channels: int = 3) -> int:
    """Trainable parameters of ``build_nb101(cell, ...)``, computed without building it."""
    matrix, ops = cell_spec(cell)
    n = matrix.shape[0]

    def conv_bn(c_in: int, c_out: int, k: int) -> int:
        return k * k * c_in * c_out + 2 * c_out

    def cell_params(c_in: int, c_out: int) -> int:
        ch = compute_vertex_channels(c_in, c_out, matrix)
        total = sum(conv_bn(c_in, ch[t], 1) for t in range(1, n) if matrix[0, t])
        return total + sum(conv_bn(ch[t], ch[t], _KERNEL[ops[t]]) for t in range(1, n - 1) if ops[t] in _KERNEL)

    total = conv_bn(in_channels, stem_channels, 3)
    channels = stem_channels
    for stack in range(num_stacks):
        c_in = channels
        if stack > 0:
            channels *= 2
        for _ in range(cells_per_stack):
            total += cell_params(c_in, channels)
            c_in = channels
    return total + channels * num_classes + num_classes

