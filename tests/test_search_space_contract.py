"""The search-space contract (adapters/base.py): dimensions, configuration keys, fidelities,
capabilities refused by name, and moves inside a subset, on the built-in spaces and on a space with
hyperparameters written here the way a plugin would."""

from __future__ import annotations

import numpy as np
import pytest

from ecnas_plugin.adapters.base import EPOCHS, Dimension, SearchSpace
from ecnas_plugin.adapters.nasbench101 import NasBench101, cells_by_hash, module_hash
from ecnas_plugin.adapters.nasbench201 import NasBench201, parse_arch_str
from ecnas_plugin.errors import InvalidArchitecture, InvalidConfiguration, MissingCapability


class TinyHpo(SearchSpace):
    """Two cells x hyperparameters of the shape a joint space has: a log-scaled float, a categorical,
    an integer; epochs and resolution as fidelities. Only the codec: no capability at all."""

    name = "tiny-hpo"
    key_description = "cell name"
    dimensions = (
        Dimension("arch", "architecture", "architecture"),
        Dimension("lr", "hyperparameter", "float", low=1e-3, high=1.0, log=True, default=0.1),
        Dimension("optimizer", "hyperparameter", "categorical", choices=("sgd", "adam"), default="sgd"),
        Dimension("width", "hyperparameter", "integer", choices=(4, 8, 16)),
        EPOCHS,
        Dimension("resolution", "fidelity", "integer", choices=(8, 16), default=16),
    )

    def canonical_key(self, arch):
        if arch not in ("a", "b"):
            raise InvalidArchitecture("unknown-cell", "cells are 'a' and 'b'", arch)
        return arch

    def parse_arch(self, text):
        return text.strip()


def test_configuration_key_is_arch_then_hyperparameters_then_run_fidelities():
    space = TinyHpo()
    assert [d.name for d in space.hyperparameters] == ["lr", "optimizer", "width"]
    assert [d.name for d in space.fidelities] == ["epochs", "resolution"]
    assert [d.name for d in space.run_fidelities] == ["resolution"]
    key = space.config_key("a", {"width": 8, "optimizer": "adam", "lr": 0.01, "resolution": 8})
    assert key == "a;lr=0.01;optimizer=adam;width=8@resolution=8"
    assert space.config_key("a", {"width": 8}) == "a;lr=0.1;optimizer=sgd;width=8@resolution=16"  # defaults
    with pytest.raises(InvalidConfiguration, match="'epochs' not a dimension"):
        space.config_key("a", {"width": 8, "epochs": 12})  # the curve fidelity is never in a key
    assert NasBench101().config_key("e1aeb470572477cf15b1bd3644d59370") == "e1aeb470572477cf15b1bd3644d59370"


@pytest.mark.parametrize("hps, match", [
    ({"width": 8, "lr": 5.0}, r"hyperparameter 'lr'.*5.0 must lie in \[0.001, 1.0\]"),
    ({"width": 8, "optimizer": "rmsprop"}, r"hyperparameter 'optimizer'.*must be one of \['sgd', 'adam'\]"),
    ({"width": 6}, r"hyperparameter 'width'.*must be one of \[4, 8, 16\]"),
    ({"width": 8.5}, r"hyperparameter 'width'.*must be an integer"),
    ({"width": 8, "momentum": 0.9}, r"hyperparameter: 'momentum' not a dimension of the space"),
    ({}, r"hyperparameter: 'width' missing \(no default\)"),
])
def test_bad_hyperparameters_are_named(hps, match):
    with pytest.raises(InvalidConfiguration, match=match):
        TinyHpo().config_key("a", hps)


def test_fidelities_are_validated_by_name():
    space = TinyHpo()
    assert space.fidelity(epochs=12, resolution=16) == {"epochs": 12, "resolution": 16}
    with pytest.raises(InvalidConfiguration, match=r"fidelity 'epochs'.*0 must be >= 1"):
        space.fidelity(epochs=0)
    with pytest.raises(InvalidConfiguration, match=r"fidelity: 'width' the space's fidelities are"):
        space.fidelity(width=8)
    with pytest.raises(ValueError, match="log-scaled dimension needs low > 0"):
        Dimension("lr", "hyperparameter", "float", low=0.0, high=1.0, log=True)


