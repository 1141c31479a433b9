"""Comparative studies: a grid of searches from one YAML config to figures and an HTML report.

    from ecnas_plugin.study import load_study, run_study, write_report
    out = run_study(load_study("configs/studies/quickstart.yaml"))
    write_report(out)
"""

__all__ = ["ConfigError", "RunSpec", "Study", "load_runs", "load_study", "parse_study", "run_study", "write_report"]

_WHERE = {"ConfigError": "config", "RunSpec": "config", "Study": "config", "load_study": "config",
          "parse_study": "config", "write_report": "report", "load_runs": "runner", "run_study": "runner"}


def __getattr__(name: str):
    # Loaded on first use: `ecnas --help` builds the study parser without pandas or the optimizers.
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
