"""Network builders against real published counts, FLOP conventions, data loading and real training.

Reference counts: EC-NAS 7-vertex data (trainable parameters of 4,310 NB101 cells) and NASLib's
zero-cost files (params / flops of 500 NB101 cells and 725 NB201 cells per dataset).
"""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ecnas_plugin.errors import DataFormatError, InvalidArchitecture, UnknownName
from ecnas_plugin.networks import (
    build_nb101,
    build_nb201,
    compute_vertex_channels,
    count_flops,
    count_params,
    nb101_param_count,
    nb201_param_count,
    parse_arch,
)
from ecnas_plugin.networks.train import EpochStats, evaluate, load_flowers17, synthetic_cifar10, train

# Op codes of 7v_data.pt (0 = padding vertex).
EC7V_OPS = {1: "input", 2: "conv1x1-bn-relu", 3: "conv3x3-bn-relu", 4: "maxpool3x3", 5: "output"}
# NASLib's NB101 tuple op codes (naslib/search_spaces/nasbench101/conversions.py).
NASLIB_NB101_OPS = ["input", "output", "maxpool3x3", "conv1x1-bn-relu", "conv3x3-bn-relu"]
# NASLib's NB201 op order and edge order (1,2),(1,3),(1,4),(2,3),(2,4),(3,4) (nodes from 1);
# arch-string order is 0->1, 0->2, 1->2, 0->3, 1->3, 2->3, i.e. NASLib positions 0, 1, 3, 2, 4, 5.
NASLIB_NB201_OPS = ["skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3"]
NASLIB_TO_ARCH_ORDER = (0, 1, 3, 2, 4, 5)
NB201_DATASETS = {"cifar10": (10, 32), "cifar100": (100, 32), "ImageNet16-120": (120, 16)}

SMALL_NB101_CELL = (
    np.array([[0, 1, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]),
    ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "output"],
)
SMALL_NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


