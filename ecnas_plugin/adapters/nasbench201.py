"""NAS-Bench-201 cells: the architecture string, NASLib's op-index tuples, and the index table.

A cell has 4 nodes and 6 edges, each carrying one of 5 ops. The canonical key is the
architecture string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: edges grouped by target node
(1, 2, 3), each written ``op~source``. NASLib's ``get_hash()`` is a 6-tuple of op indices in
its own edge order (source, target) = (0,1), (0,2), (0,3), (1,2), (1,3), (2,3), i.e. sorted by
source first, which differs from the string's order (sorted by target first).
"""

from __future__ import annotations

import csv
import functools
import operator
import re
import itertools
from collections.abc import Collection, Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from ecnas_plugin.adapters.base import NaslibMapping, SearchSpace
from ecnas_plugin.errors import DataFormatError, InvalidArchitecture, UnknownName
from ecnas_plugin.hookspecs import hookimpl

# NASLib's op order (OP_NAMES_NB201 in naslib/search_spaces/nasbench201/conversions.py).
OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
# (source, target) of each edge in arch-string order.
STRING_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
# (source, target) of each edge in NASLib's op-index order.
NASLIB_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
# NASLib position -> arch-string position.
_NASLIB_TO_STRING = tuple(STRING_EDGES.index(e) for e in NASLIB_EDGES)
NUM_ARCHS = len(OPS) ** len(STRING_EDGES)  # 15,625

_TOKEN = re.compile(r"^([A-Za-z0-9_]+)~(\d+)$")


def parse_arch_str(s: str) -> tuple[str, ...]:
    """The 6 edge ops of an architecture string, in string order; validates it fully.

    Rules: "syntax" (not three ``|...|`` node groups joined by ``+`` with 1, 2, 3 edges),
    "unknown-op" (names the valid ops), "bad-input-index" (edge ``~k`` into node j needs k == its
    position, 0..j-1).
    """
    if not isinstance(s, str):
        raise InvalidArchitecture("syntax", f"expected an architecture string, got {type(s).__name__}", s)
    text = s.strip()
    nodes = text.split("+")
    if len(nodes) != 3:
        raise InvalidArchitecture("syntax", f"expected 3 node groups joined by '+', got {len(nodes)}", s)
    ops: list[str] = []
    for target, group in enumerate(nodes, start=1):
        if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
            raise InvalidArchitecture("syntax", f"node group {group!r} must look like |op~0|...|", s)
        tokens = group[1:-1].split("|")
        if len(tokens) != target:
            raise InvalidArchitecture(
                "syntax", f"node {target} needs {target} incoming edge(s), got {len(tokens)} in {group!r}", s
            )
        for position, token in enumerate(tokens):
            match = _TOKEN.match(token)
            if not match:
                raise InvalidArchitecture("syntax", f"edge {token!r} must look like op~k", s)
            op, source = match.group(1), int(match.group(2))
            if op not in OPS:
                raise InvalidArchitecture("unknown-op", f"op {op!r} is not one of {', '.join(OPS)}", s)
            if source != position:
                raise InvalidArchitecture(
                    "bad-input-index",
                    f"edge {token!r} into node {target} must come from node {position} "
                    f"(sources in order 0..{target - 1})",
                    s,
                )
            ops.append(op)
    return tuple(ops)


def to_arch_str(ops: Sequence[str]) -> str:
    """Architecture string from 6 edge ops in string order (inverse of :func:`parse_arch_str`)."""
    if isinstance(ops, str) or len(ops) != len(STRING_EDGES):
        raise InvalidArchitecture("syntax", "need a sequence of 6 op names", ops)
    for op in ops:
        if op not in OPS:
            raise InvalidArchitecture("unknown-op", f"op {op!r} is not one of {', '.join(OPS)}", tuple(ops))
    t = [f"{op}~{src}" for op, (src, _) in zip(ops, STRING_EDGES)]
    return f"|{t[0]}|+|{t[1]}|{t[2]}|+|{t[3]}|{t[4]}|{t[5]}|"


def to_op_indices(arch_str: str) -> tuple[int, ...]:
    """NASLib's ``get_hash()`` tuple (op indices, NASLib edge order) of an architecture string."""
    ops = parse_arch_str(arch_str)
    return tuple(OPS.index(ops[k]) for k in _NASLIB_TO_STRING)


def from_op_indices(t: Sequence[int]) -> str:
    """Architecture string of a NASLib op-index tuple (inverse of :func:`to_op_indices`)."""
    if isinstance(t, (str, bytes)) or len(t) != len(NASLIB_EDGES):
        raise InvalidArchitecture("syntax", "need 6 op indices", t)
    try:
        idx = [operator.index(v) for v in t]
    except TypeError:
        raise InvalidArchitecture("syntax", "op indices must be integers", t) from None
    bad = [v for v in idx if not 0 <= v < len(OPS)]
    if bad:
        valid = f"0..{len(OPS) - 1} ({', '.join(OPS)})"
        raise InvalidArchitecture("unknown-op", f"op indices {bad} not in {valid}", t)
    ops = [""] * len(STRING_EDGES)
    for naslib_pos, string_pos in enumerate(_NASLIB_TO_STRING):
        ops[string_pos] = OPS[idx[naslib_pos]]
    return to_arch_str(ops)


