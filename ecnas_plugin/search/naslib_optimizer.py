"""SMS-EMOA for NASLib users: the built-in multi-objective optimizer behind NASLib's optimizer interface.

NASLib is imported only when :func:`naslib_sms_emoa` is called (after
``ecnas_plugin.naslib.compat.apply()``, which lets NASLib import on Python >= 3.10). Use it on
an NB101 energy table served as a NASLib search space (``ecnas_plugin.naslib.spaces.search_space``
with ``ecnas_plugin.naslib.subspace.build_dataset_api``, any registered NB101 table with accuracies,
e.g. ``ecnas-4v``), whose ``dataset_api["nb101_data"]`` answers the training energy of a cell;
run it with the bridge's energy objective *off*: the optimizer handles accuracy and energy
itself, as two objectives.

    from ecnas_plugin.naslib import compat; compat.apply()
    optimizer = naslib_sms_emoa()(config)        # config: NASLib CfgNode (dataset, seed, search.population_size)
    optimizer.adapt_search_space(search_space, dataset_api=dataset_api)
    for epoch in range(config.search.epochs): optimizer.new_epoch(epoch)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ecnas_plugin.errors import EcnasError

from .optimizers import worst_member


def _energy_kwh(arch: object, dataset_api: dict | None) -> float:
    """Training energy of ``arch`` (mean over repeats) from a served table's ``dataset_api``."""
    from ecnas_plugin.naslib.spaces import key_of

    bench = (dataset_api or {}).get("nb101_data")
    if not hasattr(bench, "mean"):
        raise EcnasError("the multi-objective optimizer needs a dataset_api with energy per cell: build it with "
                         "ecnas_plugin.naslib.subspace.build_dataset_api(<an NB101 table name, e.g. 'ecnas-4v'>)")
    return float(bench.mean(key_of(arch))["train_energy_kwh"])


@lru_cache(maxsize=1)
def naslib_sms_emoa() -> type:
    """The NASLib ``MetaOptimizer`` subclass (built on first call; imports NASLib)."""
    import torch
    from naslib.optimizers.core.metaclasses import MetaOptimizer
    from naslib.search_spaces.core.query_metrics import Metric

    class SmsEmoaNaslib(MetaOptimizer):
        """Steady-state SMS-EMOA on (validation accuracy, training energy); see ``search.optimizers.SmsEmoa``."""

        using_step_function = False

        def __init__(self, config):
            super().__init__()
            self.config = config
            self.dataset = config.dataset
            self.population_size = int(config.search.get("population_size", 10))
            self.rng = np.random.default_rng(int(config.get("seed", 0)))
            self.history = torch.nn.ModuleList()  # every evaluated model: .arch, .accuracy, .energy_kwh
            self.population: list = []

        def adapt_search_space(self, search_space, scope: str | None = None, dataset_api: dict | None = None):
            if not getattr(search_space, "QUERYABLE", False):
                raise EcnasError("the multi-objective optimizer needs a queryable (tabular) search space")
            self.search_space = search_space.clone()
            self.scope = scope if scope else search_space.OPTIMIZER_SCOPE
            self.dataset_api = dataset_api

        def _points(self, models) -> np.ndarray:
            return np.array([(-m.accuracy, m.energy_kwh) for m in models], dtype=float)

        def new_epoch(self, epoch: int):
            model = torch.nn.Module()
            model.arch = self.search_space.clone()
            if len(self.population) < self.population_size:
                model.arch.sample_random_architecture(dataset_api=self.dataset_api)
            else:
                import moocore

                ranks = moocore.pareto_rank(self._points(self.population))
                i, j = self.rng.choice(len(self.population), size=2, replace=False)
                parent = self.population[i if ranks[i] <= ranks[j] else j]
                model.arch.mutate(parent.arch, dataset_api=self.dataset_api)
            model.accuracy = model.arch.query(Metric.VAL_ACCURACY, self.dataset, dataset_api=self.dataset_api)
            model.energy_kwh = _energy_kwh(model.arch, self.dataset_api)
            self.history.append(model)
            self.population.append(model)
            if len(self.population) > self.population_size:
                self.population.pop(worst_member(self._points(self.population)))

        def pareto_front(self) -> list:
            """Evaluated models on the (accuracy, energy) Pareto front."""
            from ecnas_plugin.objectives import pareto_mask

            models = list(self.history)
            mask = pareto_mask([m.accuracy / 100 for m in models], [m.energy_kwh for m in models])  # NASLib: %
            return [m for m, keep in zip(models, mask) if keep]

        def get_final_architecture(self):
            """The evaluated architecture with the highest validation accuracy (NASLib's incumbent)."""
            return max(self.history, key=lambda m: m.accuracy).arch

        def train_statistics(self, report_incumbent: bool = True):
            arch = self.get_final_architecture() if report_incumbent else self.history[-1].arch
            return tuple(arch.query(m, self.dataset, dataset_api=self.dataset_api) for m in
                         (Metric.TRAIN_ACCURACY, Metric.VAL_ACCURACY, Metric.TEST_ACCURACY, Metric.TRAIN_TIME))

        def test_statistics(self):
            return self.get_final_architecture().query(Metric.RAW, self.dataset, dataset_api=self.dataset_api)

        def get_op_optimizer(self):
            raise NotImplementedError

        def get_checkpointables(self):
            return {"model": self.history}

    return SmsEmoaNaslib
