"""Energy surrogates: predict the training energy of architectures nobody measured, with a σ.

Python API::

    from ecnas_plugin.energy import surrogates as S
    p = S.fit(load_table("ecnas-5v").frame, "additive")   # a Predictor for (nasbench101, ecnas-5v, 4 epochs, ...)
    S.evaluate(p, held_out_frame)                         # τ, ρ, R², MAE Wh, ±1σ/±2σ coverage
    S.predict_energy([cell, "e1aeb4..."])                 # shipped default model, source="predicted"
    S.predicted_table().save(folder)                      # all 423,624 NB101 cells, predicted (~20 s)
    p.save(folder); S.Predictor.load(folder)

Any space with the ``features`` capability works the same way (the table's ``space`` column picks
it; e.g. an NB201 table gives a predictor of NB201 arch strings).

Surrogate model classes (base: :class:`ecnas_plugin.energy.surrogates.base.Surrogate`) are
plugins: this module implements the ``ecnas_surrogates`` hook for the built-in ones. Importing it
is cheap: every public name is loaded from its module on first use, so the registry, which
imports this module as an entry point, pulls in no model, LightGBM, torch or pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

from ecnas_plugin.hookspecs import hookimpl

# public name -> module that defines it (loaded on first attribute access)
_EXPORTS = {
    "Surrogate": "base",
    "BUILTIN_SURROGATES": "models", "AdditiveSurrogate": "models", "EnsembleSurrogate": "models",
    "LightGBMSurrogate": "models", "MLPSurrogate": "models",
    "FEATURE_SET": "features", "CellBatch": "features", "CellIndex": "features",
    "default_cell_index": "features", "nb101_features": "features", "size_counts": "features",
    "Context": "predictor", "Predictor": "predictor", "default_predictor": "predictor", "fit": "predictor",
    "predict_energy": "predictor",
    "evaluate": "evaluation", "learning_curve": "evaluation", "metrics": "evaluation",
    "plot_learning_curve": "evaluation",
    "CurvePredictor": "curves", "evaluate_curves": "curves", "curves_of": "curves",
    "EpochScaling": "scaling", "scaling_errors": "scaling",
    "ALL_NB101_CELLS": "nb101_all", "module_hashes": "nb101_all", "space_cells": "nb101_all",
    "predicted_table": "nb101_all",
}
_ALIASES = {"predict": ("predictor", "predict_energy")}
_SUBMODULES = ("base", "cli", "curves", "evaluation", "features", "models", "nb101_all", "predictor", "scaling",
               "train_default")

__all__ = sorted([*_EXPORTS, *_ALIASES])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    elif name in _ALIASES:
        module, attr = _ALIASES[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


# No module __dir__ listing the lazy names: pluggy registers a plugin by getattr() on every name
# dir() gives, which would import them all.


@hookimpl
def ecnas_surrogates():
    """The built-in surrogate model classes: lightgbm, mlp, ensemble, additive."""
    from .models import BUILTIN_SURROGATES

    return list(BUILTIN_SURROGATES)


@hookimpl
def ecnas_curve_surrogates():
    """The built-in learning-curve surrogates: bezier, gbm-epoch, pow3."""
    from .curves import BUILTIN_CURVE_SURROGATES

    return list(BUILTIN_CURVE_SURROGATES)
