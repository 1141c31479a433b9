"""ecnas-plugin: energy consumption as a first-class objective in neural architecture search.

The public Python API::

    import ecnas_plugin as ep
    ep.list_tables()                         # what tables exist
    t = ep.load_table("ecnas-5v")            # EnergyTable (built once, then cached as parquet)
    ep.query("nasbench101", "e1aeb470572477cf15b1bd3644d59370", table="ecnas-5v")
"""

from .api import get_space, list_tables, load_table, query
from .version import __version__

__all__ = ["__version__", "get_space", "list_tables", "load_table", "query"]
