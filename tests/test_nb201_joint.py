"""The joint NB201 x hyperparameter space (adapters/nb201_joint.py): keys, named errors, the
design, moves, features, and that every setting of a configuration reaches real training on
Flowers-17 (through the generic campaign, no joint-space code in it); steady-state windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecnas_plugin.adapters.nb201_joint import SETTINGS, JointConfig, Nb201Joint
from ecnas_plugin.energy import campaign as cp
from ecnas_plugin.errors import InvalidArchitecture, InvalidConfiguration
from ecnas_plugin.networks.train import Split, augment_batch, learning_rate, resize, train
from ecnas_plugin.registry import get_registry
from ecnas_plugin.table import EnergyTable

CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
SMALL = f"{CELL};activation=relu;lr=0.05;weight_decay=0.0005;N=1;W=4;augment=off;optimizer=sgd;schedule=cosine@resolution=8"


@pytest.fixture(scope="module")
def space() -> Nb201Joint:
    return get_registry().space("nb201-joint")  # through the real entry point


def test_key_is_cell_then_settings_in_a_fixed_order_and_round_trips(space):
    config = space.arch(SMALL)
    assert isinstance(config, JointConfig) and config.N == 1 and config.resolution == 8
    assert space.canonical_key(config) == SMALL
    shuffled = f"{CELL};schedule=cosine;W=4;N=1;lr=0.05;optimizer=sgd;augment=off;weight_decay=5e-4@resolution=8"
    assert space.canonical_key(shuffled) == SMALL  # any order, any float spelling: one key
    assert space.canonical_key(space.decode(SMALL)) == SMALL
    # floats keep 3 significant digits; a bare cell takes every default
    assert ";lr=0.0123;" in space.canonical_key(f"{CELL};lr=0.0123456")
    assert space.canonical_key(CELL) == space.config_key(CELL, {})
    assert space.canonical_key({"arch": CELL, "N": 1, "W": 4, "lr": 0.05, "augment": "off",
                                "resolution": 8}) == SMALL
    assert [d.name for d in space.run_fidelities] == ["resolution"]


@pytest.mark.parametrize("text, match", [
    (f"{CELL};lr=5", r"hyperparameter 'lr'.*must lie in \[0.001, 1.0\]"),
    (f"{CELL};activation=tanh", r"hyperparameter 'activation'.*must be one of \['relu', 'hardswish', 'mish'\]"),
    (f"{CELL};N=2", r"hyperparameter 'N'.*must be one of \[1, 3, 5\]"),
    (f"{CELL};momentum=0.9", r"'momentum' not a dimension of the space"),
    (f"{CELL};lr", r"setting: 'lr' must be written name=value"),
    (f"{CELL};lr=0.1;lr=0.2", r"'lr' given twice"),
    (f"{CELL};lr=fast", r"hyperparameter 'lr'.*'fast' must be a number"),
    (f"{CELL}@resolution=32", r"fidelity 'resolution'.*must be one of \[8, 12, 16\]"),
])
def test_invalid_values_are_named_errors(space, text, match):
    with pytest.raises(InvalidConfiguration, match=match):
        space.canonical_key(text)


def test_a_bad_cell_is_the_codecs_error(space):
    with pytest.raises(InvalidArchitecture):
        space.canonical_key("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|;lr=0.1")


def test_design_is_distinct_and_spreads_over_every_dimension(space):
    design = space.design(120, seed=3)
    keys = {space.canonical_key(c) for c in design}
    assert len(keys) == 120
    for name in SETTINGS:
        dim = next(d for d in space.dimensions if d.name == name)
        values = [getattr(c, name) for c in design]
        if dim.choices is not None:
            assert set(values) == set(dim.choices), name  # every value of every categorical
        else:  # log-uniform: every decade of the range holds a share
            logs = np.log10(values)
            edges = np.linspace(np.log10(dim.low), np.log10(dim.high), 4)
            assert (np.histogram(logs, edges)[0] >= 30).all(), name
    assert space.design(120, seed=3) == design  # a seed gives the same design
    assert cp.sample_cells(space, 5, seed=3) == [space.describe(c) for c in space.design(5, 3)]


def test_neighbours_mutation_and_nearest_inside_a_subset(space):
    config = space.arch(SMALL)
    neighbours = space.neighbours(config)
    distances = {round(space.distance(config, n), 2) for n in neighbours}  # lr keeps 3 digits
    assert distances == {1.0}  # one edit each: an edge op, a categorical value, a quarter decade
    assert len(neighbours) == 24 + 2 + 2 + 2 + 2 + 1 + 2 + 2 + 2 + 2  # 24 cells, 2 per choice, lr/wd up and down
    subset = {space.canonical_key(c) for c in space.design(40, seed=1)}
    rng = np.random.default_rng(0)
    for _ in range(5):
        moved = space.canonical_key(space.mutate(config, rng, subset))
        assert moved in subset
    near = space.nearest(config, subset)
    best = min(space.distance(config, space.decode(k)) for k in subset)
    assert all(math.isclose(space.distance(config, n), best) for n in near)


def test_features_follow_the_configuration(space):
    a = space.arch(SMALL)
    b = space.arch(SMALL.replace("W=4", "W=16").replace("resolution=8", "resolution=16"))
    X, names = space.features([a, b])
    assert X.shape == (2, len(names)) and len(names) == len(set(names))
    col = {n: i for i, n in enumerate(names)}
    assert X[1, col["log_params"]] > X[0, col["log_params"]] and X[1, col["log_flops"]] > X[0, col["log_flops"]]
    assert X[0, col["optimizer_sgd"]] == 1 and X[0, col["augment"]] == 0
    assert X[0, col["log10_lr"]] == pytest.approx(math.log10(0.05))
    assert space.features([])[1] == names


def test_network_takes_depth_width_and_activation_from_the_configuration(space):
    net = space.build_network(SMALL.replace("activation=relu", "activation=mish"), 17)
    assert any(isinstance(m, torch.nn.Mish) for m in net.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())
    assert net.classifier.in_features == 16  # W=4 doubled twice
    with pytest.raises(InvalidConfiguration, match="N and W are hyperparameters"):
        space.build_network(SMALL, 17, C=16)


# ---------------------------------------------------------------------- training parts
def test_schedules_resize_and_augmentation():
    assert learning_rate("cosine", 0.1, 0, 10) == pytest.approx(0.1)
    assert learning_rate("cosine", 0.1, 5, 10) == pytest.approx(0.05)
    assert learning_rate("linear", 0.1, 5, 10) == pytest.approx(0.05)
    assert learning_rate("exponential", 0.1, 10, 10) == pytest.approx(0.001)
    x = torch.rand(6, 3, 16, 16)
    small = resize(Split(x, torch.zeros(6, dtype=torch.int64)), 8)
    assert small.x.shape == (6, 3, 8, 8)
    assert torch.allclose(small.x.mean(), x.mean(), atol=0.02)  # antialiased: the mean stays
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, x) and a.shape == x.shape


class _NanOnce(torch.nn.Module):
    """A linear model whose first forward pass gives NaN (an overflow, as a wild learning rate does)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = self.fc(x.flatten(1)[:, :4])
        return out * float("nan") if self.calls == 1 else out


