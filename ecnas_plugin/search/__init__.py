"""Built-in energy-aware search on the plugin's own tabular spaces; NASLib is not needed.

    from ecnas_plugin.search import load_space, make_optimizer, run_search, Budget
    space = load_space("ecnas-5v")
    rng = np.random.default_rng(0)
    trace = run_search(space, make_optimizer("sms-emoa", space, rng), Budget(evaluations=100), None, rng)
"""

from .optimizers import OPTIMIZERS, Optimizer, RandomSearch, RegularizedEvolution, SmsEmoa, make_optimizer
from .run import TRACE_COLUMNS, Budget, run_search
from .space import SPACES, Evaluation, TabularSpace, load_space

__all__ = [
    "OPTIMIZERS", "SPACES", "TRACE_COLUMNS", "Budget", "Evaluation", "Optimizer", "RandomSearch",
    "RegularizedEvolution", "SmsEmoa", "TabularSpace", "load_space", "make_optimizer", "run_search",
]
