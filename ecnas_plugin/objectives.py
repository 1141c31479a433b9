"""Accuracy-vs-energy objectives: scalarisations, search-energy budgets, Pareto fronts, hypervolume.

Independent of any NAS library: the NASLib bridge and the studies use the same functions.
Conventions: accuracies are fractions in [0, 1] (higher is better), energies are kWh (lower is
better), and every scalarisation returns a value to *maximise*.

Scalarisations (``make_objective(name, **params)``):

- ``penalty``:    acc - weight * E / reference_kwh
- ``constraint``: acc if E <= limit_kwh, else -(E - limit_kwh) / limit_kwh (always below every
  feasible value, and less negative the closer a model is to the limit, so searches are guided back)
- ``soft``:       acc * (E / reference_kwh) ** exponent (MnasNet; EA-HAS-Bench's EA-BANANAS uses
  exponent -0.07 and reference 0.5 kWh)
- ``chebyshev``:  -max(w_acc * (1 - acc), w_energy * E / reference_kwh) with weights redrawn
  (``redraw``) from a seeded generator, e.g. once per search epoch, to cover the Pareto front.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import moocore
import numpy as np

from ecnas_plugin.errors import EcnasError, UnknownName

OBJECTIVES = ("penalty", "constraint", "soft", "chebyshev")


class BudgetExhausted(EcnasError):
    """The summed training energy of the evaluated architectures passed the search-energy budget."""

    def __init__(self, spent_kwh: float, budget_kwh: float, evaluations: int):
        self.spent_kwh = spent_kwh
        self.budget_kwh = budget_kwh
        self.evaluations = evaluations
        super().__init__(f"search-energy budget of {budget_kwh:g} kWh exhausted: {spent_kwh:g} kWh "
                         f"spent on {evaluations} evaluations")


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _check_inputs(acc: float, energy_kwh: float) -> None:
    if not (math.isfinite(acc) and math.isfinite(energy_kwh)):
        raise ValueError(f"objective needs finite accuracy and energy, got acc={acc!r}, energy={energy_kwh!r}")
    if energy_kwh < 0:
        raise ValueError(f"energy must be >= 0 kWh, got {energy_kwh!r}")


@dataclass
class Penalty:
    """acc - weight * E / reference_kwh."""

    weight: float = 0.1
    reference_kwh: float = 1.0
    name: str = field(default="penalty", init=False)

    def __post_init__(self) -> None:
        if not math.isfinite(float(self.weight)) or self.weight < 0:
            raise ValueError(f"weight must be a finite number >= 0, got {self.weight!r}")
        self.reference_kwh = _positive("reference_kwh", self.reference_kwh)

    def __call__(self, acc: float, energy_kwh: float) -> float:
        _check_inputs(acc, energy_kwh)
        return acc - self.weight * energy_kwh / self.reference_kwh


@dataclass
class Constraint:
    """acc when E <= limit_kwh; otherwise -(E - limit)/limit, below every feasible model."""

    limit_kwh: float
    name: str = field(default="constraint", init=False)

    def __post_init__(self) -> None:
        self.limit_kwh = _positive("limit_kwh", self.limit_kwh)

    def feasible(self, energy_kwh: float) -> bool:
        return energy_kwh <= self.limit_kwh

    def __call__(self, acc: float, energy_kwh: float) -> float:
        _check_inputs(acc, energy_kwh)
        if self.feasible(energy_kwh):
            return acc
        return -(energy_kwh - self.limit_kwh) / self.limit_kwh


@dataclass
class Soft:
    """acc * (E / reference_kwh) ** exponent (exponent < 0 rewards lower energy)."""

    exponent: float = -0.07
    reference_kwh: float = 0.5
    name: str = field(default="soft", init=False)

    def __post_init__(self) -> None:
        if not math.isfinite(float(self.exponent)):
            raise ValueError(f"exponent must be finite, got {self.exponent!r}")
        self.reference_kwh = _positive("reference_kwh", self.reference_kwh)

    def __call__(self, acc: float, energy_kwh: float) -> float:
        _check_inputs(acc, energy_kwh)
        if energy_kwh == 0:
            raise ValueError("soft objective needs energy > 0 kWh")
        return acc * (energy_kwh / self.reference_kwh) ** self.exponent


@dataclass
class Chebyshev:
    """-max(w_acc * (1 - acc), w_energy * E / reference_kwh); ``redraw()`` draws new weights."""

    reference_kwh: float = 1.0
    seed: int = 0
    weights: tuple[float, float] = (0.5, 0.5)
    name: str = field(default="chebyshev", init=False)

    def __post_init__(self) -> None:
        self.reference_kwh = _positive("reference_kwh", self.reference_kwh)
        # A private generator: redrawing never disturbs the search's own random streams.
        self._rng = np.random.default_rng(self.seed)

    def redraw(self) -> tuple[float, float]:
        """Draw weights uniformly from the simplex; returns (w_acc, w_energy)."""
        w = float(self._rng.uniform())
        self.weights = (w, 1.0 - w)
        return self.weights

    def __call__(self, acc: float, energy_kwh: float) -> float:
        _check_inputs(acc, energy_kwh)
        w_acc, w_energy = self.weights
        return -max(w_acc * (1.0 - acc), w_energy * energy_kwh / self.reference_kwh)


Objective = Penalty | Constraint | Soft | Chebyshev
_CLASSES = {"penalty": Penalty, "constraint": Constraint, "soft": Soft, "chebyshev": Chebyshev}


def make_objective(name: str, **params: float) -> Objective:
    """The scalarisation ``name`` (one of OBJECTIVES) with its parameters."""
    try:
        cls = _CLASSES[name]
    except KeyError:
        raise UnknownName("objective", name, OBJECTIVES) from None
    return cls(**params)


def affine_form(objective: Objective) -> Callable[[float], tuple[float, float]] | None:
    """For objectives that are affine in accuracy at fixed energy (penalty, constraint, soft): a
    function energy -> (a, b) with ``objective(acc, E) == a * acc + b`` bit for bit, so a search can
    precompute (a, b) per architecture. None for chebyshev (weights change between calls)."""

    def check(energy_kwh: float) -> None:
        _check_inputs(0.0, energy_kwh)

    if isinstance(objective, Penalty):
        def penalty(energy_kwh: float) -> tuple[float, float]:
            check(energy_kwh)
            return 1.0, -(objective.weight * energy_kwh / objective.reference_kwh)
        return penalty
    if isinstance(objective, Constraint):
        def constraint(energy_kwh: float) -> tuple[float, float]:
            check(energy_kwh)
            return (1.0, 0.0) if objective.feasible(energy_kwh) else (0.0, objective(0.0, energy_kwh))
        return constraint
    if isinstance(objective, Soft):
        def soft(energy_kwh: float) -> tuple[float, float]:
            check(energy_kwh)
            if energy_kwh == 0:
                raise ValueError("soft objective needs energy > 0 kWh")
            return (energy_kwh / objective.reference_kwh) ** objective.exponent, 0.0
        return soft
    return None


class SearchBudget:
    """EA-HAS-Bench's accounting: the summed training energy of every evaluated architecture.

    ``charge`` adds one evaluation; ``exhausted`` turns true once the sum *exceeds* the budget
    (the evaluation that crosses it was paid for and is kept). ``None`` means no budget.
    """

    def __init__(self, budget_kwh: float | None = None):
        self.budget_kwh = None if budget_kwh is None else _positive("budget_kwh", budget_kwh)
        self.spent_kwh = 0.0
        self.evaluations = 0

    def charge(self, energy_kwh: float) -> float:
        """Add one evaluation's energy; returns the cumulative search energy."""
        if not math.isfinite(energy_kwh) or energy_kwh < 0:
            raise ValueError(f"evaluation energy must be finite and >= 0 kWh, got {energy_kwh!r}")
        self.spent_kwh += energy_kwh
        self.evaluations += 1
        return self.spent_kwh

    @property
    def exhausted(self) -> bool:
        return self.budget_kwh is not None and self.spent_kwh > self.budget_kwh

    def check(self) -> None:
        """Raise :class:`BudgetExhausted` once the budget is exceeded."""
        if self.exhausted:
            raise BudgetExhausted(self.spent_kwh, self.budget_kwh, self.evaluations)  # type: ignore[arg-type]