def test_a_missing_capability_is_refused_by_name():
    space = TinyHpo()
    assert space.capabilities == ()
    with pytest.raises(MissingCapability, match=r"'tiny-hpo' has no 'network' capability, which ecnas measure needs"):
        space.require("network", flow="ecnas measure")
    with pytest.raises(MissingCapability, match="'features'"):
        space.features(["a"])
    assert set(NasBench201().capabilities) == {"enumerate", "sample", "neighbours", "network", "features",
                                               "strata", "naslib"}


def test_nb201_moves_stay_inside_a_subset_and_reach_the_nearest_when_it_is_sparse():
    space = NasBench201()
    rng = np.random.default_rng(0)
    arch = space.sample(rng)
    neighbours = space.neighbours(arch)
    assert len(neighbours) == 24 and len(set(neighbours)) == 24
    for n in neighbours:  # one edge changed
        assert sum(a != b for a, b in zip(parse_arch_str(arch), parse_arch_str(n))) == 1
    subset = frozenset(space.sample(rng) for _ in range(40))  # a sparse table: 40 of 15,625 cells
    assert space.sample(rng, subset) in subset
    nearest = space.nearest(arch, subset)
    distance = {sum(a != b for a, b in zip(parse_arch_str(arch), parse_arch_str(n))) for n in nearest}
    assert len(distance) == 1 and all(n in subset for n in nearest)
    closest = min(sum(a != b for a, b in zip(parse_arch_str(arch), parse_arch_str(k))) for k in subset - {arch})
    assert distance == {closest}  # nothing in the subset is nearer
    # NB201's vectorised pass finds what the generic ring-by-ring walk finds, for every cell of it
    for cell in sorted(subset)[:10] + [arch]:
        assert set(space.nearest(cell, subset)) == set(SearchSpace.nearest(space, cell, subset))
    with pytest.raises(InvalidArchitecture, match="no-neighbour"):
        space.nearest(arch, frozenset({space.canonical_key(arch)}), max_edits=2)


def test_nb101_neighbours_and_mutation_stay_valid_and_inside_the_subset():
    space = NasBench101()
    subset = frozenset(cells_by_hash(4))
    rng = np.random.default_rng(3)
    for key in sorted(subset)[:30]:
        cell = space.decode(key)
        for n in space.neighbours(cell, subset):
            assert module_hash(n) in subset and module_hash(n) != key
        child = space.mutate(cell, rng, subset)
        assert module_hash(child) in subset and module_hash(child) != key
    free = space.sample(rng)  # the whole space: any valid pruned cell of up to 7 vertices
    assert free.num_vertices <= 7 and space.canonical_key(free) == module_hash(free)
    with pytest.raises(InvalidArchitecture, match="not-decodable"):
        space.decode("0" * 32)


def test_a_tables_architectures_come_from_its_arch_text_where_a_key_cannot_be_decoded():
    """NB101 hashes of 6-7-vertex cells cannot be inverted: tables carry the buildable text."""
    import pandas as pd

    space = NasBench101()
    seven = "0100000001000000010000000100000001000000010000000:input,conv3x3,conv1x1,maxpool,conv3x3,conv1x1,output"
    cell = space.arch(seven)
    key = module_hash(cell)
    small = sorted(cells_by_hash(4))[0]
    frame = pd.DataFrame({"arch_key": [key, small], "arch_text": [seven, None]})
    archs = space.archs_of(frame)
    assert archs[key] == cell and module_hash(archs[small]) == small  # text, else decoded
    with pytest.raises(InvalidArchitecture, match="not-decodable"):
        space.archs_of(frame.drop(columns="arch_text"))
    with pytest.raises(InvalidArchitecture, match="key-mismatch"):
        space.archs_of(pd.DataFrame({"arch_key": [small], "arch_text": [seven]}))


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 2.5, "3", True])
def test_integer_dimensions_refuse_what_is_no_integer_by_name(value):
    with pytest.raises(InvalidConfiguration, match="fidelity 'epochs'.*must be an integer"):
        EPOCHS.check(value)