@pytest.fixture(autouse=True)
def one_thread():
    """Run on 1 thread: faster on the shared 2-core machine, and a fixed thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ec7v(shared_data):
    adjacency, ops, _energy, params = torch.load(shared_data / "ecnas-7v" / "7v_data.pt", weights_only=True)
    cells = []
    for adj, codes in zip(adjacency.numpy(), ops.numpy()):
        n = int((codes > 0).sum())  # padding vertices sit at the end
        cells.append((adj[:n, :n], [EC7V_OPS[int(c)] for c in codes[:n]]))
    return cells, params.tolist()


def _prune(matrix: np.ndarray, ops: list[str]) -> tuple[np.ndarray, list[str]]:
    """Drop vertices off every input-output path (NASLib's tuples hold unpruned 7-vertex specs)."""
    n = len(ops)
    reach = {0}
    for v in range(1, n):
        if any(matrix[u, v] for u in reach):
            reach.add(v)
    back = {n - 1}
    for v in range(n - 2, -1, -1):
        if any(matrix[v, w] for w in back):
            back.add(v)
    keep = sorted(reach & back)
    return matrix[np.ix_(keep, keep)], [ops[k] for k in keep]


@pytest.fixture(scope="module")
def naslib101(shared_data):
    data = json.loads((shared_data / "naslib" / "zc_nasbench101.json").read_text())["nasbench101"]["cifar10"]
    rows = []
    for key, value in data.items():
        codes = ast.literal_eval(key)
        matrix = np.array(codes[:49]).reshape(7, 7)
        rows.append((_prune(matrix, [NASLIB_NB101_OPS[c] for c in codes[49:]]), value))
    return rows


@pytest.fixture(scope="module")
def naslib201(shared_data):
    data = json.loads((shared_data / "naslib" / "zc_nasbench201.json").read_text())
    out = {}
    for dataset in NB201_DATASETS:
        out[dataset] = [
            ([NASLIB_NB201_OPS[ast.literal_eval(key)[i]] for i in NASLIB_TO_ARCH_ORDER], value)
            for key, value in data[dataset].items()
        ]
    return out


# ---------------------------------------------------------------- NAS-Bench-101 parameter counts


def test_nb101_analytic_params_match_all_7v_cells(ec7v):
    cells, params = ec7v
    assert len(cells) == 4310
    mismatched = [i for i, (cell, p) in enumerate(zip(cells, params)) if nb101_param_count(cell) != p]
    assert mismatched == []


def test_nb101_built_params_match_7v_stratified_sample(ec7v):
    """Build (on the meta device) every cell with 4 or 5 vertices and an even spread of the 6- and
    7-vertex cells and count their trainable parameters. (Building all 4,310 takes ~2 minutes here;
    the analytic count, checked against the built module on this sample, covers all of them.)"""
    cells, params = ec7v
    sizes = np.array([len(ops) for _, ops in cells])
    chosen = list(np.flatnonzero(sizes <= 5))
    for n, share in ((6, 20), (7, 45)):
        members = np.flatnonzero(sizes == n)
        chosen += list(members[np.linspace(0, len(members) - 1, share).astype(int)])
    assert len(set(chosen)) == 100
    for i in chosen:
        model = build_nb101(cells[i], device="meta")
        assert count_params(model) == params[i], f"cell {i}"
        assert nb101_param_count(cells[i]) == params[i]


def test_nb101_params_match_naslib(naslib101):
    assert len(naslib101) == 500
    mismatched = [cell for cell, value in naslib101 if nb101_param_count(cell) != round(value["params"] * 1e6)]
    assert mismatched == []
    for cell, value in naslib101[:5]:
        assert count_params(build_nb101(cell, device="meta")) == round(value["params"] * 1e6)


def test_nb101_flops_match_naslib_convention(naslib101):
    """NASLib's NB101 "flops" (tensorwatch: MACs + 2 per BN element + 1 per ReLU element), exactly."""
    for cell, value in naslib101[:4]:
        model = build_nb101(cell)
        naslib = round(value["flops"] * 1e6)
        assert count_flops(model, (3, 32, 32), convention="naslib") == naslib
        macs = count_flops(model, (3, 32, 32))
        assert 0.97 * naslib < macs < naslib


@pytest.mark.parametrize(
    "matrix, c_in, c_out, expected",
    [  # cases from NAS-Bench-101's own model_builder_test.py
        ([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], 8, 16, [8, 16, 16, 16]),
        ([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], 8, 15, [8, 8, 7, 15]),
        ([[0, 1, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0] * 5], 8, 8, [8, 3, 3, 2, 8]),
        ([[0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0] * 5], 8, 9, [8, 5, 5, 4, 9]),
        ([[0, 1, 0, 1, 0], [0, 0, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0] * 5], 8, 15, [8, 8, 7, 7, 15]),
        ([[0, 1], [0, 0]], 5, 1, [5, 1]),
    ],
)
def test_compute_vertex_channels(matrix, c_in, c_out, expected):
    assert compute_vertex_channels(c_in, c_out, np.array(matrix)) == expected


def test_nb101_forward_shapes_and_truncation():
    """A cell whose channel split is uneven (15 = 8 + 7) needs the truncation path to run."""
    cell = (np.array([[0, 1, 0, 1, 0], [0, 0, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0] * 5]),
            ["input", "conv3x3-bn-relu", "maxpool3x3", "conv1x1-bn-relu", "output"])
    model = build_nb101(cell, stem_channels=15, num_stacks=2, cells_per_stack=1, num_classes=7)
    assert model(torch.zeros(2, 3, 9, 9)).shape == (2, 7)
    with_object = type("Cell", (), {"matrix": SMALL_NB101_CELL[0], "ops": SMALL_NB101_CELL[1]})()
    assert count_params(build_nb101(with_object, device="meta")) == nb101_param_count(SMALL_NB101_CELL)


def test_nb101_rejects_bad_cells():
    unpruned = (np.array([[0, 1, 1], [0, 0, 0], [0, 0, 0]]), ["input", "conv3x3-bn-relu", "output"])
    with pytest.raises(InvalidArchitecture) as err:
        build_nb101(unpruned)
    assert err.value.rule == "not-pruned"
    with pytest.raises(InvalidArchitecture, match="conv5x5"):
        build_nb101((np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]]), ["input", "conv5x5", "output"]))
    with pytest.raises(InvalidArchitecture) as err:
        build_nb101((np.array([[0, 1], [1, 0]]), ["input", "output"]))
    assert err.value.rule == "cycle"
    two_to_output = (np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]),
                     ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "output"])
    with pytest.raises(InvalidArchitecture) as err:
        build_nb101(two_to_output, stem_channels=1)  # 1 channel cannot feed 2 output vertices
    assert err.value.rule == "too-few-channels"


# ---------------------------------------------------------------- NAS-Bench-201


