"""One search run: drive an optimizer under a budget and record every evaluation.

Search energy is counted as EA-HAS-Bench does: the summed training energy of every architecture
the search evaluated, every epoch trained counted, also for configurations stopped early.
Continuing a configuration to a later budget of the same training run (the space's
``run_of``: where the data has the run's curve) is charged only the extra epochs, and reading an
earlier checkpoint of a run already trained further costs nothing. A budget in kWh stops the
search once that sum exceeds it (the evaluation that crosses the budget is the last one, and is
recorded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecnas_plugin.objectives import SearchBudget

from .optimizers import Optimizer, ScalarObjective
from .space import TabularSpace

# ``config`` is the space's own text form of the configuration (SearchSpace.describe: NB101
# ``ADJ:OPS``, NB201 the arch string, ...); ``epochs`` the budget it was trained to.
TRACE_COLUMNS = (
    "evaluation", "arch_key", "config", "epochs", "repeat",
    "val_acc", "test_acc", "train_energy_kwh", "charged_energy_kwh", "train_time_s", "source",
    "true_val_acc", "true_test_acc", "true_energy_kwh",
    "objective", "search_energy_kwh",
    "best_val_acc", "best_true_test_acc", "best_true_energy_kwh",
)


@dataclass(frozen=True)
class Budget:
    """Stop after ``evaluations`` trained architectures or once search energy exceeds ``search_kwh``."""

    evaluations: int | None = None
    search_kwh: float | None = None

    def __post_init__(self) -> None:
        if (self.evaluations is None) == (self.search_kwh is None):
            raise ValueError("a budget is either a number of evaluations or search kWh, exactly one of them")
        if self.evaluations is not None and (not isinstance(self.evaluations, int) or self.evaluations < 1):
            raise ValueError(f"budget evaluations must be a positive integer, got {self.evaluations!r}")
        if self.search_kwh is not None and not (isinstance(self.search_kwh, (int, float)) and self.search_kwh > 0):
            raise ValueError(f"budget search_kwh must be a positive number, got {self.search_kwh!r}")

    @property
    def label(self) -> str:
        return f"{self.evaluations}evals" if self.evaluations is not None else f"{self.search_kwh:g}kWh"


def run_search(space: TabularSpace, optimizer: Optimizer, budget: Budget,
               objective: ScalarObjective | None, rng: np.random.Generator) -> pd.DataFrame:
    """Run ``optimizer`` on ``space`` until ``budget`` is spent; one trace row per evaluation.

    ``objective`` scores each evaluation from its observed accuracy and energy (None for a
    multi-objective optimizer; the trace's ``objective`` column is then NaN). ``best_*`` columns
    follow the accuracy incumbent (highest observed validation accuracy so far), whatever the
    objective, so runs with different objectives compare on the accuracy they found. The search
    also ends when every point of the space has been evaluated.
    """
    if optimizer.multi_objective != (objective is None):
        raise ValueError(f"optimizer {optimizer.name!r} "
                         + ("takes no scalar objective" if optimizer.multi_objective else "needs a scalar objective"))
    rows: list[tuple] = []
    account = SearchBudget(budget.search_kwh)  # the search-energy accounting the NASLib bridge uses too
    limit = len(space) if budget.evaluations is None else min(budget.evaluations, len(space))
    paid: dict[object, tuple[float, int]] = {}  # training run -> (energy paid up to, its repeat)
    best = None
    while not account.exhausted and account.evaluations < limit:
        point = optimizer.propose()
        run = space.run_of(point)
        before = paid.get(run)
        if before is None:
            ev = space.evaluate(point, rng)
            paid[run] = (ev.train_energy_kwh, ev.repeat)
        else:  # the same run, continued (or an earlier checkpoint of it read back): pay the extra epochs only
            ev = space.evaluate(point, rng, repeat=before[1])
            ev = ev._replace(charged_kwh=max(0.0, ev.train_energy_kwh - before[0]))
            paid[run] = (max(ev.train_energy_kwh, before[0]), before[1])
        score = None if objective is None else float(objective(ev.val_acc, ev.train_energy_kwh))
        optimizer.observe(ev, score)
        spent = account.charge(ev.cost_kwh)
        if best is None or ev.val_acc > best.val_acc:
            best = ev
        rows.append((len(rows) + 1, ev.key, ev.config, ev.point.epochs, ev.repeat,
                     ev.val_acc, ev.test_acc, ev.train_energy_kwh, ev.cost_kwh, ev.train_time_s, ev.source,
                     ev.true_val_acc, ev.true_test_acc, ev.true_energy_kwh,
                     np.nan if score is None else score, spent,
                     best.val_acc, best.true_test_acc, best.true_energy_kwh))
    return pd.DataFrame(rows, columns=list(TRACE_COLUMNS))
