"""Multi-fidelity optimizers: Hyperband over a space's epoch budgets, with brackets in epochs or in kWh.

The rungs of successive halving are the space's budgets (``TabularSpace.budgets``, e.g. EC-NAS 4V's
4, 12, 36, 108 or the joint table's 1, 3, 10 read from its 10-epoch curves). A bracket starts ``n``
configurations at a rung, keeps the best ``1/eta`` and promotes them to the next budget until the
last (Li et al. 2018); Hyperband cycles through brackets that start at every rung. A promotion is
an ordinary point, (configuration, next budget): where the space's data has the run's curve
(``TabularSpace.run_of``) the search pays only the extra epochs (``search.run``), elsewhere the
whole run. With a single budget a bracket is one rung and the search is random.

- ``hyperband``: brackets in epochs (Li et al.'s sizes), promotion by the scalar objective. With
  the plain accuracy objective it is the energy-blind baseline.
- ``ea-hyperband``: brackets in kWh of search energy (EA-HAS-Bench's accounting). Every bracket
  gets the same energy; it admits configurations at its first rung while the projected energy of
  the bracket (every admitted configuration's first rung plus the promotions they imply, each
  rung priced at the mean energy observed so far, continuations at their extra epochs) fits it.
  So a bracket admits more configurations where they are cheap, fewer where promotions cost whole
  runs, and never more than its energy. Promotion by the scalar objective (e.g. ``soft``).
- ``mo-hyperband``: the multi-objective variant (SH-EMOA-like): brackets in kWh, promotion by
  non-dominated sorting of (accuracy, energy) with the smallest hypervolume contribution dropped
  first (SMS-EMOA's rule, :func:`~ecnas_plugin.search.optimizers.worst_member`).
"""

from __future__ import annotations

import math
import numpy as np

from .optimizers import Optimizer, worst_member
from .space import Evaluation, Point, TabularSpace


