"""The plugin host: built-in plugins, then third-party ones, all through entry points.

Built-ins are entry points of the ``ecnas-plugin`` distribution itself, in the same
``ecnas_plugin`` group third-party packages use, so the project walks the plugin path it offers.
``ECNAS_PLUGINS`` (comma-separated entry-point names) restricts which third-party plugins load;
set it empty to load none. Built-ins always load.

A plugin that fails to import, implements an unknown hook, raises from a hook (``SystemExit``
included: a plugin's ``sys.exit`` must not end every ``ecnas`` command), returns the wrong thing,
or registers a name already taken is reported (distribution + entry point + reason) and skipped;
everything else keeps working.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from . import hookspecs
from .adapters.base import SearchSpace
from .errors import UnknownName

GROUP = "ecnas_plugin"
DISTRIBUTION = "ecnas-plugin"
ENV_ALLOWED = "ECNAS_PLUGINS"


def _normalise(dist_name: str) -> str:
    return dist_name.lower().replace("_", "-").replace(".", "-")


@dataclass
class PluginInfo:
    """One entry point: where it came from, what it provides, and what went wrong with it."""

    entry_point: str
    distribution: str
    value: str
    builtin: bool
    provides: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    loaded: bool = False

    @property
    def label(self) -> str:
        return f"{self.distribution}:{self.entry_point}"


def _kinds() -> dict[str, tuple[str, Callable[[object], bool], str]]:
    """Collector hooks: hook name → (kind shown to users, item check, expected type name)."""
    from .datasets import DataFile
    from .energy.meters.base import Meter
    from .energy.surrogates.base import CurveSurrogate, Surrogate
    from .table import TableSpec

    def subclass_of(base):
        return lambda x: isinstance(x, type) and issubclass(x, base)

    return {
        "ecnas_search_spaces": ("spaces", lambda x: isinstance(x, SearchSpace), "SearchSpace"),
        "ecnas_tables": ("tables", lambda x: isinstance(x, TableSpec), "TableSpec"),
        "ecnas_data_files": ("data files", lambda x: isinstance(x, DataFile), "DataFile"),
        "ecnas_meters": ("meters", subclass_of(Meter), "Meter subclass"),
        "ecnas_surrogates": ("surrogates", subclass_of(Surrogate), "Surrogate subclass"),
        "ecnas_curve_surrogates": ("curve surrogates", subclass_of(CurveSurrogate), "CurveSurrogate subclass"),
    }


class Registry:
    """Loaded plugins and what they provide, by kind and name."""

    def __init__(self, eps: list[EntryPoint] | None = None, allowed: str | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.items: dict[str, dict[str, object]] = {}
        self._owner: dict[tuple[str, str], PluginInfo] = {}
        if eps is None:
            eps = list(entry_points(group=GROUP))
        if allowed is None:
            allowed = os.environ.get(ENV_ALLOWED)
        self._load(eps, allowed)
        self._collect()

    # -------------------------------------------------------------- loading
    def _load(self, eps: list[EntryPoint], allowed: str | None) -> None:
        wanted = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
        infos = []
        for ep in eps:
            dist = ep.dist.name if ep.dist is not None else "unknown-distribution"
            builtin = _normalise(dist) == DISTRIBUTION
            infos.append((ep, PluginInfo(ep.name, dist, ep.value, builtin)))
        infos.sort(key=lambda pair: (not pair[1].builtin, pair[1].distribution, pair[1].entry_point))
        for ep, info in infos:
            if not info.builtin and wanted is not None and ep.name not in wanted:
                continue
            self.plugins.append(info)
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # a plugin calling sys.exit must not end the host
                info.errors.append(f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
                continue
            try:
                self.pm.register(plugin, name=info.label)
            except Exception as exc:  # pluggy.PluginValidationError, or a name registered twice
                info.errors.append(f"rejected by the plugin manager: {exc}")
                continue
            unknown = sorted(h.name for h in (self.pm.get_hookcallers(plugin) or []) if not h.has_spec())
            if unknown:
                self.pm.unregister(plugin)
                info.errors.append(f"implements unknown hook(s) {unknown}; known hooks: "
                                   f"{sorted(n for n in dir(hookspecs) if n.startswith('ecnas_'))}")
                continue
            info.loaded = True

    def _collect(self) -> None:
        from .datasets import PLAIN_NAME

        by_label = {p.label: p for p in self.plugins}
        for hook_name, (kind, check, type_name) in _kinds().items():
            found = self.items.setdefault(kind, {})
            caller = getattr(self.pm.hook, hook_name)
            # get_hookimpls() is in registration order: built-ins first, so they keep their names.
            for impl in caller.get_hookimpls():
                info = by_label[self.pm.get_name(impl.plugin)]
                try:
                    result = impl.function()
                except (Exception, SystemExit) as exc:
                    last = traceback.extract_tb(exc.__traceback__)[-1]
                    info.errors.append(f"{hook_name} raised {type(exc).__name__}: {exc} "
                                       f"({last.filename}:{last.lineno})")
                    continue
                if not isinstance(result, (list, tuple)):
                    info.errors.append(f"{hook_name} must return a list of {type_name}, got {type(result).__name__}")
                    continue
                for item in result:
                    if not check(item):
                        info.errors.append(f"{hook_name} returned {item!r}, not a {type_name}")
                        continue
                    name = item.name  # type: ignore[attr-defined]
                    if kind in ("spaces", "tables") and not (isinstance(name, str) and PLAIN_NAME.fullmatch(name)):
                        # these names become folders (cache/tables/<name>, user-<space>): never a path
                        info.errors.append(f"registers {kind[:-1]} {name!r}: a name must be plain (letters, "
                                           "digits, '.', '_', '-'; no path); this one is ignored")
                        continue
                    owner = self._owner.get((kind, name))
                    if owner is not None:
                        info.errors.append(f"registers {kind[:-1]} {name!r}, already registered by {owner.label}; "
                                           f"this one is ignored")
                        continue
                    found[name] = item
                    self._owner[(kind, name)] = info
                    info.provides.setdefault(kind, []).append(name)

    # -------------------------------------------------------------- lookups
    def get(self, kind: str, name: str):
        """The item of ``kind`` ("spaces", "tables", "data files") called ``name``."""
        try:
            return self.items[kind][name]
        except KeyError:
            raise UnknownName(kind[:-1], name, self.items.get(kind, {}).keys()) from None

    def space(self, name: str) -> SearchSpace:
        return self.get("spaces", name)

    def table_spec(self, name: str):
        return self.get("tables", name)

    def data_file(self, name: str):
        return self.get("data files", name)

    def owner(self, kind: str, name: str) -> PluginInfo:
        self.get(kind, name)
        return self._owner[(kind, name)]

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.errors]


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the loaded registry (the next ``get_registry`` loads the plugins again)."""
    global _REGISTRY
    _REGISTRY = None
