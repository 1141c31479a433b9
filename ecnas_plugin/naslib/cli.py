"""`ecnas naslib run | autoload`: NASLib's runner with the bridge, and the opt-in import hook."""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path

PTH_NAME = "ecnas_plugin_naslib.pth"
PTH_SOURCE = Path(__file__).with_name(PTH_NAME)


def site_packages() -> Path:
    """Where a .pth file is read at interpreter start (this interpreter's purelib)."""
    return Path(sysconfig.get_paths()["purelib"])


def set_autoload(enabled: bool, target: Path | None = None) -> Path:
    """Install (or remove) the one-line .pth that activates the bridge when NASLib is imported.

    It is opt-in because a .pth runs in every Python process of the environment; it imports
    nothing until ``naslib`` itself is imported, and ``ECNAS_NASLIB_HOOK=0`` disables it per process.
    """
    path = (target or site_packages()) / PTH_NAME
    if enabled:
        path.write_text(PTH_SOURCE.read_text())
    else:
        path.unlink(missing_ok=True)
    return path


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import run

    return run(str(args.config_file), args.overrides)


def _cmd_autoload(args: argparse.Namespace) -> int:
    if args.state == "status":
        path = site_packages() / PTH_NAME
        print(f"{'on' if path.exists() else 'off'} ({path})")
        return 0
    path = set_autoload(args.state == "on")
    print(f"autoload {args.state}: {path}")
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("naslib", help="run NASLib searches with energy as an objective")
    sub = p.add_subparsers(dest="naslib_command", required=True)
    r = sub.add_parser("run", help="NASLib's NAS runner with the bridge active")
    r.add_argument("--config-file", required=True, type=Path, help="a NASLib config, e.g. configs/naslib/*.yaml")
    r.add_argument("overrides", nargs=argparse.REMAINDER, help="NASLib's `key value` overrides")
    r.set_defaults(func=_cmd_run)
    a = sub.add_parser("autoload", help="activate the bridge inside unmodified NASLib scripts (a .pth hook)")
    a.add_argument("state", choices=("on", "off", "status"))
    a.set_defaults(func=_cmd_autoload)
