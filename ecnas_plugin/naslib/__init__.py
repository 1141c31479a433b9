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

__all__ = ["install", "uninstall", "installed", "NaslibUnavailable", "PatchPointMissing"]


def __getattr__(name: str):
    if name == "PatchPointMissing":  # defined next to the patch points (hooks.py imports more)
        from ecnas_plugin.naslib.hooks import PatchPointMissing

        return PatchPointMissing
    raise AttributeError(name)


def install() -> None:
    """Apply the compatibility shims and wrap NASLib's classes; idempotent, all or nothing.

    Raises :class:`NaslibUnavailable` (naming what is missing, with install steps) without NASLib,
    and :class:`PatchPointMissing` (naming the NASLib attribute) when NASLib lacks or renamed
    something the bridge wraps or needs (``hooks.patch_points()``). Whatever fails, nothing is
    left patched: wrappers already applied are removed and the shims reverted.
    """
    from ecnas_plugin.naslib import compat, hooks

    require_naslib()
    try:
        compat.apply()
        hooks.patch()  # returns at once when already patched
    except BaseException:
        hooks.unpatch()
        compat.revert()
        raise


def uninstall() -> None:
    """Undo :func:`install`: every wrapped NASLib attribute is restored as it was, and every runtime
    shim is reverted (``compat.revert``: NASLib then behaves as it does upstream on this Python)."""
    from ecnas_plugin.naslib import compat, hooks

    hooks.unpatch()
    compat.revert()


def installed() -> bool:
    """Whether NASLib's classes are currently wrapped."""
    from ecnas_plugin.naslib import hooks

    return hooks.is_patched()
