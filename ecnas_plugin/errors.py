"""Every error the plugin raises on purpose. Each one names the bad thing."""

from __future__ import annotations

from collections.abc import Iterable


class EcnasError(Exception):
    """Base class: catch this to handle any error the plugin raises deliberately."""


class InvalidArchitecture(EcnasError, ValueError):
    """An architecture breaks a rule of its search space; ``rule`` says which one."""

    def __init__(self, rule: str, detail: str, arch: object = None):
        self.rule = rule
        self.arch = arch
        where = f" in {arch!r}" if arch is not None else ""
        super().__init__(f"invalid architecture ({rule}){where}: {detail}")


class UnknownName(EcnasError, KeyError):
    """A name (table, space, dataset, epoch budget, architecture, ...) that does not exist."""

    def __init__(self, what: str, name: object, available: Iterable[object] = (), context: str = "",
                 limit: int = 20):
        self.what = what
        self.name = name
        self.available = sorted(available, key=_natural)
        shown = ", ".join(str(a) for a in self.available[:limit])
        more = len(self.available) - limit
        if more > 0:
            shown += f", ... ({more} more)"
        msg = f"unknown {what} {name!r}" + (f" {context}" if context else "")
        if self.available:
            msg += f"; available: {shown}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would print the message quoted
        return self.args[0]


def _natural(value: object) -> tuple:
    """Numbers in numeric order, before text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


class DataFormatError(EcnasError, ValueError):
    """An input file is truncated or corrupt; names the file, the byte offset and the reason."""

    def __init__(self, path: object, offset: int | None, reason: str):
        self.path = path
        self.offset = offset
        self.reason = reason
        at = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{path}{at}: {reason}")


class SchemaError(EcnasError, ValueError):
    """A table breaks the schema; names the column and the first offending rows."""

    def __init__(self, message: str, column: str | None = None, rows: Iterable[object] = ()):
        self.column = column
        self.rows = list(rows)
        super().__init__(message)


class ChecksumError(EcnasError):
    """A downloaded or mirrored file does not match its registered sha256."""


class DataUnavailable(EcnasError, FileNotFoundError):
    """A data file is in none of the places looked at and may not (or cannot) be downloaded."""


class MeterError(EcnasError, RuntimeError):
    """A meter cannot run here or failed while running; the message names the file or library."""


class MeterConfigError(EcnasError, ValueError):
    """Meters were configured wrongly: overlapping components, a PUE below 1, a bad interval."""


class ConfigError(EcnasError, ValueError):
    """A bad value in a config file; ``key`` is its dotted name (e.g. ``energy.weight``)."""

    def __init__(self, key: str, detail: str, config: str = "config"):
        self.key = key
        super().__init__(f"{config} key {key!r}: {detail}")


class InvalidConfiguration(EcnasError, ValueError):
    """A hyperparameter or fidelity value breaks its dimension's rule; names the dimension."""

    def __init__(self, what: str, value: object, detail: str):
        self.what = what
        self.value = value
        super().__init__(f"invalid {what}: {value!r} {detail}")


class MissingCapability(EcnasError, LookupError):
    """A flow needs something a search space does not offer (a network builder, features, ...)."""

    def __init__(self, space: str, capability: str, flow: str):
        self.space = space
        self.capability = capability
        self.flow = flow
        super().__init__(f"search space {space!r} has no {capability!r} capability, which {flow} needs")

    def __str__(self) -> str:  # LookupError is fine, but keep the plain message
        return self.args[0]
