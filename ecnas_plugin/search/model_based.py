"""Model-based optimizers: Bayesian optimisation with expected improvement, plain and cost-aware,
ParEGO (Knowles 2006) for (accuracy, energy), and evolution steered by predicted energy.

``bo``, ``ea-bo`` and ``parego`` fit a Gaussian process over the space's encoding of
configurations (``SearchSpace.encoding``: its features, for NB101 with the path encoding too; with
several budgets, log epochs as one more input) to what was
evaluated so far and propose, among candidates (mutations of the best evaluations so far plus
random configurations, so the search both explores and refines), the one with the largest
acquisition value:

- ``bo``: expected improvement of the scalar objective (energy-blind with the accuracy objective).
- ``ea-bo``: cost-aware: expected improvement per predicted kWh (``EI / E^cost_exponent``, Snoek et
  al. 2012's EI per second, in energy), the energy of a candidate predicted before it is trained
  by a second GP on log energy (a network's energy follows from its architecture, so it is the
  better-predicted of the two).
- ``parego``: each step draws a weight vector, scalarises every evaluation so far with the
  augmented Chebyshev function of its normalised objectives (error ``1 - acc`` and ``log energy``,
  each scaled to the range observed so far: energies span orders of magnitude), fits the GP to
  those values and proposes the candidate with the largest expected improvement of them.

``ea-evolution`` is regularized evolution that proposes ``candidates`` children (mutations of the
tournament winner; random configurations while the population fills) and trains the one a GP on
log energy predicts cheapest (once 5 evaluations exist). Accuracy and energy are nearly
uncorrelated among these spaces' configurations (correlation of accuracy with log energy 0.02 at
EC-NAS 5V's and the joint table's top budget), so the cheapest of a few children is about as
likely to be good as any, and each step costs less. Its children are screened (``eta``, 3 by
default; :class:`~ecnas_plugin.search.optimizers.RegularizedEvolution`): each starts at the lowest
rung and continues only while in the top third of its rung, so a child that will not do costs only
its cheapest rung (the joint table's epochs 1/3/10 are rungs; EC-NAS 5V's 2 and 4 are too close
to screen, :func:`~ecnas_plugin.search.optimizers.screening_rungs`, so there every child trains at
4 and is one of the four compared). Unscreened (``eta: null``), a child that moves the budget is
compared only with children at the same budget (the budget move stays the space's choice).

The GP (squared-exponential kernel on standardised encodings, length scale and noise chosen by
marginal likelihood on a small grid) is a few dozen lines of linear algebra on at most a few
hundred points: no library is needed for it.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_solve, solve_triangular
from scipy.special import ndtr

from .optimizers import Optimizer, RegularizedEvolution
from .space import Evaluation, Point, TabularSpace

_LENGTH_SCALES = (0.25, 0.5, 1.0, 2.0)  # times the median pairwise distance
_NOISES = (1e-3, 1e-2, 1e-1)  # of the standardised targets' variance


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def gp_predict(x: np.ndarray, y: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation of a GP fitted to (x, y), at ``candidates``."""
    mu, sd = float(y.mean()), float(y.std()) or 1.0
    z = (y - mu) / sd
    d2 = _sq_dist(x, x)
    median = float(np.sqrt(np.median(d2[np.triu_indices(len(x), 1)]))) if len(x) > 1 else 1.0
    median = median or 1.0
    best = None
    for scale in _LENGTH_SCALES:
        k = np.exp(-d2 / (2.0 * (scale * median) ** 2))
        for noise in _NOISES:
            try:
                chol = np.linalg.cholesky(k + noise * np.eye(len(x)))
            except np.linalg.LinAlgError:
                continue
            alpha = cho_solve((chol, True), z)  # triangular solves: a general solve costs a factorisation each
            evidence = -0.5 * float(z @ alpha) - float(np.log(np.diag(chol)).sum())
            if best is None or evidence > best[0]:
                best = (evidence, scale * median, chol, alpha)
    _, length, chol, alpha = best
    kc = np.exp(-_sq_dist(candidates, x) / (2.0 * length**2))
    mean = kc @ alpha
    v = solve_triangular(chol, kc.T, lower=True)
    var = np.maximum(1.0 - (v * v).sum(0), 1e-12)
    return mu + sd * mean, sd * np.sqrt(var)