class Nb201Index:
    """The NAS-Bench-201 index ↔ architecture string table (15,625 entries)."""

    def __init__(self, arch_strs: Sequence[str], source: object = "<memory>"):
        """``arch_strs[i]`` is the architecture string of index ``i``; strings are validated."""
        self.source = source
        self._by_index = [to_arch_str(parse_arch_str(a)) for a in arch_strs]
        self._by_arch = {a: i for i, a in enumerate(self._by_index)}
        if len(self._by_arch) != len(self._by_index):
            raise DataFormatError(source, None, "architecture strings are not unique")

    @classmethod
    def from_csv(cls, path: str | PathLike[str]) -> Nb201Index:
        """Load ``nb201_index,arch_str[,edge_ops]`` rows; checks 15,625 unique, complete rows."""
        path = Path(path)
        try:
            handle = path.open(newline="", encoding="utf-8")
        except OSError as exc:
            raise DataFormatError(path, None, f"cannot open: {exc}") from None
        with handle:
            reader = csv.DictReader(handle)
            missing = {"nb201_index", "arch_str"} - set(reader.fieldnames or ())
            if missing:
                raise DataFormatError(path, None, f"header lacks column(s) {sorted(missing)}")
            by_index: dict[int, str] = {}
            seen: dict[str, int] = {}
            for row in reader:
                line = reader.line_num
                try:
                    index = int(row["nb201_index"])
                    arch = to_arch_str(parse_arch_str(row["arch_str"]))
                except (ValueError, TypeError) as exc:  # InvalidArchitecture is a ValueError
                    raise DataFormatError(path, None, f"line {line}: {exc}") from None
                edge_ops = row.get("edge_ops")
                if edge_ops is not None and tuple(edge_ops.split(",")) != parse_arch_str(arch):
                    raise DataFormatError(path, None, f"line {line}: edge_ops disagree with arch_str")
                if not 0 <= index < NUM_ARCHS:
                    reason = f"line {line}: index {index} outside 0..{NUM_ARCHS - 1}"
                    raise DataFormatError(path, None, reason)
                if index in by_index:
                    raise DataFormatError(path, None, f"line {line}: index {index} repeated")
                if arch in seen:
                    raise DataFormatError(path, None, f"line {line}: {arch} repeats index {seen[arch]}")
                by_index[index] = arch
                seen[arch] = index
        if len(by_index) != NUM_ARCHS:
            raise DataFormatError(path, None, f"{len(by_index)} rows, expected {NUM_ARCHS}")
        return cls([by_index[i] for i in range(NUM_ARCHS)], source=path)

    def __len__(self) -> int:
        return len(self._by_index)

    def __contains__(self, arch_str: object) -> bool:
        return arch_str in self._by_arch

    def index_of(self, arch_str: str) -> int:
        """NAS-Bench-201 index of an architecture string (validated first)."""
        arch = to_arch_str(parse_arch_str(arch_str))
        try:
            return self._by_arch[arch]
        except KeyError:
            raise UnknownName("NAS-Bench-201 architecture", arch) from None

    def arch_str_of(self, index: int) -> str:
        """Architecture string of a NAS-Bench-201 index."""
        try:
            i = operator.index(index)
        except TypeError:
            raise UnknownName(f"NAS-Bench-201 index (0..{len(self) - 1})", index) from None
        if not 0 <= i < len(self._by_index):
            raise UnknownName(f"NAS-Bench-201 index (0..{len(self) - 1})", index)
        return self._by_index[i]


INDEX_FILE = "nb201_index_to_arch_str.csv"
_DEFAULT_INDEX: Nb201Index | None = None


def default_index() -> Nb201Index:
    """The standard NAS-Bench-201 index, from the data registry (offline mirror, cache or download)."""
    global _DEFAULT_INDEX
    if _DEFAULT_INDEX is None:
        from ..datasets import resolve
        from ..registry import get_registry

        _DEFAULT_INDEX = Nb201Index.from_csv(resolve(get_registry().data_file(INDEX_FILE)))
    return _DEFAULT_INDEX


def _naslib_key(graph: object) -> str:
    return from_op_indices(graph.get_hash())  # type: ignore[attr-defined]


