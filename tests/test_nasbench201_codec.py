"""NAS-Bench-201 codec: arch strings, NASLib op-index tuples and the index table, on the real data."""

from __future__ import annotations

import ast
import itertools
import json

import numpy as np
import pytest

from ecnas_plugin.adapters import nasbench201 as nb
from ecnas_plugin.errors import DataFormatError, InvalidArchitecture, UnknownName

# Chance-level validation accuracy (%) per data set: 10, 100 and 120 classes.
CHANCE_BELOW = {"cifar10": 15.0, "cifar100": 2.0, "ImageNet16-120": 1.5}


@pytest.fixture(scope="module")
def index_csv(shared_data):
    return shared_data / "nb201" / "nb201_index_to_arch_str.csv"


@pytest.fixture(scope="module")
def index(index_csv) -> nb.Nb201Index:
    return nb.Nb201Index.from_csv(index_csv)


@pytest.fixture(scope="module")
def zc201(shared_data) -> dict[str, dict[str, dict]]:
    return json.loads((shared_data / "naslib" / "zc_nasbench201.json").read_text())


def test_index_table_loads_and_round_trips(index):
    assert len(index) == 15625
    for i in range(len(index)):
        arch = index.arch_str_of(i)
        assert index.index_of(arch) == i
        assert nb.to_arch_str(nb.parse_arch_str(arch)) == arch
        assert nb.from_op_indices(nb.to_op_indices(arch)) == arch


def test_op_index_tuples_cover_the_space_exactly(index):
    archs = {nb.from_op_indices(t) for t in itertools.product(range(5), repeat=6)}
    assert len(archs) == 15625
    assert all(a in index for a in archs)


def test_naslib_zc_keys_decode_into_the_index(zc201, index):
    count = 0
    for records in zc201.values():
        for key, rec in records.items():
            t = ast.literal_eval(key)
            arch = nb.from_op_indices(t)
            assert arch in index
            assert nb.to_op_indices(arch) == t
            assert rec["arch"] == key
            count += 1
    assert count == 725 + 725 + 724  # ImageNet16-120 lacks one cell


def _output_reachable(arch: str) -> bool:
    """Whether node 3 is reachable from node 0 through edges that are not 'none'."""
    reach = {0}
    for op, (src, dst) in zip(nb.parse_arch_str(arch), nb.STRING_EDGES):
        if op != "none" and src in reach:
            reach.add(dst)
    return 3 in reach


def test_naslib_edge_order_matches_accuracy_data(zc201):
    """A cell trains to chance accuracy exactly when its output is cut off from its input.

    That holds for every record under NASLib's edge order, and fails under the naive
    string order, so it checks the order on real data.
    """
    at_chance, naive_disagrees = 0, 0
    for ds, records in zc201.items():
        for key, rec in records.items():
            t = ast.literal_eval(key)
            chance = rec["val_accuracy"] < CHANCE_BELOW[ds]
            at_chance += chance
            assert _output_reachable(nb.from_op_indices(t)) != chance, (ds, key)
            naive = nb.to_arch_str([nb.OPS[i] for i in t])
            naive_disagrees += _output_reachable(naive) == chance
    assert at_chance > 0 and naive_disagrees > 0


def test_edge_order_example():
    # NASLib order: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); string order: by target node.
    arch = nb.from_op_indices((0, 1, 2, 3, 4, 0))
    assert arch == "|skip_connect~0|+|none~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|skip_connect~2|"


@pytest.mark.parametrize(
    "text, rule",
    [
        ("|nor_conv_3x3~0|+|none~0|none~1|", "syntax"),
        ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "syntax"),
        ("nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "syntax"),
        ("|nor_conv_3x3|+|none~0|none~1|+|none~0|none~1|none~2|", "syntax"),
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown-op"),
        ("|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|", "bad-input-index"),
        ("|nor_conv_3x3~0|+|none~1|none~0|+|none~0|none~1|none~2|", "bad-input-index"),
    ],
)
def test_invalid_arch_strings_name_the_rule(text, rule):
    with pytest.raises(InvalidArchitecture) as info:
        nb.parse_arch_str(text)
    assert info.value.rule == rule


def test_unknown_op_message_lists_valid_ops():
    with pytest.raises(InvalidArchitecture) as info:
        nb.parse_arch_str("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert "conv_5x5" in str(info.value) and all(op in str(info.value) for op in nb.OPS)


def test_bad_op_indices():
    with pytest.raises(InvalidArchitecture) as info:
        nb.from_op_indices((0, 1, 2, 3, 4, 5))
    assert info.value.rule == "unknown-op"
    with pytest.raises(InvalidArchitecture) as info:
        nb.from_op_indices((0, 1, 2))
    assert info.value.rule == "syntax"


def test_index_unknown_names(index):
    for bad in (15625, -1, "3"):
        with pytest.raises(UnknownName):
            index.arch_str_of(bad)
    partial = nb.Nb201Index([index.arch_str_of(0)])
    with pytest.raises(UnknownName):
        partial.index_of(index.arch_str_of(1))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda lines: lines[:-1], "15624 rows"),
        (lambda lines: lines[:3] + [lines[2]] + lines[4:], "repeated"),
        (lambda lines: [lines[0], lines[1].replace("~0|", "~1|", 1)] + lines[2:], "line 2"),
        (lambda lines: [lines[0], lines[1].replace(",nor_conv_1x1,", ",none,", 1)] + lines[2:], "edge_ops"),
        (lambda lines: ["index,arch"] + lines[1:], "header"),
    ],
)
def test_index_csv_problems_name_file_and_row(index_csv, tmp_path, damage, message):
    lines = index_csv.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(damage(lines)) + "\n")
    with pytest.raises(DataFormatError) as info:
        nb.Nb201Index.from_csv(bad)
    assert str(bad) in str(info.value) and message in str(info.value)


def test_adapter_forms_agree(index):
    adapter = nb.NasBench201()
    arch = index.arch_str_of(534)
    t = nb.to_op_indices(arch)
    names = nb.parse_arch_str(arch)
    assert adapter.canonical_key(arch) == arch
    assert adapter.canonical_key(t) == arch
    assert adapter.canonical_key(list(t)) == arch
    assert adapter.canonical_key(np.array(t)) == arch
    assert adapter.canonical_key(names) == arch
    assert adapter.parse_arch(f"  {arch} ") == arch
    assert adapter.parse_arch(str(t)) == arch
    assert adapter.parse_arch(",".join(map(str, t))) == arch
    for bad in (3.5, (0.0, 1, 2, 3, 4, 0), (True, 1, 2, 3, 4, 0)):
        with pytest.raises(InvalidArchitecture) as info:
            adapter.canonical_key(bad)
        assert info.value.rule == "bad-key"
    with pytest.raises(InvalidArchitecture) as info:
        adapter.parse_arch("zero,one")
    assert info.value.rule == "syntax"


def test_plugin_hook_returns_the_adapter():
    (adapter,) = nb.ecnas_search_spaces()
    assert adapter.name == "nasbench201" and adapter.key_description.startswith("architecture string")