def model_inputs(space: TabularSpace, points: list[Point]) -> np.ndarray:
    """What the GPs learn from: the space's encoding of each point's configuration
    (``SearchSpace.encoding``), and with several budgets its log epochs."""
    x = space.encodings([p.key for p in points])
    if len(space.budgets) > 1:
        x = np.column_stack([x, np.log([p.epochs for p in points])])
    return x


def standardised(x: np.ndarray, xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Evaluated inputs ``x`` and candidates' ``xc``, both scaled by the evaluated ones' mean and
    spread (a constant column left as it is)."""
    centre, spread = x.mean(0), x.std(0)
    spread[spread == 0] = 1.0
    return (x - centre) / spread, (xc - centre) / spread


def predicted_kwh(history: list[Evaluation], x: np.ndarray, xc: np.ndarray) -> np.ndarray:
    """The candidates' training energy before they are trained: a GP on the log energy of the
    evaluations so far (``x``, ``xc``: their standardised inputs)."""
    log_energy = np.log([ev.train_energy_kwh for ev in history])
    return np.exp(gp_predict(x, log_energy, xc)[0])


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """EI of minimising below ``best``."""
    gap = best - mean
    u = gap / sd
    return gap * ndtr(u) + sd * np.exp(-0.5 * u * u) / np.sqrt(2.0 * np.pi)


class _ModelBased(Optimizer):
    """What the model-based optimizers share: random first evaluations, encodings, candidates."""

    params = {"initial": 10, "candidates": 200}

    def __init__(self, space: TabularSpace, rng: np.random.Generator, **params: object):
        super().__init__(space, rng, **params)
        space.adapter.require("features", flow=f"optimizer {self.name!r}")
        if not (isinstance(self.initial, int) and self.initial >= 2):
            raise ValueError(f"optimizer {self.name!r}: initial must be an integer >= 2, got {self.initial!r}")
        if not (isinstance(self.candidates, int) and self.candidates >= 1):
            raise ValueError(f"optimizer {self.name!r}: candidates must be a positive integer, got {self.candidates!r}")
        self.history: list[Evaluation] = []
        self.scores: list[float | None] = []

    def _inputs(self, points: list[Point]) -> np.ndarray:
        return model_inputs(self.space, points)

    def _candidates(self, best_first: np.ndarray) -> list[Point]:
        """Five mutations of each of the five best evaluations (by ``best_first``), the rest random
        configurations. (Few mutations: a move inside a table costs a space's validity checks,
        ~1 ms for NB101, while a random table configuration is an index draw.)"""
        pool: dict[Point, None] = {}
        for i in best_first[:5]:
            for _ in range(5):
                pool[self._mutate_fresh(self.history[i].point)] = None
        wanted = min(max(self.candidates, 26), len(self.space) - len(self.seen))  # a small space runs out
        while len(pool) < wanted:
            pool[self._fresh(None)] = None
        return list(pool)

    def _standardised(self, candidates: list[Point]) -> tuple[np.ndarray, np.ndarray]:
        return standardised(self._inputs([ev.point for ev in self.history]), self._inputs(candidates))

    def _acquire(self) -> Point: ...

    def propose(self) -> Point:
        if len(self.history) < self.initial:
            return self._fresh(None)
        return self._acquire()

    def observe(self, evaluation: Evaluation, score: float | None) -> None:
        super().observe(evaluation, score)
        self.history.append(evaluation)
        self.scores.append(score)


class ExpectedImprovement(_ModelBased):
    """GP expected improvement of the scalar objective; see the module docstring."""

    name = "bo"
    cost_aware = False

    def _acquire(self) -> Point:
        if any(s is None for s in self.scores):
            raise ValueError(f"optimizer {self.name!r} needs a scalar objective value")
        y = -np.asarray(self.scores, dtype=float)  # minimised
        candidates = self._candidates(np.argsort(y))
        x, xc = self._standardised(candidates)
        mean, sd = gp_predict(x, y, xc)
        gain = expected_improvement(mean, sd, float(y.min()))
        if self.cost_aware:
            gain = gain / self._predicted_kwh(x, xc, candidates) ** self.cost_exponent
        return candidates[int(np.argmax(gain))]

    def _predicted_kwh(self, x: np.ndarray, xc: np.ndarray, candidates: list[Point]) -> np.ndarray:
        """:func:`predicted_kwh` (benchmarks/bench_energy_to_target.py swaps in the table's true
        energy to measure what a perfect energy model would save)."""
        return predicted_kwh(self.history, x, xc)


class CostAwareExpectedImprovement(ExpectedImprovement):
    """Expected improvement per predicted kWh; see the module docstring."""

    name = "ea-bo"
    params = {"initial": 10, "candidates": 200, "cost_exponent": 1.0}
    cost_aware = True
    uses_energy = True


class ParEgo(_ModelBased):
    """ParEGO on (accuracy, energy); see the module docstring."""

    name = "parego"
    multi_objective = True
    uses_energy = True
    params = {"initial": 10, "candidates": 200, "rho": 0.05}

    def _acquire(self) -> Point:
        lam = self.rng.random()
        weights = np.array([lam, 1.0 - lam])
        objectives = np.array([(1.0 - ev.val_acc, np.log(ev.train_energy_kwh)) for ev in self.history])
        lo, hi = objectives.min(0), objectives.max(0)
        scaled = (objectives - lo) / np.where(hi > lo, hi - lo, 1.0)
        y = (weights * scaled).max(1) + self.rho * (weights * scaled).sum(1)
        candidates = self._candidates(np.argsort(y))
        x, xc = self._standardised(candidates)
        mean, sd = gp_predict(x, y, xc)
        return candidates[int(np.argmax(expected_improvement(mean, sd, float(y.min()))))]


class EnergyAwareEvolution(RegularizedEvolution):
    """Regularized evolution that trains the cheapest of a few proposals, its children screened
    at the lowest budget: see the module docstring."""

    name = "ea-evolution"
    params = {"population_size": 10, "sample_size": 3, "candidates": 4, "eta": 3}
    uses_energy = True

    def __init__(self, space: TabularSpace, rng: np.random.Generator, **params: object):
        super().__init__(space, rng, **params)
        space.adapter.require("features", flow=f"optimizer {self.name!r}")
        if not (isinstance(self.candidates, int) and self.candidates >= 1):
            raise ValueError(f"optimizer {self.name!r}: candidates must be a positive integer, got {self.candidates!r}")
        self.history: list[Evaluation] = []

    def propose(self) -> Point:
        if self.promotions:
            return self.promotions.pop(0)
        parent = self._tournament()
        first = self._child(parent)
        if len(self.history) < 5 or self.candidates == 1:
            return first
        options = {first: None}
        for _ in range(self.candidates - 1):
            p = self._child(parent)
            if p.epochs == first.epochs:  # a budget move is the space's choice; compare like with like
                options[p] = None
        if len(options) == 1:
            return first
        candidates = list(options)
        x, xc = standardised(model_inputs(self.space, [ev.point for ev in self.history]),
                             model_inputs(self.space, candidates))
        return candidates[int(np.argmin(predicted_kwh(self.history, x, xc)))]

    def observe(self, evaluation: Evaluation, score: float | None) -> None:
        super().observe(evaluation, score)
        self.history.append(evaluation)
