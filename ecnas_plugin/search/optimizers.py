"""Built-in optimizers: random search, regularized evolution, SMS-EMOA-style multi-objective evolution,
Hyperband in epochs or kWh and its multi-objective variant (multifidelity.py), Bayesian optimisation
(plain and cost-aware expected improvement) and ParEGO (model_based.py).

All speak one small ask/tell interface, so one loop (:func:`ecnas_plugin.search.run.run_search`)
drives them and NASLib is not needed. They propose points (:class:`~ecnas_plugin.search.space.Point`:
a configuration at a budget) and know nothing of any particular search space: sampling and
mutation are the space's. Single-objective optimizers maximise a scalar
``objective(acc, energy_kwh)``; the multi-objective one maximises accuracy and minimises
training energy at once. No optimizer proposes a point it has already evaluated (a real search
would reuse the trained model, not pay for it twice), so every evaluation costs energy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from typing import ClassVar

import moocore
import numpy as np

from ecnas_plugin.errors import UnknownName

from .space import Evaluation, Point, TabularSpace

ScalarObjective = Callable[[float, float], float]  # (accuracy fraction, energy kWh) -> value to maximise


class Optimizer(ABC):
    """Ask/tell search over a :class:`TabularSpace`.

    ``propose()`` returns the next point to train; ``observe(evaluation, score)`` reports its
    result (``score`` is the scalar objective value, None for multi-objective optimizers).
    """

    name: ClassVar[str]
    multi_objective: ClassVar[bool] = False
    # Whether the method itself uses energy (a multi-objective search, brackets in kWh, a cost-aware
    # acquisition), whatever the objective: studies compare energy-aware with energy-blind methods.
    uses_energy: ClassVar[bool] = False
    params: ClassVar[dict[str, object]] = {}

    def __init__(self, space: TabularSpace, rng: np.random.Generator, **params: object):
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise UnknownName(f"parameter of optimizer {self.name!r}", unknown[0], self.params)
        self.space = space
        self.rng = rng
        self.seen: set[Point] = set()
        for k, default in self.params.items():
            setattr(self, k, params.get(k, default))

    def _fresh(self, point: Point | None) -> Point:
        """``point`` if not yet evaluated, else a random unevaluated point."""
        if point is not None and point not in self.seen:
            return point
        return self.space.sample(self.rng, exclude=self.seen)

    def _mutate_fresh(self, parent: Point, tries: int = 20) -> Point:
        """A mutation of ``parent`` not evaluated yet (a random fresh point if 20 tries fail)."""
        for _ in range(tries):
            child = self.space.mutate(parent, self.rng)
            if child not in self.seen:
                return child
        return self._fresh(None)

    @abstractmethod
    def propose(self) -> Point: ...

    def observe(self, evaluation: Evaluation, score: float | None) -> None:
        self.seen.add(evaluation.point)


class RandomSearch(Optimizer):
    """Uniform sampling without repetition."""

    name = "random"

    def propose(self) -> Point:
        return self._fresh(None)


class RegularizedEvolution(Optimizer):
    """Real et al. (2019): tournament selection, mutation, the oldest member dies.

    With ``eta``, children are screened as in asynchronous successive halving (ASHA, Li et al.
    2020) on the rungs :func:`screening_rungs` picks from the space's budgets: each new
    configuration starts at the lowest rung and continues to the next only if its score is in the
    top ``1/eta`` of the scores its rung has seen so far; only top-budget results join the
    population, so tournaments compare like with like, and a budget that is no rung is not
    trained (with the top budget the only rung, every child trains at it). A continuation pays
    only the extra epochs where the data has the run's curve (``search.run``). Without ``eta`` the
    budget is one more dimension a mutation may move.
    """

    name = "evolution"
    params = {"population_size": 10, "sample_size": 3, "eta": None}

    def __init__(self, space: TabularSpace, rng: np.random.Generator, **params: object):
        super().__init__(space, rng, **params)
        if not (self.eta is None or (isinstance(self.eta, int) and self.eta >= 2)):
            raise ValueError(f"optimizer {self.name!r}: eta must be an integer >= 2 (or null: no screening), got {self.eta!r}")
        self.population: deque[tuple[Point, float]] = deque()
        self.screening = self.eta is not None
        self.rungs = screening_rungs(space.budgets, self.eta) if self.screening else [space.budgets[-1]]
        self.rung_scores: dict[int, list[float]] = {b: [] for b in self.rungs}
        self.promotions: list[Point] = []  # screened children that earned the next budget

    def propose(self) -> Point:
        if self.promotions:
            return self.promotions.pop(0)
        return self._child(self._tournament())

    def _tournament(self) -> Point | None:
        """The best of ``sample_size`` random members; None while the population fills."""
        if len(self.population) < self.population_size:
            return None
        idx = self.rng.choice(len(self.population), size=min(self.sample_size, len(self.population)), replace=False)
        return max((self.population[i] for i in idx), key=lambda p: p[1])[0]

    def _child(self, parent: Point | None) -> Point:
        """A new point: a mutation of ``parent`` (a random point while there is none); screened,
        a configuration not started yet, at the lowest rung."""
        if not self.screening:
            return self._fresh(None) if parent is None else self._mutate_fresh(parent)
        low = self.rungs[0]
        if parent is not None:
            for _ in range(20):
                child = Point(self.space.mutate(parent, self.rng).key, low)
                if child not in self.seen:
                    return child
        for _ in range(1000):  # a configuration not started yet (rejection: most are, in a search)
            child = Point(self.space.sample(self.rng, exclude=self.seen).key, low)
            if child not in self.seen:
                return child
        return self._fresh(None)  # (nearly) every configuration started: any point not trained yet

    def observe(self, evaluation: Evaluation, score: float | None) -> None:
        super().observe(evaluation, score)
        if score is None:
            raise ValueError("regularized evolution needs a scalar objective value")
        if self.screening and evaluation.point.epochs != self.rungs[-1]:
            rung = self.rung_scores.get(evaluation.point.epochs)  # None: not a rung (a space used up)
            if rung is not None:
                rung.append(score)
                if score >= np.quantile(rung, 1.0 - 1.0 / self.eta):
                    later = Point(evaluation.key, self.rungs[self.rungs.index(evaluation.point.epochs) + 1])
                    if later not in self.seen:
                        self.promotions.append(later)
            return
        self.population.append((evaluation.point, score))
        if len(self.population) > self.population_size:
            self.population.popleft()


def screening_rungs(budgets: Sequence[int], eta: int) -> list[int]:
    """The budgets successive halving screens at: the top one and, downwards, each budget at most
    ``1/eta`` of the rung above it (Hyperband's geometric spacing). A closer budget saves too little
    per child it stops for the good children it loses: on EC-NAS 5V (epoch 2 costs 53% of epoch
    4's energy) screening at 2 did not make ea-evolution reach random search's accuracy for less
    (0.39 -> 0.34 kWh on one 40 seeds, 0.40 -> 0.49 on the next 40; bench_energy_to_target's
    statistic), so 5V's 2 is no rung; the joint table's 1, 3, 10 all are."""
    rungs = [budgets[-1]]
    for b in reversed(budgets[:-1]):
        if rungs[0] >= eta * b:
            rungs.insert(0, b)
    return rungs


class SmsEmoa(Optimizer):
    """Steady-state multi-objective evolution (SMS-EMOA, Beume et al. 2007) on (accuracy, energy).

    Parents by binary tournament on non-dominated rank; a child joins the population and, when
    it is full, the member of the worst front with the smallest hypervolume contribution leaves
    (both computed by moocore, in objectives normalised to the population's own range, so the
    optimizer needs no knowledge of the space's extremes).
    """

    name = "sms-emoa"
    multi_objective = True
    uses_energy = True
    params = {"population_size": 10}

    def __init__(self, space: TabularSpace, rng: np.random.Generator, **params: object):
        super().__init__(space, rng, **params)
        self.population: list[tuple[Point, float, float]] = []  # (point, observed acc, energy)

    def _points(self) -> np.ndarray:
        """Population as minimisation points (1 - acc, energy)."""
        return np.array([(1.0 - a, e) for _, a, e in self.population], dtype=float)

    def propose(self) -> Point:
        if len(self.population) < self.population_size:
            return self._fresh(None)
        ranks = moocore.pareto_rank(self._points())
        i, j = self.rng.choice(len(self.population), size=2, replace=False)
        winner = i if (ranks[i], self.rng.random()) < (ranks[j], self.rng.random()) else j
        return self._mutate_fresh(self.population[winner][0])

    def observe(self, evaluation: Evaluation, score: float | None) -> None:
        super().observe(evaluation, score)
        self.population.append((evaluation.point, evaluation.val_acc, evaluation.train_energy_kwh))
        if len(self.population) > self.population_size:
            self.population.pop(self._worst())

    def _worst(self) -> int:
        return worst_member(self._points())


def worst_member(points: np.ndarray) -> int:
    """SMS-EMOA's choice of who leaves: in the worst non-dominated front, the smallest HV contribution.

    ``points`` are minimised; they are normalised to their own range and the contribution is taken
    w.r.t. (1.1, 1.1), so the extremes of the front are kept.
    """
    ranks = moocore.pareto_rank(points)
    last = np.flatnonzero(ranks == ranks.max())
    if len(last) == 1:
        return int(last[0])
    lo, hi = points.min(axis=0), points.max(axis=0)
    scaled = (points[last] - lo) / np.where(hi > lo, hi - lo, 1.0)
    contrib = moocore.hv_contributions(scaled, ref=[1.1, 1.1])
    return int(last[int(np.argmin(contrib))])


# The multi-fidelity and model-based optimizers live in their own modules and subclass Optimizer,
# so they are imported once it exists.
from .multifidelity import EnergyHyperband, Hyperband, MultiObjectiveHyperband  # noqa: E402
from .model_based import CostAwareExpectedImprovement, EnergyAwareEvolution, ExpectedImprovement, ParEgo  # noqa: E402

OPTIMIZERS: dict[str, type[Optimizer]] = {c.name: c for c in (
    RandomSearch, RegularizedEvolution, EnergyAwareEvolution, SmsEmoa, Hyperband, EnergyHyperband, MultiObjectiveHyperband, ExpectedImprovement,
    CostAwareExpectedImprovement, ParEgo)}


def make_optimizer(name: str, space: TabularSpace, rng: np.random.Generator, **params: object) -> Optimizer:
    """The built-in optimizer ``name`` (see ``OPTIMIZERS``) on ``space``."""
    cls = OPTIMIZERS.get(name)
    if cls is None:
        raise UnknownName("optimizer", name, OPTIMIZERS)
    return cls(space, rng, **params)
