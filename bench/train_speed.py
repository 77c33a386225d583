"""Adam training speed of SurrogateMLP against scikit-learn's MLPRegressor, in one run.

    python -m bench.train_speed [--rows 10000] [--epochs 20] [--batch-size 200] [--hidden 64,64]

Both fit the same standardised borehole rows with Adam, the same architecture, activation,
batch size and number of epochs (stopping rules disabled). Seconds per epoch are the best of
``--repeats`` interleaved runs, which damps the noise of a shared machine. MLPRegressor runs
twice: as users run it (default BLAS threads) and with one thread, as SurrogateMLP does; the
printed ratio is ours over the faster of the two (below 1 means we are faster).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from training.estimator import SurrogateMLP
from training.functions import FUNCTIONS


def _shared_adam(args: argparse.Namespace) -> dict:
    """The settings both estimators get, so the comparison is like for like."""
    return {
        "hidden_layer_sizes": args.hidden,
        "activation": "tanh",
        "solver": "adam",
        "batch_size": args.batch_size,
        "max_iter": args.epochs,
        "tol": 0.0,
        "n_iter_no_change": args.epochs,
        "random_state": 0,
    }


def surrogate(args: argparse.Namespace):
    return SurrogateMLP(
        **_shared_adam(args), validation_fraction=0.0, x_scaling="none", y_scaling="none"
    )


def mlp(args: argparse.Namespace):
    return MLPRegressor(**_shared_adam(args))


def seconds_per_epoch(build: Callable[[], object], X, y, threads: int | None) -> float:
    model = build()
    with warnings.catch_warnings(), threadpool_limits(threads):
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X, y)
        elapsed = time.perf_counter() - start
    return elapsed / model.n_iter_


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--hidden", default="64,64", help="comma-separated hidden widths")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    args.hidden = tuple(int(width) for width in args.hidden.split(","))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    fn = FUNCTIONS["borehole"]
    raw = fn.sample(args.rows, method="lhs", seed=0)
    X, y = StandardScaler().fit_transform(raw), StandardScaler().fit_transform(fn(raw))[:, 0]
    runs = {
        "SurrogateMLP (1 thread)": (lambda: surrogate(args), None),
        "MLPRegressor (default threads)": (lambda: mlp(args), None),
        "MLPRegressor (1 thread)": (lambda: mlp(args), 1),
    }
    best = dict.fromkeys(runs, np.inf)
    for _ in range(args.repeats):
        for label, (build, threads) in runs.items():
            best[label] = min(best[label], seconds_per_epoch(build, X, y, threads))
    print(
        f"Adam, {args.rows} rows, batch {args.batch_size}, hidden {args.hidden}, tanh, "
        f"{args.epochs} epochs, best of {args.repeats}:"
    )
    for label, seconds in best.items():
        print(f"  {label:32s} {seconds * 1e3:8.2f} ms/epoch")
    sklearn_best = min(best["MLPRegressor (default threads)"], best["MLPRegressor (1 thread)"])
    ratio = best["SurrogateMLP (1 thread)"] / sklearn_best
    print(f"ratio (SurrogateMLP / fastest MLPRegressor sec per epoch): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