def test_nb201_params_match_naslib_all_cells(naslib201):
    for dataset, (classes, _size) in NB201_DATASETS.items():
        rows = naslib201[dataset]
        assert len(rows) >= 724
        mismatched = [ops for ops, v in rows if nb201_param_count(ops, num_classes=classes) != round(v["params"]["score"] * 1e6)]
        assert mismatched == [], dataset
        for ops, v in rows[:: len(rows) // 10]:  # the built module agrees on a spread sample
            assert count_params(build_nb201(ops, num_classes=classes, device="meta")) == round(v["params"]["score"] * 1e6)


def test_nb201_flops_differ_from_naslib_only_by_global_pool(naslib201):
    """With BN/ReLU counted, our NB201 FLOPs fall short of NASLib's by exactly its global-pool
    term 64*(H+1)^2 (H = final feature size), the same for every architecture."""
    for dataset, (classes, size) in NB201_DATASETS.items():
        gaps = set()
        for ops, v in naslib201[dataset][:6]:
            model = build_nb201(ops, num_classes=classes)
            gaps.add(round(v["flops"]["score"] * 1e6) - count_flops(model, (3, size, size), convention="naslib"))
        assert gaps == {64 * (size // 4 + 1) ** 2}, dataset


def test_parse_arch_forms_agree():
    ops = parse_arch(SMALL_NB201_ARCH)
    assert ops == ("nor_conv_3x3", "nor_conv_3x3", "skip_connect", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")
    assert parse_arch(list(ops)) == ops
    with pytest.raises(InvalidArchitecture):
        parse_arch(ops[:5])
    with pytest.raises(InvalidArchitecture):
        parse_arch("|nor_conv_3x3~0|+|nor_conv_3x3~1|skip_connect~0|+|none~0|none~1|none~2|")
    with pytest.raises(InvalidArchitecture, match="conv_5x5"):
        parse_arch(["conv_5x5"] * 6)


def test_nb201_none_cell_still_runs():
    model = build_nb201(["none"] * 6, C=4, N=1)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_macs_are_half_of_flop_counter_mode():
    """Conv and linear MACs, doubled, equal torch's FlopCounterMode (a model without pooling)."""
    cell = (np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]),
            ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "output"])
    model = build_nb101(cell, stem_channels=16, num_stacks=1, cells_per_stack=2).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert 2 * count_flops(model, (3, 32, 32)) == counter.get_total_flops()
    assert count_flops(model, (4, 3, 32, 32)) == 4 * count_flops(model, (3, 32, 32))
    with pytest.raises(UnknownName):
        count_flops(model, (3, 32, 32), convention="flops")


# ---------------------------------------------------------------- data


def test_load_flowers17(shared_data):
    data = load_flowers17(shared_data / "flowers17")
    assert [len(s) for s in data] == [680, 340, 340]
    assert data.train.x.shape == (680, 3, 16, 16) and data.train.x.dtype == torch.float32
    assert data.train.y.dtype == torch.int64
    assert torch.bincount(data.train.y).tolist() == [40] * 17
    assert 0.0 <= float(data.test.x.min()) and float(data.test.x.max()) <= 1.0


def test_load_flowers17_through_the_registry_is_verified(shared_data, tmp_path, monkeypatch):
    """Without a folder, the six files come through the data registry (here: the offline mirror,
    read in place and sha256-checked); a mirror copy that differs from upstream is refused."""
    from ecnas_plugin import datasets
    from ecnas_plugin.errors import ChecksumError

    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "cache"))
    via_registry = load_flowers17(mirror=shared_data)
    direct = load_flowers17(shared_data / "flowers17")
    assert all(torch.equal(a.x, b.x) and torch.equal(a.y, b.y) for a, b in zip(via_registry, direct))
    entry = datasets.find(datasets.builtin_data_files(), "flowers17_x_train.npy")
    assert entry.mirror_path == "flowers17/x_train.npy" and "multi-obj-baselines" in entry.url
    bad = tmp_path / "mirror"
    (bad / "flowers17").mkdir(parents=True)
    for f in (shared_data / "flowers17").iterdir():
        (bad / "flowers17" / f.name).write_bytes(f.read_bytes())
    x = np.load(bad / "flowers17" / "x_val.npy")
    np.save(bad / "flowers17" / "x_val.npy", x[::-1])  # same shape and range, other bytes
    with pytest.raises(ChecksumError, match="x_val"):
        load_flowers17(mirror=bad)


