"""The NASLib bridge: ``energy: True`` in a NASLib config makes NASLib's own optimizers energy-aware.

Activation (none of these import NASLib before they are called)::

    import ecnas_plugin.naslib as bridge
    bridge.install()      # runtime shims, then class-level wrappers on NASLib (reversible)
    ...                   # NASLib as usual; energy applies to runs whose config turns it on
    bridge.uninstall()    # NASLib exactly as before

or ``ecnas naslib run --config-file F`` (:func:`ecnas_plugin.naslib.runner.run`), or the lazy
import hook (``ecnas_plugin/naslib/_autoload.py``) that installs the bridge when a process first
imports NASLib; ``ECNAS_NASLIB_HOOK=0`` turns the hook off.
"""

from __future__ import annotations

from ecnas_plugin.naslib.compat import NaslibUnavailable, require_naslib

__all__ = ["install", "uninstall", "installed", "NaslibUnavailable"]


def install() -> None:
    """Apply the compatibility shims and wrap NASLib's classes; idempotent.

    Raises :class:`NaslibUnavailable` (naming what is missing, with install steps) without NASLib.
    """
    from ecnas_plugin.naslib import compat, hooks

    require_naslib()
    compat.apply()
    hooks.patch()


def uninstall() -> None:
    """Undo :func:`install`: every wrapped NASLib attribute is restored as it was."""
    from ecnas_plugin.naslib import hooks

    hooks.unpatch()


def installed() -> bool:
    """Whether NASLib's classes are currently wrapped."""
    from ecnas_plugin.naslib import hooks

    return hooks.is_patched()
