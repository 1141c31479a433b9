"""Energy surrogates: predict the training energy of NAS-Bench-101 cells nobody measured, with a σ.

Python API::

    from ecnas_plugin.energy import surrogates as S
    p = S.fit(load_table("ecnas-5v").frame, "additive")   # a Predictor for (ecnas-5v, 4 epochs, ...)
    S.evaluate(p, held_out_frame)                         # τ, ρ, R², MAE Wh, ±1σ/±2σ coverage
    S.predict_energy([cell, "e1aeb4..."])                 # shipped default model, source="predicted"
    p.save(folder); S.Predictor.load(folder)

Surrogate model classes (base: :class:`ecnas_plugin.energy.surrogates.models.Surrogate`) are
plugins: this module implements the ``ecnas_surrogates`` hook for the built-in ones.
"""

from __future__ import annotations

from ecnas_plugin.hookspecs import hookimpl

from .evaluation import evaluate, learning_curve, metrics, plot_learning_curve
from .features import FEATURE_SET, CellBatch, CellIndex, default_cell_index, nb101_features, size_counts
from .models import (BUILTIN_SURROGATES, AdditiveSurrogate, EnsembleSurrogate, LightGBMSurrogate, MLPSurrogate,
                     Surrogate)
from .predictor import Context, Predictor, default_predictor, fit, predict_energy
from .scaling import EpochScaling, scaling_errors

__all__ = [
    "FEATURE_SET", "AdditiveSurrogate", "CellBatch", "CellIndex", "Context", "EnsembleSurrogate", "EpochScaling", "LightGBMSurrogate",
    "MLPSurrogate", "Predictor", "Surrogate", "default_cell_index", "default_predictor", "evaluate", "fit",
    "learning_curve", "metrics", "nb101_features", "plot_learning_curve", "predict", "predict_energy",
    "scaling_errors", "size_counts",
]

predict = predict_energy


@hookimpl
def ecnas_surrogates():
    """The built-in surrogate model classes: lightgbm, mlp, ensemble, additive."""
    return list(BUILTIN_SURROGATES)
