"""``ecnas naslib run``: NASLib's own NAS runner (runners/nas/runner.py) with the bridge active.

Differences from NASLib's runner, all additive: the EC-NAS spaces ``ecnas-4v``/``ecnas-5v`` are
available as ``search_space`` (their ``dataset_api`` comes from the EC-NAS tables, no NASLib data
file needed), only the chosen optimizer is built, the ``energy`` section is validated before
anything runs, and a summary is printed at the end.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ecnas_plugin.errors import EcnasError

OPTIMIZERS = ("rs", "re", "ls", "bananas", "npenas", "bp")


def _optimizer(name: str, config: object) -> object:
    from naslib import optimizers as o

    classes = {"rs": o.RandomSearch, "re": o.RegularizedEvolution, "ls": o.LocalSearch,
               "bananas": o.Bananas, "npenas": o.Npenas, "bp": o.BasePredictor}
    if name not in classes:
        from ecnas_plugin.errors import UnknownName

        raise UnknownName("NASLib optimizer", name, classes)
    return classes[name](config)


def _search_space(name: str, dataset: str, epochs: int | None) -> tuple[object, dict]:
    from ecnas_plugin.naslib import spaces, subspace

    if name in spaces.SPACE_NAMES:
        return spaces.search_space(name), subspace.build_dataset_api(name, epochs=epochs)
    from naslib.search_spaces import get_search_space
    from naslib.utils import get_dataset_api

    return get_search_space(name, dataset), get_dataset_api(name, dataset)


def load_config(config_file: str, argv: list[str]) -> object:
    """NASLib's config loading (``utils.get_config_from_args``) for ``--config-file`` plus overrides."""
    from naslib import utils

    args = utils.parse_args(args=["--config-file", config_file, *argv])
    return utils.get_config_from_args(args, config_type="nas")


def search(config: object) -> dict:
    """One NASLib search + evaluation, as NASLib's runner does it; returns a small summary."""
    from naslib import utils
    from naslib.defaults.trainer import Trainer

    from ecnas_plugin.naslib.config import energy_of_config
    from ecnas_plugin.naslib.trace import FRONT_FILE

    energy = energy_of_config(config)
    optimizer = _optimizer(config.optimizer, config)
    space, dataset_api = _search_space(config.search_space, config.dataset, energy.epochs if energy else None)
    utils.set_seed(config.seed)
    optimizer.adapt_search_space(space, dataset_api=dataset_api)
    trainer = Trainer(optimizer, config, lightweight_output=True)
    trainer.search(resume_from="")
    test_acc = trainer.evaluate(resume_from="", dataset_api=dataset_api)
    summary = {"save": str(config.save), "test_accuracy": test_acc,
               "valid_accuracy": trainer.search_trajectory.valid_acc[-1] if trainer.search_trajectory.valid_acc else None}
    front = Path(config.save) / FRONT_FILE
    if energy is not None and front.exists():
        data = json.loads(front.read_text())
        summary.update({k: data[k] for k in ("hypervolume_val", "search_energy_kwh", "evaluations",
                                             "stopped_by_budget", "energy_sources")})
    return summary


def run(config_file: str, argv: list[str]) -> int:
    """CLI entry: run the NASLib search in ``config_file`` (``argv``: NASLib's ``key value`` overrides).

    Returns 0 on success, 2 when NASLib is missing or the config is invalid (message on stderr).
    """
    from ecnas_plugin import naslib as bridge

    try:
        bridge.install()
    except bridge.NaslibUnavailable as exc:
        print(f"ecnas naslib run: {exc}", file=sys.stderr)
        return 2
    from naslib.utils import setup_logger

    from ecnas_plugin.naslib.config import energy_of_config

    try:
        config = load_config(config_file, argv)
        energy_of_config(config)  # validate before anything runs
        logger = setup_logger(config.save + "/log.log")
        logger.setLevel(logging.INFO)
        summary = search(config)
    except EcnasError as exc:
        print(f"ecnas naslib run: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0
