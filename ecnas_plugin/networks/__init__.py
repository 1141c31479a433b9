"""PyTorch builders for NAS-Bench-101 and NAS-Bench-201 networks, model size counts, and training.

FLOPs here are multiply-accumulates (MACs) as NAS-Bench-201's counter counts them; the
``"naslib"`` convention of ``count_flops`` also counts BN/ReLU element ops like NASLib's zc "flops".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ecnas_plugin.errors import UnknownName
from ecnas_plugin.networks.nasbench101 import NB101Network, build_nb101, compute_vertex_channels, nb101_param_count
from ecnas_plugin.networks.nasbench201 import NB201_OPS, NB201Network, build_nb201, nb201_param_count, parse_arch
from ecnas_plugin.networks.train import EpochStats, Flowers17, Split, evaluate, load_flowers17, synthetic_cifar10, train

__all__ = [
    "NB101Network", "NB201Network", "NB201_OPS", "build_nb101", "build_nb201", "compute_vertex_channels",
    "FLOP_CONVENTIONS", "count_flops", "count_params", "nb101_param_count", "nb201_param_count", "parse_arch",
    "EpochStats", "Flowers17", "Split", "evaluate", "load_flowers17", "synthetic_cifar10", "train",
]


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (``requires_grad``) of ``model``; works on meta-device models."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


FLOP_CONVENTIONS = ("macs", "naslib")


def count_flops(model: nn.Module, input_shape: Sequence[int], *, convention: str = "macs") -> int:
    """Multiply-accumulates (MACs) of one forward pass on an input of ``input_shape``.

    ``input_shape`` is ``(C, H, W)`` (one image) or ``(N, C, H, W)`` (a batch: total for it).
    ``convention="macs"`` counts as NAS-Bench-201's counter (xautodl) does: Conv2d
    ``k*k*C_in/groups*C_out`` per output position (plus one per output element for a bias),
    Linear ``in*out`` (bias not counted), AvgPool2d/MaxPool2d ``k*k`` per output element; BatchNorm,
    ReLU, element-wise sums and the global average pool are free. Twice the conv+linear part
    equals what ``torch.utils.flop_counter.FlopCounterMode`` reports.
    ``convention="naslib"`` adds what the tensorwatch counter behind NASLib's zc "flops" adds: 2 per
    BatchNorm input element and 1 per ReLU input element. It reproduces NASLib's NB101 values
    exactly; for NB201 NASLib also counts its global pooling module (64*(H+1)^2, 5184 on CIFAR),
    which is not modelled here.
    The model runs once under ``torch.no_grad`` in eval mode on zeros, on its own device.
    """
    if convention not in FLOP_CONVENTIONS:
        raise UnknownName("FLOP convention", convention, FLOP_CONVENTIONS)
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

    def elementwise_hook(per_element: int):
        def hook(_module: nn.Module, inputs: tuple, _out: torch.Tensor) -> None:
            nonlocal total
            total += per_element * inputs[0].numel()
        return hook

    hooks = {nn.Conv2d: conv_hook, nn.Linear: linear_hook, nn.AvgPool2d: pool_hook, nn.MaxPool2d: pool_hook}
    if convention == "naslib":
        hooks.update({nn.BatchNorm2d: elementwise_hook(2), nn.ReLU: elementwise_hook(1)})
    handles = []
    for module in model.modules():
        for kind, hook in hooks.items():
            if isinstance(module, kind):
                handles.append(module.register_forward_hook(hook))
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
