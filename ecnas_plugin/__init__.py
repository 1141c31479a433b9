"""ecnas-plugin: energy consumption as a first-class objective in neural architecture search.

The public Python API::

    import ecnas_plugin as ep
    ep.list_tables()                         # what tables exist
    t = ep.load_table("ecnas-5v")            # EnergyTable (built once, then cached as parquet)
    ep.query("nasbench101", "e1aeb470572477cf15b1bd3644d59370", table="ecnas-5v")
"""

from .version import __version__

__all__ = ["__version__", "get_space", "list_tables", "load_table", "query"]


def __getattr__(name: str):
    # The API (and pandas with it) loads on first use, so `ecnas --help` and plugins importing a
    # contract module stay fast.
    if name in ("get_space", "list_tables", "load_table", "query"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ecnas_plugin' has no attribute {name!r}")
