"""PyTorch builders for NAS-Bench-101 and NAS-Bench-201 networks, model size counts, and training.

``count_flops`` follows the convention of NAS-Bench-201's FLOP counter (xautodl), which NASLib's
``zc_nasbench*.json`` "flops" also use (in millions): multiply-accumulates (MACs), not 2x.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ecnas_plugin.networks.nasbench101 import NB101Network, build_nb101, compute_vertex_channels, nb101_param_count
from ecnas_plugin.networks.nasbench201 import NB201_OPS, NB201Network, build_nb201, parse_arch

__all__ = [
    "NB101Network", "NB201Network", "NB201_OPS", "build_nb101", "build_nb201", "compute_vertex_channels",
    "count_flops", "count_params", "nb101_param_count", "parse_arch",
]


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (``requires_grad``) of ``model``; works on meta-device models."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, input_shape: Sequence[int], *, include_pooling: bool = True) -> int:
    """Multiply-accumulates (MACs) of one forward pass on an input of ``input_shape``.

    ``input_shape`` is ``(C, H, W)`` (one image) or ``(N, C, H, W)`` (a batch: total for it).
    Counted as NAS-Bench-201's counter does: Conv2d ``k*k*C_in/groups*C_out`` per output position
    (plus one per output element for a bias), Linear ``in*out`` (bias not counted), and, unless
    ``include_pooling`` is false, ``k*k`` per output element of AvgPool2d/MaxPool2d layers.
    BatchNorm, ReLU, element-wise sums and the global average pool are not counted.
    Twice the conv+linear part equals what ``torch.utils.flop_counter.FlopCounterMode`` reports.
    The model runs once under ``torch.no_grad`` on zeros on its own device ("meta" is fastest).
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}")
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        positions = out.shape[0] * out.shape[2] * out.shape[3]
        total += positions * kh * kw * (module.in_channels // module.groups) * module.out_channels
        if module.bias is not None:
            total += out.numel()

    def linear_hook(module: nn.Linear, inputs: tuple, _out: torch.Tensor) -> None:
        nonlocal total
        rows = inputs[0].numel() // module.in_features
        total += rows * module.in_features * module.out_features

    def pool_hook(module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size
        kh, kw = (k, k) if isinstance(k, int) else k
        total += out.numel() * kh * kw

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
        elif include_pooling and isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
            handles.append(module.register_forward_hook(pool_hook))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total
