"""Lazy activation of the NASLib bridge inside unmodified NASLib scripts.

Loaded at interpreter start by the one-line ``ecnas_plugin_naslib.pth`` (next to this file),
once a user opts in with ``ecnas naslib autoload on`` (which copies it into site-packages). It must cost nothing until NASLib is imported, so it
imports nothing of ecnas_plugin: it only puts a finder on ``sys.meta_path``. When a process first
imports the top-level ``naslib`` package, the finder applies the compatibility shims *before*
NASLib's code runs, and wraps NASLib's classes (``ecnas_plugin.naslib.install``) right after
``naslib/__init__.py`` has run. With energy off in a config, the wrappers change nothing.

Switch: ``ECNAS_NASLIB_HOOK=0`` in the environment disables the hook (checked by the .pth line).
"""

import sys


class _NaslibHook:
    """A meta-path finder that only reacts to the top-level ``naslib`` import, once."""

    def find_spec(self, name, path=None, target=None):
        if name != "naslib":
            return None
        sys.meta_path.remove(self)  # one shot; also avoids recursion below
        import importlib.util

        spec = importlib.util.find_spec("naslib")
        if spec is None or spec.loader is None:
            return spec
        from ecnas_plugin.naslib import compat

        compat.apply()
        exec_module = spec.loader.exec_module

        def exec_and_install(module):
            exec_module(module)
            from ecnas_plugin import naslib as bridge

            bridge.install()

        spec.loader.exec_module = exec_and_install  # type: ignore[method-assign]
        return spec


if not any(type(f).__name__ == "_NaslibHook" for f in sys.meta_path):
    sys.meta_path.insert(0, _NaslibHook())
