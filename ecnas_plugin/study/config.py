"""Study configs: parse and validate a YAML grid before anything runs.

A study is the grid spaces × optimizers × objectives × budgets × seeds. Example::

    name: quickstart
    spaces: [ecnas-4v, {name: ecnas-5v, budgets: [{evaluations: 100}]},
             {name: ecnas-4v-linscale, epochs: [4, 12, 36, 108]}]   # the budget as a search dimension
    optimizers:
      - random
      - {name: evolution, params: {population_size: 10, sample_size: 3}}
      - sms-emoa                        # multi-objective: always runs on the "pareto" objective
    objectives: [accuracy, {name: soft, exponent: -0.07, reference_kwh: 0.5}]
    budgets: [{evaluations: 30}]        # or {search_kwh: 2.0}
    seeds: 10                           # or a list of seeds

A space entry names any registered energy table (``ecnas tables``: EC-NAS's, a contributed
``user-<space>``, a plugin's) of any registered search space; it may override ``budgets`` and
``epochs``: one epoch budget (default: the table's largest), or a list of budgets that makes the
budget a search dimension (each evaluation a (configuration, budget) pair, charged that
budget's energy), and ``surrogate``: a curve surrogate (a registered name such as ``bezier``,
fitted on the table when a run starts, or a saved model's folder) that extends the search to the
whole space, configurations outside the table predicted (``source = predicted`` in the trace).
A single-objective optimizer entry may override ``objectives``. Every unknown
name (table, optimizer, objective, parameter, key) is refused here with the list of what exists.

NASLib's own optimizers run through the bridge when NASLib is installed: ``naslib:rs``,
``naslib:re``, ``naslib:ls``, ``naslib:bananas``, ``naslib:npenas`` (single-objective; ``params``
are NASLib ``search:`` settings, see :data:`ecnas_plugin.study.naslib_runs.PARAMS`), on the
tables the bridge serves (an NB101 table; for ``rs``/``re``/``ls`` a table of a space without a
NASLib mapping, such as the joint table, also with a ``surrogate``: the bridge then searches the
whole space, configurations outside the table predicted), at one budget. Without NASLib such a
config is refused here, before anything runs, with the install steps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ecnas_plugin import errors
from ecnas_plugin.errors import UnknownName
from ecnas_plugin.objectives import OBJECTIVES, make_objective
from ecnas_plugin.search.optimizers import OPTIMIZERS
from ecnas_plugin.search.run import Budget
from ecnas_plugin.registry import get_registry

from . import naslib_runs

# "accuracy": the plain (energy-blind) objective; "pareto": the multi-objective optimizers' pair.
PLAIN = "accuracy"
PARETO = "pareto"
OBJECTIVE_NAMES = (PLAIN, PARETO, *OBJECTIVES)

_TOP_KEYS = ("name", "description", "output", "spaces", "optimizers", "objectives", "budgets", "seeds", "workers")


class ConfigError(errors.ConfigError):
    """A study config is malformed; names the key."""

    def __init__(self, key: str, detail: str):
        super().__init__(key, detail, config="study config")


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid."""

    space: str  # a table name
    epochs: int | tuple[int, ...] | None  # one budget, several (searched over), or the table's largest
    optimizer: str
    optimizer_params: dict
    objective: str  # label (unique within the study)
    objective_name: str
    objective_params: dict
    budget_evaluations: int | None
    budget_kwh: float | None
    seed: int
    surrogate: str | None = None  # a curve model (name or folder): the search leaves the table


    @property
    def budget(self) -> Budget:
        return Budget(self.budget_evaluations, self.budget_kwh)

    @property
    def group(self) -> tuple[str, str, str, str]:
        """What seeds are aggregated over: (space, optimizer, objective, budget)."""
        return (self.space, self.optimizer, self.objective, self.budget.label)

    @property
    def run_id(self) -> str:
        """Readable and unique: a changed setting gives a new id, so resuming never reuses stale runs."""
        fields = asdict(self)
        if fields["surrogate"] is None:  # runs without one keep the ids they had before the field existed
            del fields["surrogate"]
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
        optimizer = self.optimizer.replace(":", "-")  # naslib:re → a portable folder name
        return f"{self.space}_{optimizer}_{self.objective}_{self.budget.label}_s{self.seed}_{digest}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    output: Path
    runs: tuple[RunSpec, ...]
    workers: int = 2
    source: dict = field(default_factory=dict, compare=False)


