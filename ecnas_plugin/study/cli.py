"""`ecnas study run CONFIG` and `ecnas study report RUN_DIR`; hooked into ecnas_plugin.cli by the lead."""

from __future__ import annotations

import argparse
from pathlib import Path

from ecnas_plugin.argtypes import int_at_least


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import load_study
    from .report import write_report
    from .runner import run_study

    study = load_study(args.config)  # refuses bad names before anything runs
    out = run_study(study, out_dir=args.out, executor=args.executor, workers=args.workers,
                    progress=not args.quiet)
    print(f"runs in {out}")
    if not args.no_report:
        print(f"report: {write_report(out)}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(f"report: {write_report(args.run_dir)}")
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``study run`` / ``study report`` to an ``ecnas`` subparsers object."""
    p = subparsers.add_parser("study", help="comparative studies: run a grid of searches, report on it")
    sub = p.add_subparsers(dest="study_command", required=True)
    r = sub.add_parser("run", help="run a study config (finished runs are kept), then write its report")
    r.add_argument("config", type=Path, help="study YAML, e.g. configs/studies/quickstart.yaml")
    r.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local process pool (default) or a Ray cluster ($RAY_ADDRESS)")
    r.add_argument("--workers", type=int_at_least(1), help="parallel runs (default: the config's workers, else 2)")
    r.add_argument("--out", type=Path, help="study folder (default: the config's output)")
    r.add_argument("--no-report", action="store_true", help="only run, do not write the report")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_run)
    r = sub.add_parser("report", help="write figures and report.html for a study folder")
    r.add_argument("run_dir", type=Path, help="the study folder `study run` wrote")
    r.set_defaults(func=_cmd_report)
    return p