def _points(acc: Sequence[float], energy_kwh: Sequence[float]) -> np.ndarray:
    a = np.asarray(acc, dtype=float).ravel()
    e = np.asarray(energy_kwh, dtype=float).ravel()
    if a.shape != e.shape:
        raise ValueError(f"got {a.size} accuracies and {e.size} energies")
    if not (np.isfinite(a).all() and np.isfinite(e).all()):
        raise ValueError("accuracies and energies must be finite")
    return np.column_stack([1.0 - a, e])  # both minimised


def pareto_mask(acc: Sequence[float], energy_kwh: Sequence[float]) -> np.ndarray:
    """Boolean mask of the non-dominated points (max accuracy, min energy); duplicates all kept."""
    pts = _points(acc, energy_kwh)
    if len(pts) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(pts, keep_weakly=True), dtype=bool)


def hypervolume(acc: Sequence[float], energy_kwh: Sequence[float],
                reference: tuple[float, float]) -> float:
    """Hypervolume (moocore) of the points in (error = 1 - acc, energy) space, both minimised.

    ``reference`` is (error, energy_kwh); points not strictly better than it in both add nothing.
    """
    ref = np.asarray(reference, dtype=float)
    if ref.shape != (2,) or not np.isfinite(ref).all():
        raise ValueError(f"reference must be (error, energy_kwh), got {reference!r}")
    pts = _points(acc, energy_kwh)
    if len(pts) == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=ref))