class Hyperband(Optimizer):
    """Hyperband over the space's budgets; brackets in epochs. See the module docstring."""

    name = "hyperband"
    params = {"eta": 3}

    def __init__(self, space: TabularSpace, rng: np.random.Generator, **params: object):
        super().__init__(space, rng, **params)
        if not (isinstance(self.eta, int) and self.eta >= 2):
            raise ValueError(f"optimizer {self.name!r}: eta must be an integer >= 2, got {self.eta!r}")
        self.budgets = space.budgets
        self.top = len(self.budgets) - 1  # s_max: the most exploratory bracket starts at rung 0
        self.bracket = -1  # brackets run s = top, top - 1, ..., 0, then again
        self.observed_kwh: dict[int, list[float]] = {b: [] for b in self.budgets}  # energy to each budget
        self._start_bracket()

    # ------------------------------------------------------------------ bracket bookkeeping
    def _start_bracket(self) -> None:
        self.bracket += 1
        s = self.top - self.bracket % (self.top + 1)
        self.rung = self.top - s  # index into budgets
        self.first_rung = self.rung
        self.size = self._bracket_size(s)  # configurations at the first rung (None: decided as they come)
        self.queue: list[Point] = []  # promotions waiting to be proposed
        self.results: list[tuple[Evaluation, float | None]] = []
        self.asked = 0  # proposed at this rung
        self.closed = False  # the first rung takes no more configurations
        self.used: set[str] = set()  # configurations this bracket has started

    def _bracket_size(self, s: int) -> int | None:
        return math.ceil((self.top + 1) / (s + 1) * self.eta ** s)

    def _admit(self) -> bool:
        """Whether the first rung takes another new configuration."""
        return self.asked < self.size

    def _rung_sizes(self, n: int) -> list[int]:
        """Configurations at each rung of a bracket that starts ``n`` (at least one at each)."""
        return [max(1, n // self.eta ** i) for i in range(len(self.budgets) - self.first_rung)]

    def propose(self) -> Point:
        empty = 0  # brackets in a row that found no configuration to start: the space is used up
        while True:
            if self.queue:
                self.asked += 1
                return self.queue.pop(0)
            if self.rung == self.first_rung and not self.closed and self._admit():
                point = self._new_config(self.budgets[self.rung])
                if point is not None:
                    self.asked += 1
                    return point
                self.closed = True  # nothing new left at this budget: the rung is what it has
                empty += not self.results
                if empty > len(self.budgets):
                    return self._fresh(None)  # any point not evaluated yet, as long as there is one
            if len(self.results) < self.asked:
                raise RuntimeError(f"optimizer {self.name!r} is sequential: tell each proposed point's result "
                                   "before asking for the next")
            self._next_rung()

    def _next_rung(self) -> None:
        if self.rung == len(self.budgets) - 1 or not self.results:
            self._start_bracket()
            return
        keep = max(1, len(self.results) // self.eta)
        chosen = self._promote([ev for ev, _ in self.results], [s for _, s in self.results], keep)
        self.rung += 1
        budget = self.budgets[self.rung]
        self.queue = [Point(ev.key, budget) for ev in chosen if Point(ev.key, budget) not in self.seen]
        self.results, self.asked = [], 0
        if not self.queue:  # every promotion already evaluated by an earlier bracket: next bracket
            self._start_bracket()

    def _promote(self, evaluations: list[Evaluation], scores: list[float | None], keep: int) -> list[Evaluation]:
        if any(s is None for s in scores):
            raise ValueError(f"optimizer {self.name!r} needs a scalar objective value")
        order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
        return [evaluations[i] for i in order[:keep]]

    def _new_config(self, budget: int) -> Point | None:
        """A configuration neither this bracket nor anything before evaluated at ``budget`` (None
        when 1000 draws find none: the budget is as good as used up)."""
        for _ in range(1000):
            if len(self.seen) >= len(self.space):
                return None
            p = Point(self.space.sample(self.rng, exclude=self.seen).key, budget)
            if p not in self.seen and p.key not in self.used:
                self.used.add(p.key)
                return p
        return None

    def observe(self, evaluation: Evaluation, score: float | None) -> None:
        super().observe(evaluation, score)
        self.observed_kwh.setdefault(evaluation.point.epochs, []).append(evaluation.train_energy_kwh)
        if evaluation.point.epochs == self.budgets[self.rung]:
            self.results.append((evaluation, score))


class EnergyHyperband(Hyperband):
    """Hyperband with brackets in kWh of search energy; see the module docstring."""

    name = "ea-hyperband"
    params = {"eta": 3, "bracket_kwh": None}
    uses_energy = True

    def _bracket_size(self, s: int) -> int | None:
        self.allotment = None if self.bracket_kwh is None else float(self.bracket_kwh)
        if self.allotment is not None and not self.allotment > 0:
            raise ValueError(f"optimizer {self.name!r}: bracket_kwh must be > 0, got {self.bracket_kwh!r}")
        return None

    def _energy_to(self, budget: int) -> float | None:
        """Mean energy observed to train a configuration to ``budget`` from scratch (scaled by
        epochs from the nearest budget observed, where this one has none yet; None before any)."""
        seen = self.observed_kwh.get(budget)
        if seen:
            return float(np.mean(seen))
        known = [(b, float(np.mean(v))) for b, v in self.observed_kwh.items() if v]
        if not known:
            return None
        b, e = min(known, key=lambda be: abs(math.log(be[0] / budget)))
        return e * budget / b

    def _projected_kwh(self, n: int) -> float | None:
        """Energy of a bracket that starts ``n`` configurations, as priced by what was observed."""
        total = 0.0
        rungs = self.budgets[self.first_rung:]
        for i, count in enumerate(self._rung_sizes(n)):
            to = self._energy_to(rungs[i])
            if to is None:
                return None
            if i > 0 and self.space.same_run(rungs[i - 1], rungs[i]):
                to -= self._energy_to(rungs[i - 1])  # a continuation pays the extra epochs only
            total += count * to
        return total

    def _admit(self) -> bool:
        if self.asked == 0:
            return True
        if self.allotment is None:
            # Hyperband's bracket: (s_max + 1) runs at the top budget, here in kWh.
            top = self._energy_to(self.budgets[-1])
            if top is None:  # nothing observed yet to price the bracket with
                return True
            self.allotment = (self.top + 1) * top
        projected = self._projected_kwh(self.asked + 1)
        return projected is not None and projected <= self.allotment


class MultiObjectiveHyperband(EnergyHyperband):
    """Hyperband in kWh promoting by non-dominated sorting and hypervolume contribution (SH-EMOA-like)."""

    name = "mo-hyperband"
    multi_objective = True
    uses_energy = True

    def _promote(self, evaluations: list[Evaluation], scores: list[float | None], keep: int) -> list[Evaluation]:
        points = np.array([(1.0 - ev.val_acc, ev.train_energy_kwh) for ev in evaluations], dtype=float)
        alive = list(range(len(evaluations)))
        while len(alive) > keep:  # drop the worst front's smallest contributor, one at a time
            alive.pop(worst_member(points[alive]))
        return [evaluations[i] for i in alive]