def _named(entry: object, key: str) -> tuple[str, dict]:
    """``"name"`` or ``{name: ..., other: ...}`` → (name, rest)."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        rest = dict(entry)
        return rest.pop("name"), rest
    raise ConfigError(key, f"each entry must be a name or a mapping with a 'name', got {entry!r}")


def _list(value: object, key: str) -> list:
    if value is None:
        raise ConfigError(key, "is required")
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(key, "must not be empty")
    return items


def _unknown_keys(mapping: dict, allowed: tuple[str, ...], key: str) -> None:
    for k in mapping:
        if k not in allowed:
            raise UnknownName(f"key in {key}", k, allowed)


def _budgets(value: object, key: str) -> list[Budget]:
    out = []
    for entry in _list(value, key):
        if not isinstance(entry, dict):
            raise ConfigError(key, f"a budget is {{evaluations: N}} or {{search_kwh: X}}, got {entry!r}")
        _unknown_keys(entry, ("evaluations", "search_kwh"), key)
        try:
            out.append(Budget(entry.get("evaluations"), entry.get("search_kwh")))
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
    return out


def _epochs(value: object, key: str) -> int | tuple[int, ...] | None:
    """None, one budget, or several (sorted, a tuple; a list of one is that budget)."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ConfigError(key, f"an epoch budget or a list of them (positive integers), got {value!r}")
    if len(set(values)) != len(values):
        raise ConfigError(key, f"lists a budget twice: {value!r}")
    return values[0] if len(values) == 1 else tuple(sorted(values))


def _surrogate(value: object, table: str) -> str | None:
    """A space entry's ``surrogate``: a registered curve surrogate's name (fitted on the table
    when the run starts) or the folder of a saved curve model; the table's space must sample."""
    if value is None:
        return None
    from ecnas_plugin.naslib.config import check_surrogate  # one rule for studies and the NASLib bridge

    check_surrogate(value, f"spaces[{table}].surrogate", ConfigError)
    registry = get_registry()
    registry.space(registry.table_spec(table).space).require("sample", flow=f"a search beyond table {table!r}")
    return value


