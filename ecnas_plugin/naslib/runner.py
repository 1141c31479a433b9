"""``ecnas naslib run``: NASLib's own NAS runner (runners/nas/runner.py) with the bridge active.

Differences from NASLib's runner, all additive: a registered energy table is available as
``search_space`` (its ``dataset_api`` comes from the table, no NASLib data file needed): any NB101
table (``ecnas-4v``, ``ecnas-5v``, ...) as a subspace of NASLib's NB101 space, and a table of a
space without a NASLib mapping that offers ``sample`` and ``neighbours`` (``nb201-joint-flowers17-cpu``)
through the bridge's own class (:mod:`ecnas_plugin.naslib.tabular`; RS, RE and LS only, the
others refused up front by :func:`ecnas_plugin.naslib.spaces.check_optimizer`). Only the chosen
optimizer is built, the ``energy`` section is checked against the registered spaces and tables
before NASLib loads any data (:func:`ecnas_plugin.naslib.spaces.plan`), and a summary is printed
at the end.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ecnas_plugin.errors import EcnasError, UnknownName
from ecnas_plugin.naslib.config import ConfigError, energy_of_config

OPTIMIZERS = ("rs", "re", "ls", "bananas", "npenas", "bp")


def _optimizer(name: str, config: object) -> object:
    from naslib import optimizers as o

    classes = {"rs": o.RandomSearch, "re": o.RegularizedEvolution, "ls": o.LocalSearch,
               "bananas": o.Bananas, "npenas": o.Npenas, "bp": o.BasePredictor}
    if name not in classes:
        from ecnas_plugin.errors import UnknownName

        raise UnknownName("NASLib optimizer", name, classes)
    return classes[name](config)


def _search_space(config: object) -> tuple[object, dict]:
    """The run's NASLib search space and ``dataset_api``; the ``energy`` section is checked first
    (:func:`ecnas_plugin.naslib.spaces.plan`), so a bad energy table is a named ConfigError, never
    a traceback from NASLib's data loading."""
    from ecnas_plugin.naslib import spaces, subspace, tabular

    name, dataset = config.search_space, config.dataset  # type: ignore[attr-defined]
    energy = energy_of_config(config)
    tgt = spaces.target(name)
    if tgt is not None and tgt.table is not None:  # a table served as a search space: no NASLib data file
        serve = tabular.build_dataset_api if tgt.serving == spaces.TABULAR else subspace.build_dataset_api
        try:
            api = serve(tgt.table, epochs=energy.epochs if energy else None)
        except UnknownName as exc:
            if exc.what != "epoch budget":
                raise ConfigError("search_space", f"table {tgt.table!r}: {exc}") from None
            raise ConfigError("energy.epochs", str(exc)) from None
        except EcnasError as exc:  # its data cannot be had here, or it cannot be served
            raise ConfigError("search_space", f"table {tgt.table!r} cannot be served as a search space: {exc}") from None
        served = api[tabular.SERVED_KEY]
        api[spaces.PLAN_KEY] = spaces.plan(config, tgt, served=served)
        return spaces.search_space(tgt.table, served=served), api
    if energy is not None:
        if tgt is None:
            raise ConfigError("search_space", f"energy is not available for NASLib space {name!r}: no registered "
                              "search space maps onto it (NASLib spaces: "
                              f"{', '.join(sorted(s.naslib.search_space for s in spaces.mapped_spaces()))}; "
                              f"tables served as spaces: {', '.join(spaces.servable_tables())})")
        checked = spaces.plan(config, tgt)  # before NASLib loads its data file
    from naslib.search_spaces import get_search_space
    from naslib.utils import get_dataset_api

    space, api = get_search_space(name, dataset), get_dataset_api(name, dataset)
    if energy is not None and isinstance(api, dict):
        api[spaces.PLAN_KEY] = checked
    return space, api


def load_config(config_file: str, argv: list[str]) -> object:
    """NASLib's config loading (``utils.get_config_from_args``) for ``--config-file`` plus overrides."""
    from naslib import utils

    args = utils.parse_args(args=["--config-file", config_file, *argv])
    return utils.get_config_from_args(args, config_type="nas")


def search(config: object) -> dict:
    """One NASLib search + evaluation, as NASLib's runner does it; returns a small summary."""
    from naslib import utils
    from naslib.defaults.trainer import Trainer

    from ecnas_plugin.naslib.trace import FRONT_FILE

    from ecnas_plugin.naslib import spaces

    energy = energy_of_config(config)
    spaces.check_search(config.search_space, [config.optimizer])  # before anything is built
    optimizer = _optimizer(config.optimizer, config)
    space, dataset_api = _search_space(config)
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
