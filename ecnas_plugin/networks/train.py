"""Small, deterministic training loop and the data it runs on (Flowers-17, synthetic CIFAR-10).

The loop calls ``on_epoch_start(epoch)`` and ``on_epoch_end(epoch, stats)`` so an energy meter can
open and close one measurement window per epoch; the window covers that epoch's training steps
and its evaluation (``stats`` gives the two times separately).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ecnas_plugin.errors import DataFormatError, UnknownName

FLOWERS17_CLASSES = 17
FLOWERS17_SHAPE = (16, 16, 3)
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "exponential", "linear")
EXPONENTIAL_FINAL = 0.01  # the exponential schedule ends at 1% of the initial learning rate


@dataclass(frozen=True)
class Split:
    """Images ``x`` (N x C x H x W, float32) and integer labels ``y`` (N, int64)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise ValueError(f"Split needs x of N x C x H x W and y of N, got {tuple(self.x.shape)} and {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return len(self.y)


class Flowers17(NamedTuple):
    """The three Flowers-17 splits (680 / 340 / 340 images of 3 x 16 x 16, 17 classes)."""

    train: Split
    val: Split
    test: Split


def load_flowers17(root: Path | str | None = None, *, mirror: Path | None = None, download: bool = True) -> Flowers17:
    """Read ``x_{train,val,test}.npy`` (N x 16 x 16 x 3, values in [0, 1]) and one-hot ``y_*.npy``.

    ``root``: a folder holding the six files, read as they are. Without it, each file comes
    through the data registry (``flowers17_x_train.npy`` ...): the offline mirror (``mirror`` or
    ``$ECNAS_DATA_MIRROR``), the user cache, or a download, sha256-checked in every case.
    Returns NCHW float32 images and int64 labels. Raises FileNotFoundError for a missing file in
    ``root``, DataUnavailable when the registry cannot supply one, and DataFormatError for a file
    of the wrong shape, range or encoding.
    """
    names = [f"{kind}_{split}.npy" for split in Flowers17._fields for kind in ("x", "y")]
    if root is not None:
        paths = {n: Path(root) / n for n in names}
        for path in paths.values():
            if not path.is_file():
                raise FileNotFoundError(f"Flowers-17 file missing: {path}")
    else:
        from ecnas_plugin import datasets
        from ecnas_plugin.registry import get_registry

        registry = get_registry()
        paths = {n: datasets.resolve(registry.data_file(f"flowers17_{n}"), mirror=mirror, download=download)
                 for n in names}
    splits = {}
    for name in Flowers17._fields:
        x_path, y_path = paths[f"x_{name}.npy"], paths[f"y_{name}.npy"]
        x = np.load(x_path, allow_pickle=False)
        y = np.load(y_path, allow_pickle=False)
        if x.ndim != 4 or x.shape[1:] != FLOWERS17_SHAPE:
            raise DataFormatError(x_path, None, f"expected N x 16 x 16 x 3 images, got shape {x.shape}")
        if not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
            raise DataFormatError(x_path, None, "pixel values must be finite and within [0, 1]")
        if y.shape != (len(x), FLOWERS17_CLASSES):
            raise DataFormatError(y_path, None, f"expected labels of shape ({len(x)}, 17), got {y.shape}")
        if not np.isin(y, (0, 1)).all() or not (y.sum(axis=1) == 1).all():
            raise DataFormatError(y_path, None, "labels are not one-hot (each row needs exactly one 1)")
        images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
        splits[name] = Split(images, torch.from_numpy(y.argmax(axis=1).astype(np.int64)))
    return Flowers17(**splits)


def synthetic_cifar10(num_samples: int, seed: int = 0) -> Split:
    """Random CIFAR-10-shaped data (3 x 32 x 32 standard-normal images, labels uniform over 10).

    For energy-only runs: the compute per step equals real CIFAR-10's, but the data carry no
    signal, so any accuracy measured on them is meaningless and must not be reported.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    gen = torch.Generator().manual_seed(seed)
    return Split(torch.randn(num_samples, 3, 32, 32, generator=gen), torch.randint(0, 10, (num_samples,), generator=gen))


@dataclass(frozen=True)
class EpochStats:
    """What one epoch did. Accuracies are fractions; ``train_acc`` is the running accuracy of the
    epoch's training batches (train mode), ``val_acc``/``test_acc`` are eval-mode, None without data."""

    epoch: int
    train_loss: float  # mean over the steps taken (skipped non-finite steps excluded)
    train_acc: float
    val_acc: float | None
    test_acc: float | None
    lr: float
    train_time_s: float
    eval_time_s: float
    wall_time_s: float
    skipped_steps: int = 0  # steps whose loss was not finite, skipped (only with skip_nonfinite)

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def evaluate(model: nn.Module, data: Split, batch_size: int = 256) -> float:
    """Eval-mode accuracy (fraction) of ``model`` on ``data``."""
    device = _device_of(model)
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x = data.x[start:start + batch_size].to(device)
            y = data.y[start:start + batch_size].to(device)
            correct += int((model(x).argmax(dim=1) == y).sum())
    model.train(was_training)
    return correct / len(data)


def resize(data: Split, resolution: int) -> Split:
    """``data`` with images resampled to ``resolution`` x ``resolution`` (bilinear, antialiased
    when shrinking): the input-resolution fidelity. The same size returns ``data`` itself."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be an integer >= 1, got {resolution!r}")
    if tuple(data.x.shape[2:]) == (resolution, resolution):
        return data
    x = nn.functional.interpolate(data.x, size=(resolution, resolution), mode="bilinear",
                                  antialias=resolution < data.x.shape[2], align_corners=False)
    return Split(x.contiguous(), data.y)


def augment_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding of 1/8 of the side, as CIFAR's 4 px at 32) and horizontal flip,
    written with torch ops (no torchvision); ``gen`` makes it reproducible."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)  # n x h
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)  # n x w
    batch = torch.arange(n, device=x.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], cropped.flip(3), cropped).contiguous()


def learning_rate(schedule: str, lr: float, step: int, total_steps: int) -> float:
    """The learning rate at ``step`` of ``total_steps`` under ``schedule`` (per-step decay from
    ``lr``): cosine to 0, linear to 0, exponential to EXPONENTIAL_FINAL * lr."""
    t = step / total_steps
    if schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * t))
    if schedule == "linear":
        return lr * (1 - t)
    if schedule == "exponential":
        return lr * EXPONENTIAL_FINAL ** t
    raise UnknownName("schedule", schedule, SCHEDULES)


def make_optimizer(name: str, params, *, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """``sgd``: NAS-Bench-201's recipe (Nesterov momentum, L2 weight decay); ``adam``: Adam with L2
    weight decay; ``adamw``: Adam with decoupled weight decay."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise UnknownName("optimizer", name, OPTIMIZERS)


def train(model: nn.Module, train_data: Split, val_data: Split | None = None, test_data: Split | None = None, *,
          epochs: int, batch_size: int = 64, lr: float = 0.1, optimizer: str = "sgd", momentum: float = 0.9,
          weight_decay: float = 5e-4, schedule: str = "cosine", augment: bool = False,
          grad_clip: float | None = None, skip_nonfinite: bool = False, seed: int = 0,
          window: tuple[int, int] | None = None,
          on_epoch_start: Callable[[int], None] | None = None,
          on_epoch_end: Callable[[int, EpochStats], None] | None = None,
          on_window_start: Callable[[int], None] | None = None,
          on_window_end: Callable[[int], None] | None = None) -> list[EpochStats]:
    """Train ``model`` in place with cross-entropy; return one EpochStats per epoch (epochs from 1).

    ``optimizer``: see :func:`make_optimizer`; the learning rate follows ``schedule`` per step
    (:func:`learning_rate`). ``augment``: random crop + flip of every training batch.
    ``grad_clip``: clip the gradient norm (DARTS/NB201 use 5). ``skip_nonfinite``: a step whose
    loss is not finite is skipped and counted (``EpochStats.skipped_steps``) instead of ending
    the run: an aggressive hyperparameter setting is a result to record, not a crash; an epoch
    in which every step was skipped still raises FloatingPointError.

    ``window=(warmup, steps)``: each epoch runs only ``warmup + steps`` training steps, calling
    ``on_window_start(epoch)`` after the warmup and ``on_window_end(epoch)`` after the steps, so a
    meter can read a steady-state window to scale to the whole epoch. Such an epoch trains a part
    of the data only: it measures cost, and its accuracies must not be reported.

    ``seed`` fixes the batch order, the augmentation and all other randomness inside training;
    seed the model's initialisation yourself (``torch.manual_seed`` before building). With the
    same seed, model initialisation and thread count, two CPU runs give identical statistics.
    Training runs on the model's device; batches are moved there.
    """
    if optimizer not in OPTIMIZERS:
        raise UnknownName("optimizer", optimizer, OPTIMIZERS)
    if schedule not in SCHEDULES:
        raise UnknownName("schedule", schedule, SCHEDULES)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    steps_per_epoch = math.ceil(len(train_data) / batch_size)
    if window is not None:
        warmup, window_steps = window
        if warmup < 0 or window_steps < 1 or warmup + window_steps > steps_per_epoch:
            raise ValueError(f"window (warmup {warmup}, steps {window_steps}) must fit in an epoch of "
                             f"{steps_per_epoch} steps (batch size {batch_size}, {len(train_data)} samples)")
        steps_per_epoch = warmup + window_steps
    device = _device_of(model)
    torch.manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    augment_gen = torch.Generator().manual_seed(seed + 1)
    opt = make_optimizer(optimizer, model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    total_steps = epochs * steps_per_epoch
    loss_fn = nn.CrossEntropyLoss()
    history = []
    step = 0
    for epoch in range(1, epochs + 1):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_data), generator=order_gen)
        loss_sum, correct, seen, skipped = 0.0, 0, 0, 0
        for index in range(steps_per_epoch):
            if window is not None and index == window[0] and on_window_start is not None:
                on_window_start(epoch)
            idx = order[index * batch_size:(index + 1) * batch_size]
            x, y = train_data.x[idx].to(device), train_data.y[idx].to(device)
            if augment:
                x = augment_batch(x, augment_gen)
            step_lr = learning_rate(schedule, lr, step, total_steps)
            for group in opt.param_groups:
                group["lr"] = step_lr
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            step += 1
            if skip_nonfinite and not torch.isfinite(loss):
                skipped += 1
                continue
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
            correct += int((logits.detach().argmax(dim=1) == y).sum())
        if window is not None and on_window_end is not None:
            on_window_end(epoch)
        trained = time.perf_counter()
        if seen == 0:
            raise FloatingPointError(f"training diverged at epoch {epoch}: the loss of every step was not finite")
        val_acc = evaluate(model, val_data) if val_data is not None else None
        test_acc = evaluate(model, test_data) if test_data is not None else None
        done = time.perf_counter()
        stats = EpochStats(epoch=epoch, train_loss=loss_sum / seen, train_acc=correct / seen,
                           val_acc=val_acc, test_acc=test_acc, lr=step_lr, train_time_s=trained - started,
                           eval_time_s=done - trained, wall_time_s=done - started, skipped_steps=skipped)
        if not math.isfinite(stats.train_loss):
            raise FloatingPointError(f"training diverged at epoch {epoch}: loss {stats.train_loss}")
        history.append(stats)
        if on_epoch_end is not None:
            on_epoch_end(epoch, stats)
    return history


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
