"""Comparative studies: a grid of searches from one YAML config to figures and an HTML report.

    from ecnas_plugin.study import load_study, run_study, write_report
    out = run_study(load_study("configs/studies/quickstart.yaml"))
    write_report(out)
"""

from .config import ConfigError, RunSpec, Study, load_study, parse_study
from .report import write_report
from .runner import load_runs, run_study

__all__ = ["ConfigError", "RunSpec", "Study", "load_runs", "load_study", "parse_study", "run_study", "write_report"]