class NasBench201(SearchSpace):
    """NAS-Bench-201 cells, keyed (and described) by architecture string."""

    name = "nasbench201"
    key_description = "architecture string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
    network_defaults = {"C": 16, "N": 5}
    size = NUM_ARCHS
    naslib = NaslibMapping("nasbench201", "nasbench201", _naslib_key)

    def canonical_key(self, arch: object) -> str:
        """Arch string of: an arch string; 6 op indices (NASLib order); or 6 op names (string order)."""
        if isinstance(arch, str):
            return to_arch_str(parse_arch_str(arch))
        if isinstance(arch, Sequence) or hasattr(arch, "__array__"):
            items = list(arch)  # type: ignore[call-overload]
            if len(items) == len(STRING_EDGES) and all(isinstance(v, str) for v in items):
                return to_arch_str(items)
            if not any(isinstance(v, (bool, str, float)) for v in items):
                return from_op_indices(items)
        raise InvalidArchitecture(
            "bad-key", "expected an arch string, 6 op indices (NASLib order) or 6 op names", arch
        )

    def parse_arch(self, text: str) -> str:
        """Parse an arch string, ``"(0, 2, 3, 2, 3, 1)"`` or ``"0,2,3,2,3,1"`` (NASLib order), or a
        plain NAS-Bench-201 index such as ``"1234"``."""
        s = text.strip()
        if s.startswith("|"):
            return to_arch_str(parse_arch_str(s))
        if re.fullmatch(r"\d+", s):
            return default_index().arch_str_of(int(s))
        body = s[1:-1] if s[:1] in "([" and s[-1:] in ")]" and len(s) >= 2 else s
        parts = [p.strip() for p in body.split(",")]
        if not all(re.fullmatch(r"\d+", p) for p in parts):
            raise InvalidArchitecture(
                "syntax", "expected an arch string |op~0|+...| or 6 comma-separated op indices", text
            )
        return from_op_indices([int(p) for p in parts])

    def arch(self, value: object) -> str:
        """The canonical arch string of any accepted form (the buildable form is the key itself)."""
        return self.canonical_key(self.parse_arch(value) if isinstance(value, str) else value)

    def decode(self, key: str) -> str:
        return self.arch(key)

    def enumerate(self) -> Iterator[str]:
        """All 15,625 cells, in op-product order."""
        return (to_arch_str(ops) for ops in itertools.product(OPS, repeat=len(STRING_EDGES)))

    def sample(self, rng, subset: Collection[str] | None = None) -> str:
        if subset is not None:
            return super().sample(rng, subset)
        return to_arch_str([OPS[int(k)] for k in rng.integers(len(OPS), size=len(STRING_EDGES))])

    def neighbours(self, arch: object, subset: Collection[str] | None = None) -> list[str]:
        """The 24 cells with one edge's op changed (NASLib's NB201 neighbourhood)."""
        ops = parse_arch_str(self.arch(arch))
        out = []
        for edge in range(len(ops)):
            for op in OPS:
                if op != ops[edge]:
                    key = to_arch_str(ops[:edge] + (op,) + ops[edge + 1:])
                    if subset is None or key in subset:
                        out.append(key)
        return out

    def nearest(self, arch: object, subset: Collection[str] | None = None, max_edits: int = 4) -> list[str]:
        """The cells of ``subset`` fewest op changes away (at least one, at most ``max_edits``),
        sorted: the Hamming distance of their op tuples in one vectorised pass, where the generic
        ring-by-ring walk visits thousands of cells outside a small table per move."""
        if subset is None:
            return super().nearest(arch, subset, max_edits)
        import numpy as np  # here, not at import: the CLI starts without numpy

        subset = subset if isinstance(subset, frozenset) else frozenset(subset)
        keys, codes = _coded_subset(subset)
        start = self.arch(arch)
        edits = (codes != np.array(to_op_indices(start), np.int8)).sum(axis=1)
        ok = edits >= 1
        if ok.any() and edits[ok].min() <= max_edits:
            return [keys[i] for i in np.flatnonzero(edits == edits[ok].min())]
        raise InvalidArchitecture("no-neighbour", f"nothing within {max_edits} edits inside the "
                                                  f"{len(subset)} allowed configurations of {self.name}", start)

    def stratum(self, arch: object) -> tuple:
        """How many edges carry each op (in :data:`OPS` order)."""
        ops = parse_arch_str(self.arch(arch))
        return tuple(ops.count(o) for o in OPS)

    def build_network(self, arch: object, num_classes: int, **settings: int):
        from ecnas_plugin.networks import build_nb201

        return build_nb201(self.arch(arch), num_classes=num_classes, **{**self.network_defaults, **settings})

    def features(self, archs: Sequence[object]) -> tuple[Any, list[str]]:
        from ecnas_plugin.energy.surrogates.features import nb201_feature_names, nb201_features

        return nb201_features([self.arch(a) for a in archs]), nb201_feature_names()


@functools.lru_cache(maxsize=8)
def _coded_subset(subset: frozenset[str]):
    """(sorted keys, their op indices as an int8 array) of a table's cells, once per table."""
    import numpy as np

    keys = sorted(subset)
    return keys, np.array([to_op_indices(k) for k in keys], np.int8).reshape(len(keys), len(STRING_EDGES))


@hookimpl
def ecnas_search_spaces():
    return [NasBench201()]
