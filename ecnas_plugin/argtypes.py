"""Argument types shared by every `ecnas` command: a bad value is argparse's one-line error naming
the argument (exit 2), never a traceback from deep inside a run."""

from __future__ import annotations

import argparse
import math


def name_int():
    """``NAME=INT`` pairs (``--network C=16``, ``--limit max_vertices=5``)."""
    def parse(item: str) -> tuple[str, int]:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.strip().lstrip("-").isdigit():
            raise argparse.ArgumentTypeError(f"takes NAME=INT pairs, got {item!r}")
        return name.strip(), int(value)
    parse.__name__ = "NAME=INT"
    return parse


def int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def float_at_least(low: float, strict: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or not (value > low if strict else value >= low):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} {low:g}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


def fraction(open_low: bool = True, open_high: bool = True):
    """A number in (0, 1) (ends included where not open)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low_ok = value > 0 if open_low else value >= 0
        high_ok = value < 1 if open_high else value <= 1
        if not (math.isfinite(value) and low_ok and high_ok):
            ends = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
            raise argparse.ArgumentTypeError(f"must be a fraction in {ends}, got {text}")
        return value
    parse.__name__ = "fraction"
    return parse


class OneLineParser(argparse.ArgumentParser):
    """Parse errors as one line naming the argument (exit 2), without the long usage block; the
    `ecnas` parser and every subcommand's (argparse gives subparsers their parent's class)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