def _objective(entry: object, key: str) -> tuple[str, str, dict]:
    """(label, name, params); the objective is built once here so bad parameters fail now."""
    name, params = _named(entry, key)
    label = params.pop("label", None)
    if name not in OBJECTIVE_NAMES:
        raise UnknownName("objective", name, OBJECTIVE_NAMES, context=f"in {key}")
    if name in (PLAIN, PARETO):
        if params:
            raise ConfigError(key, f"objective {name!r} takes no parameters, got {sorted(params)}")
    else:
        try:
            make_objective(name, **params)
        except TypeError as exc:
            raise ConfigError(key, f"bad parameters for objective {name!r}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(key, f"objective {name!r}: {exc}") from None
    if label is None:
        label = name + "".join(f"-{k}{v:g}" if isinstance(v, (int, float)) else f"-{k}{v}"
                               for k, v in sorted(params.items()))
    if not isinstance(label, str) or not label.replace("-", "").replace(".", "").replace("_", "").isalnum():
        raise ConfigError(key, f"objective label {label!r} must be letters, digits, '-', '_' or '.'")
    return label, name, params


def parse_study(data: dict, *, where: str = "study config") -> Study:
    """Validate a study mapping (as loaded from YAML) and expand its grid of cells."""
    if not isinstance(data, dict):
        raise ConfigError(where, "must be a mapping")
    _unknown_keys(data, _TOP_KEYS, "the study config")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("name", "a non-empty string is required")
    default_budgets = _budgets(data["budgets"], "budgets") if "budgets" in data else None
    default_objectives = [_objective(o, "objectives") for o in _list(data.get("objectives", [PLAIN]), "objectives")]

    spaces = []
    for entry in _list(data.get("spaces"), "spaces"):
        sname, rest = _named(entry, "spaces")
        tables = get_registry().items["tables"]
        if sname not in tables:
            raise UnknownName("energy table", sname, tables, context="in spaces (a space entry names a table)")
        if sname in (s[0] for s in spaces):
            raise ConfigError("spaces", f"table {sname!r} is listed twice; give several budgets as one "
                                        f"entry's epochs list")
        _unknown_keys(rest, ("epochs", "budgets", "surrogate"), f"spaces[{sname}]")
        budgets = _budgets(rest["budgets"], f"spaces[{sname}].budgets") if "budgets" in rest else default_budgets
        if budgets is None:
            raise ConfigError("budgets", f"space {sname!r} has no budget: give budgets at top level or in the space")
        surrogate = _surrogate(rest.get("surrogate"), sname)
        spaces.append((sname, _epochs(rest.get("epochs"), f"spaces[{sname}].epochs"), budgets, surrogate))

    optimizers = []
    for entry in _list(data.get("optimizers"), "optimizers"):
        oname, rest = _named(entry, "optimizers")
        _unknown_keys(rest, ("params", "objectives"), f"optimizers[{oname}]")
        params = rest.get("params", {}) or {}
        if naslib_runs.is_naslib(oname):
            if oname not in naslib_runs.names():
                raise UnknownName("optimizer", oname, (*OPTIMIZERS, *naslib_runs.names()), context="in optimizers")
            allowed, multi_objective = naslib_runs.PARAMS, False
        else:
            cls = OPTIMIZERS.get(oname)
            if cls is None:
                raise UnknownName("optimizer", oname, (*OPTIMIZERS, *naslib_runs.names()), context="in optimizers")
            allowed, multi_objective = cls.params, cls.multi_objective
        for p in params:
            if p not in allowed:
                raise UnknownName(f"parameter of optimizer {oname!r}", p, allowed)
        if multi_objective:
            if "objectives" in rest:
                raise ConfigError(f"optimizers[{oname}]", "a multi-objective optimizer takes no objectives")
            objectives = [(PARETO, PARETO, {})]
        else:
            objectives = ([_objective(o, f"optimizers[{oname}].objectives") for o in _list(rest["objectives"], "objectives")]
                          if "objectives" in rest else default_objectives)
            if any(name == PARETO for _, name, _ in objectives):
                raise ConfigError(f"optimizers[{oname}]", f"{oname!r} is single-objective; 'pareto' needs "
                                  f"a multi-objective optimizer ({[n for n, c in OPTIMIZERS.items() if c.multi_objective]})")
        optimizers.append((oname, params, objectives))

    naslib_optimizers = [o for o, _, _ in optimizers if naslib_runs.is_naslib(o)]
    for sname, epochs, _, surrogate in spaces:
        if naslib_optimizers:
            from ecnas_plugin.naslib import spaces as naslib_spaces

            flow = f"NASLib optimizers ({', '.join(naslib_optimizers)}) on table {sname!r}"
            try:  # what the bridge can serve, decided by the space's capabilities, without NASLib
                tgt = naslib_spaces.check_search(sname, [o[len(naslib_runs.PREFIX):] for o in naslib_optimizers])
            except errors.MissingCapability:
                raise
            except errors.EcnasError as exc:
                raise ConfigError(f"spaces[{sname}]", f"{flow}: {exc}") from None
            if surrogate is not None:  # the bridge extends only a table it serves with its own class
                try:
                    naslib_spaces.check_surrogate(tgt)
                except errors.ConfigError as exc:
                    raise ConfigError(f"spaces[{sname}].surrogate", f"{flow}: {exc}") from None
            if isinstance(epochs, tuple):
                raise ConfigError(f"spaces[{sname}].epochs", f"{flow} search one epoch budget, not {list(epochs)}")

    seeds = data.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds))
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
        raise ConfigError("seeds", f"a positive count or a list of non-negative integers, got {seeds!r}")
    workers = data.get("workers", 2)
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", f"a positive integer, got {workers!r}")

    cells = []
    labels: dict[str, tuple[str, dict]] = {}
    for sname, epochs, budgets, surrogate in spaces:
        for oname, oparams, objectives in optimizers:
            for label, objname, objparams in objectives:
                if labels.setdefault(label, (objname, objparams)) != (objname, objparams):
                    raise ConfigError("objectives", f"label {label!r} names two different objectives")
                for budget in budgets:
                    for seed in seeds:
                        cells.append(RunSpec(sname, epochs, oname, dict(oparams), label, objname, dict(objparams),
                                          budget.evaluations, budget.search_kwh, seed, surrogate))
    ids = [c.run_id for c in cells]
    if len(set(ids)) != len(ids):
        raise ConfigError("the study config", "the grid repeats a run (duplicate space, optimizer or seed)")
    if naslib_optimizers:
        naslib_runs.require(naslib_optimizers, [s[0] for s in spaces])  # the last check: every other mistake first
    output = Path(data.get("output", Path("studies") / name))
    return Study(name=name, description=str(data.get("description", "")), output=output,
                 runs=tuple(cells), workers=workers, source=data)


def load_study(path: str | Path) -> Study:
    """Read and validate a YAML study config (PyYAML's safe loader: no code runs)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    return parse_study(data, where=str(path))
