"""A search space of its own: plain convolutional networks for 16 x 16 x 3 images (Flowers-17).

This module is the whole space, written only against the public contract in
``ecnas_plugin/adapters/base.py`` and registered through its own entry point::

    [project.entry-points.ecnas_plugin]
    example_convnet = "ecnas_example_tables.convnet"

An architecture is ``depth`` convolution blocks (1, 2 or 3) of ``width`` channels (8, 16 or 32)
with square ``kernel``\\ s (3 or 5); each block is conv (same padding, no bias) -> batch norm ->
ReLU -> 2 x 2 max pool, and a global average pool and a linear layer make the head. 18
architectures in all. The canonical key is ``d<depth>-w<width>-k<kernel>``, e.g. ``d2-w16-k3``;
``describe`` gives the key itself, since it rebuilds the network. Neighbours change one of the
three by one step of its ordered choices. Features are analytic (no torch): parameters and
multiply-accumulates of the Flowers-17 network (exactly what ``count_params`` / ``count_flops``
count), then depth, width and kernel. There is no NASLib counterpart (``naslib = None``), so the
NASLib bridge refuses this space by name.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from ecnas_plugin.adapters.base import ARCHITECTURE, EPOCHS, Dimension, SearchSpace
from ecnas_plugin.errors import InvalidArchitecture
from ecnas_plugin.hookspecs import hookimpl

SPACE_NAME = "example-convnet"
DEPTHS = (1, 2, 3)
WIDTHS = (8, 16, 32)
KERNELS = (3, 5)
CHOICES = {"depth": DEPTHS, "width": WIDTHS, "kernel": KERNELS}
# The inputs features() describes: Flowers-17 as ecnas_plugin.networks.load_flowers17 gives it.
INPUT_SHAPE = (3, 16, 16)
NUM_CLASSES = 17
FEATURE_NAMES = ["params", "flops", "depth", "width", "kernel"]

_KEY = re.compile(r"^d(\d+)-w(\d+)-k(\d+)$")


class ConvNetArch(NamedTuple):
    """One architecture of the space (validated by :meth:`ConvNetSpace.canonical_key`)."""

    depth: int
    width: int
    kernel: int

    @property
    def key(self) -> str:
        return f"d{self.depth}-w{self.width}-k{self.kernel}"


def _checked(values: Sequence[object], given: object) -> ConvNetArch:
    """``values`` (depth, width, kernel) as a ConvNetArch; rule ``bad-<dimension>`` for a bad one."""
    out = []
    for (name, choices), value in zip(CHOICES.items(), values):
        if isinstance(value, bool):
            raise InvalidArchitecture(f"bad-{name}", f"{name} must be an integer, got {value!r}", given)
        try:
            number = operator.index(value)  # ints and numpy integers; 2.0 and "2" are refused
        except TypeError:
            raise InvalidArchitecture(f"bad-{name}", f"{name} must be an integer, got {value!r}", given) from None
        if number not in choices:
            raise InvalidArchitecture(f"bad-{name}", f"{name} {number} is not one of {list(choices)}", given)
        out.append(number)
    return ConvNetArch(*out)


def parse_key(text: str) -> ConvNetArch:
    """``d<depth>-w<width>-k<kernel>`` (any case, surrounding blanks ignored) as a ConvNetArch.

    Rules: ``syntax`` (not of that form), ``bad-depth`` / ``bad-width`` / ``bad-kernel`` (a value
    outside the space's choices, which the message lists).
    """
    if not isinstance(text, str):
        raise InvalidArchitecture("syntax", f"expected a key d<depth>-w<width>-k<kernel>, got {type(text).__name__}",
                                  text)
    match = _KEY.match(text.strip().lower())
    if not match:
        raise InvalidArchitecture("syntax", "expected d<depth>-w<width>-k<kernel>, e.g. d2-w16-k3", text)
    return _checked([int(g) for g in match.groups()], text)


def param_count(arch: ConvNetArch, num_classes: int = NUM_CLASSES, in_channels: int = INPUT_SHAPE[0]) -> int:
    """Trainable parameters of :func:`build` (convs without bias, BN affine, linear head with bias)."""
    total, c_in = 0, in_channels
    for _ in range(arch.depth):
        total += arch.kernel * arch.kernel * c_in * arch.width + 2 * arch.width
        c_in = arch.width
    return total + arch.width * num_classes + num_classes


def mac_count(arch: ConvNetArch, num_classes: int = NUM_CLASSES, input_shape: Sequence[int] = INPUT_SHAPE) -> int:
    """Multiply-accumulates of one forward pass, counted as ``ecnas_plugin.networks.count_flops``
    counts them: conv ``k*k*C_in*C_out`` per output position, max pool ``2*2`` per output element,
    linear ``in*out``; batch norm, ReLU and the global pool are free."""
    c_in, h, w = (int(s) for s in input_shape)
    total = 0
    for _ in range(arch.depth):
        total += h * w * arch.kernel * arch.kernel * c_in * arch.width
        h, w = h // 2, w // 2
        total += h * w * arch.width * 4
        c_in = arch.width
    return total + arch.width * num_classes


def build(arch: ConvNetArch, num_classes: int = NUM_CLASSES, in_channels: int = INPUT_SHAPE[0]):
    """The torch network of ``arch`` (imports torch only here)."""
    from torch import nn

    layers: list[nn.Module] = []
    c_in = in_channels
    for _ in range(arch.depth):
        layers += [nn.Conv2d(c_in, arch.width, arch.kernel, padding=arch.kernel // 2, bias=False),
                   nn.BatchNorm2d(arch.width), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c_in = arch.width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(arch.width, num_classes)]
    return nn.Sequential(*layers)


class ConvNetSpace(SearchSpace):
    """Plain conv nets: depth x width x kernel, keyed ``d<depth>-w<width>-k<kernel>``."""

    name = SPACE_NAME
    key_description = "d<depth>-w<width>-k<kernel>, e.g. d2-w16-k3 (depth 1-3, width 8/16/32, kernel 3/5)"
    dimensions = (
        Dimension(ARCHITECTURE, "architecture", "architecture",
                  description=f"depth {list(DEPTHS)} conv blocks x width {list(WIDTHS)} channels x "
                              f"kernel {list(KERNELS)}"),
        EPOCHS,
    )
    # No builder settings beyond the architecture; naslib stays None (no NASLib counterpart).
    # The version of features(): a saved surrogate records it and refuses another one.
    feature_set = "example-convnet-1"

    # ------------------------------------------------------------------ codec
    def canonical_key(self, arch: object) -> str:
        """Key of a ConvNetArch, a ``(depth, width, kernel)`` sequence, a mapping with those
        three names, or a key string; raises InvalidArchitecture naming the rule broken."""
        return self._arch(arch).key

    def parse_arch(self, text: str) -> ConvNetArch:
        """A key ``d2-w16-k3`` or three comma-separated integers ``2,16,3`` (depth, width, kernel)."""
        if not isinstance(text, str):
            raise InvalidArchitecture("syntax", f"expected text, got {type(text).__name__}", text)
        s = text.strip()
        if "," in s:
            parts = [p.strip() for p in s.strip("()[]").split(",")]
            if len(parts) != 3 or not all(re.fullmatch(r"\d+", p) for p in parts):
                raise InvalidArchitecture("syntax", "expected three comma-separated integers depth,width,kernel",
                                          text)
            return _checked([int(p) for p in parts], text)
        return parse_key(s)

    def arch(self, value: object) -> ConvNetArch:
        return self._arch(value)

    def _arch(self, arch: object) -> ConvNetArch:
        if isinstance(arch, str):
            return self.parse_arch(arch)
        if isinstance(arch, Mapping):
            missing = [n for n in CHOICES if n not in arch]
            extra = sorted(set(arch) - set(CHOICES), key=str)
            if missing or extra:
                raise InvalidArchitecture("bad-key", f"a mapping needs exactly the keys {list(CHOICES)}"
                                          + (f"; missing {missing}" if missing else "")
                                          + (f"; unknown {extra}" if extra else ""), arch)
            return _checked([arch[n] for n in CHOICES], arch)
        if hasattr(arch, "__array__") and getattr(arch, "ndim", None) == 1:
            arch = arch.tolist()  # a numpy row (depth, width, kernel)
        if isinstance(arch, Sequence) and not isinstance(arch, (bytes, bytearray)):
            if len(arch) != 3:
                raise InvalidArchitecture("bad-key", f"a sequence needs 3 values (depth, width, kernel), "
                                                     f"got {len(arch)}", arch)
            return _checked(list(arch), arch)
        raise InvalidArchitecture("bad-key", "expected a key d<depth>-w<width>-k<kernel>, (depth, width, kernel) "
                                             "or a mapping with those names", arch)

    # ------------------------------------------------------------------ moves
    def enumerate(self) -> Iterator[ConvNetArch]:
        """All 18 architectures, depth slowest, kernel fastest."""
        return (ConvNetArch(d, w, k) for d in DEPTHS for w in WIDTHS for k in KERNELS)

    def neighbours(self, arch: object, subset: Collection[str] | None = None) -> list[ConvNetArch]:
        """The architectures with one of depth, width, kernel moved one step along its choices
        (2 to 4 of them), restricted to the canonical keys in ``subset`` when given."""
        a = self._arch(arch)
        out = []
        for position, (name, choices) in enumerate(CHOICES.items()):
            i = choices.index(a[position])
            for j in (i - 1, i + 1):
                if 0 <= j < len(choices):
                    b = a._replace(**{name: choices[j]})
                    if subset is None or b.key in subset:
                        out.append(b)
        return out

    def stratum(self, arch: object) -> tuple:
        """(depth, width, kernel): cost grows with each, so a sorted systematic sample spreads over
        every depth and width."""
        return tuple(self._arch(arch))

    # ------------------------------------------------------------------ network and features
    def build_network(self, arch: object, num_classes: int, **settings: int):
        if settings:
            from ecnas_plugin.errors import UnknownName

            raise UnknownName(f"{self.name} network setting", sorted(settings)[0], self.network_defaults)
        return build(self._arch(arch), num_classes=num_classes)

    def features(self, archs: Sequence[object]) -> tuple[Any, list[str]]:
        """params, flops (MACs) of the Flowers-17 network (17 classes, 16 x 16 x 3), depth, width, kernel."""
        import numpy as np

        rows = []
        for value in archs:
            a = self._arch(value)
            rows.append([param_count(a), mac_count(a), a.depth, a.width, a.kernel])
        return np.asarray(rows, dtype=float).reshape(len(rows), len(FEATURE_NAMES)), list(FEATURE_NAMES)


@hookimpl
def ecnas_search_spaces():
    return [ConvNetSpace()]
