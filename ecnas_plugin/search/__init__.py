"""Built-in energy-aware search on any registered table of any registered space; NASLib is not needed.

    from ecnas_plugin.search import load_space, make_optimizer, run_search, Budget
    space = load_space("ecnas-5v")                      # or load_space("ecnas-4v-linscale", [4, 12, 36, 108])
    rng = np.random.default_rng(0)
    trace = run_search(space, make_optimizer("sms-emoa", space, rng), Budget(evaluations=100), None, rng)
"""

from .optimizers import OPTIMIZERS, Optimizer, RandomSearch, RegularizedEvolution, SmsEmoa, make_optimizer
from .run import TRACE_COLUMNS, Budget, run_search
from .space import Evaluation, Point, QueryResult, TabularSpace, load_space

__all__ = [
    "OPTIMIZERS", "TRACE_COLUMNS", "Budget", "Evaluation", "Optimizer", "Point", "QueryResult", "RandomSearch",
    "RegularizedEvolution", "SmsEmoa", "TabularSpace", "load_space", "make_optimizer", "run_search",
]
