"""Train the shipped NB101 energy surrogate (``default/``) on EC-NAS's measured 5-vertex data.

    python -m ecnas_plugin.energy.surrogates.train_default [--out DIR]

Holds out 40% of the 2,532 cells (by a fixed seed), trains a 10-member LightGBM ensemble on
1,000 of the rest, and stores the held-out metrics and the cross-campaign rank correlation on
the 7-vertex campaign in the manifest. Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TRAIN_CELLS = 1000
TEST_FRACTION = 0.4
SEED = 0


def train(out: Path, train_cells: int = TRAIN_CELLS, seed: int = SEED):
    """Fit, evaluate and save the default predictor; returns it."""
    from ecnas_plugin.api import load_table

    from .evaluation import evaluate, split
    from .predictor import DEFAULT_DIR, fit

    frame = load_table("ecnas-5v").frame
    train_rows, test_rows = split(frame, TEST_FRACTION, seed)
    keys = np.random.default_rng(seed + 1).permutation(sorted(train_rows["arch_key"].unique()))[:train_cells]
    predictor = fit(train_rows[train_rows["arch_key"].isin(keys)], "lightgbm", source_table="ecnas-5v",
                    seed=seed, folds=10)
    predictor.metrics = {
        "held_out_ecnas_5v": evaluate(predictor, test_rows),
        "rank_on_ecnas_7v": evaluate(predictor, load_table("ecnas-7v").frame, rank_only=True),
    }
    predictor.save(out or DEFAULT_DIR)
    return predictor


def main(argv: list[str] | None = None) -> int:
    from .predictor import DEFAULT_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--train-cells", type=int, default=TRAIN_CELLS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    predictor = train(args.out, args.train_cells, args.seed)
    print(json.dumps(predictor.metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