def test_nonfinite_steps_are_skipped_and_counted_not_hidden():
    data = Split(torch.rand(32, 1, 2, 2), torch.randint(0, 3, (32,)))
    history = train(_NanOnce(), data, epochs=2, batch_size=8, skip_nonfinite=True, grad_clip=5.0)
    assert [h.skipped_steps for h in history] == [1, 0]
    assert all(math.isfinite(h.train_loss) for h in history)
    with pytest.raises(FloatingPointError, match="diverged"):  # without the flag a NaN ends the run
        train(_NanOnce(), data, epochs=1, batch_size=8)

    class AlwaysNan(_NanOnce):
        def forward(self, x):
            return self.fc(x.flatten(1)[:, :4]) * float("nan")

    with pytest.raises(FloatingPointError, match="every step"):
        train(AlwaysNan(), data, epochs=1, batch_size=8, skip_nonfinite=True)


# ---------------------------------------------------------------------- measured for real
def test_every_setting_reaches_real_training_through_the_generic_campaign(tmp_path, shared_data, meter_works):
    space = get_registry().space("nb201-joint")
    variants = [SMALL, SMALL.replace("optimizer=sgd", "optimizer=adam"),
                SMALL.replace("resolution=8", "resolution=16"), SMALL.replace("augment=off", "augment=on")]
    spec = cp.CampaignSpec(name="joint-test", space=space.name, archs=tuple(variants), epochs=2,
                           data_root=str(shared_data / "flowers17"), torch_threads=1)
    cp.run_campaign(spec, tmp_path, progress=False)
    table = EnergyTable.load(tmp_path / "table")
    frame = table.frame.set_index("arch_key")
    keys = [space.canonical_key(v) for v in variants]
    assert list(frame.loc[keys, "arch_text"]) == keys
    curves = {k: table.curve(k)["val_acc"].tolist() for k in keys}
    assert len({tuple(c) for c in curves.values()}) == 4  # each setting changed the training
    assert frame.at[keys[2], "flops"] > 3 * frame.at[keys[0], "flops"]  # 16 px against 8 px input
    cps = table.checkpoints
    assert cps["train_loss"].notna().all() and (cps["skipped_steps"] == 0).all()
    assert "per configuration" in cp.campaign_metadata(table.manifest)["training"]


def test_a_scaled_window_says_so_in_every_row(tmp_path, shared_data, meter_works):
    # a configuration big enough that a window lasts well over codecarbon's sampling interval
    # (a window of a few ms reads almost no energy, and contribute refuses its implausible power)
    bigger = SMALL.replace("N=1", "N=3").replace("W=4", "W=16").replace("resolution=8", "resolution=16")
    spec = cp.CampaignSpec(name="joint-window", space="nb201-joint", archs=(bigger,), epochs=2,
                           data_root=str(shared_data / "flowers17"), torch_threads=1,
                           window_steps=6, window_warmup=2)
    cp.run_campaign(spec, tmp_path, progress=False)
    table = EnergyTable.load(tmp_path / "table")
    row = table.frame.iloc[0]
    assert row["source"] == "scaled" and row["window_steps"] == 6 and row["window_warmup_steps"] == 2
    assert row["epoch_steps"] == 11  # 680 images, batches of 64
    assert np.isnan(row["val_acc"])  # a window trains part of each epoch: no accuracy to report
    assert "SCALED" in table.manifest.notes and "SCALED" in cp.campaign_metadata(table.manifest)["energy_window"]
    if row["energy_method"] == "estimated":
        assert "power-model estimates" in table.sources_text()
    from ecnas_plugin.energy.contribute import contribute

    report = contribute(tmp_path / "table", into="user-joint-window", dry_run=True)
    assert report.accepted, report.text()  # a recorded window is data; the rows stay "scaled"
    too_long = cp.CampaignSpec(name="joint-window", space="nb201-joint", archs=(SMALL,), epochs=1,
                               data_root=str(shared_data / "flowers17"), window_steps=20)
    with pytest.raises(ValueError, match=r"window \(warmup 0, steps 20\) must fit in an epoch of 11 steps"):
        cp.measure(too_long.to_dict(), SMALL, 0)