def test_load_flowers17_rejects_bad_files(shared_data, tmp_path):
    for name in ("train", "val", "test"):
        np.save(tmp_path / f"x_{name}.npy", np.load(shared_data / "flowers17" / f"x_{name}.npy"))
        np.save(tmp_path / f"y_{name}.npy", np.load(shared_data / "flowers17" / f"y_{name}.npy"))
    np.save(tmp_path / "y_val.npy", np.zeros((340, 17)))  # no class set
    with pytest.raises(DataFormatError, match="y_val.*one-hot"):
        load_flowers17(tmp_path)
    np.save(tmp_path / "y_val.npy", np.load(shared_data / "flowers17" / "y_val.npy"))
    (tmp_path / "x_test.npy").unlink()
    with pytest.raises(FileNotFoundError, match="x_test"):
        load_flowers17(tmp_path)


def test_synthetic_cifar10_shapes_and_seed():
    a, b, c = synthetic_cifar10(50, seed=1), synthetic_cifar10(50, seed=1), synthetic_cifar10(50, seed=2)
    assert a.x.shape == (50, 3, 32, 32) and a.x.dtype == torch.float32
    assert a.y.shape == (50,) and int(a.y.min()) >= 0 and int(a.y.max()) <= 9
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    model = build_nb201(SMALL_NB201_ARCH, C=4, N=1)
    history = train(model, a, epochs=1, batch_size=25)
    assert len(history) == 1 and np.isfinite(history[0].train_loss)


# ---------------------------------------------------------------- training


def _flowers_run(shared_data, build, epochs, seed=0, **kwargs):
    data = load_flowers17(shared_data / "flowers17")
    torch.manual_seed(seed)
    model = build()
    events = []
    history = train(model, data.train, data.val, epochs=epochs, batch_size=64, lr=0.1, seed=seed,
                    on_epoch_start=lambda e: events.append(("start", e)),
                    on_epoch_end=lambda e, s: events.append(("end", e, s)), **kwargs)
    return model, data, history, events


@pytest.mark.parametrize("name, build", [
    ("nb201", lambda: build_nb201(SMALL_NB201_ARCH, C=8, N=1, num_classes=17)),
    ("nb101", lambda: build_nb101(SMALL_NB101_CELL, stem_channels=16, num_stacks=2, cells_per_stack=1,
                                  num_classes=17, bn_momentum=0.1)),
])
def test_small_networks_learn_flowers17(shared_data, name, build):
    """8 epochs on the real 680 training images; chance is 1/17 ~ 0.06. Observed on this machine:
    final train accuracy 0.6-0.7 (running) / 0.6-0.7 (eval mode), validation 0.45-0.49."""
    model, data, history, events = _flowers_run(shared_data, build, epochs=8)
    assert [e[:2] for e in events] == [(k, e) for e in range(1, 9) for k in ("start", "end")]
    assert all(isinstance(e[2], EpochStats) for e in events if e[0] == "end")
    last = history[-1]
    assert last.train_acc > 0.35, name
    assert evaluate(model, data.train) > 0.35, name
    assert last.val_acc > 0.2, name
    assert last.test_acc is None
    assert history[-1].train_loss < history[0].train_loss
    assert all(s.wall_time_s >= s.train_time_s > 0 for s in history)


def test_training_is_deterministic_under_a_seed(shared_data):
    def build():
        return build_nb201(SMALL_NB201_ARCH, C=4, N=1, num_classes=17)

    def strip(history):
        return [(s.train_loss, s.train_acc, s.val_acc) for s in history]

    first, _, h1, _ = _flowers_run(shared_data, build, epochs=2, seed=3)
    second, _, h2, _ = _flowers_run(shared_data, build, epochs=2, seed=3)
    _, _, h3, _ = _flowers_run(shared_data, build, epochs=2, seed=4)
    assert strip(h1) == strip(h2)
    assert all(torch.equal(p, q) for p, q in zip(first.state_dict().values(), second.state_dict().values()))
    assert strip(h1) != strip(h3)


def test_train_rejects_unknown_optimizer():
    with pytest.raises(UnknownName, match="rmsprop"):
        train(build_nb201(SMALL_NB201_ARCH, C=4, N=1), synthetic_cifar10(8), epochs=1, optimizer="rmsprop")
