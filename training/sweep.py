"""Sweep activations x architectures x seeds (or CV folds), one independent fit per task.

Protocol-free: :func:`run_sweep` takes a :class:`~training.data.Dataset` and a :class:`Grid` and
returns a :class:`Leaderboard`; the CLI only parses flags, shows progress and refits the winner.
Tasks run in local processes (joblib's loky backend) or on a Dask cluster (joblib's dask
backend, with the data scattered to every worker once), through the same ``joblib.Parallel``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from training.data import Dataset
from training.errors import ParameterError, first_line
from training.leaderboard import Leaderboard, aggregate
from training.signals import sigint_held

SWEEP_SPLIT_SEED = 0  # the held-out split (and CV shuffle) is the same for every configuration


@dataclass(frozen=True)
class Config:
    """One architecture: an activation per hidden layer (or one for all) and the layer sizes."""

    activation: tuple[str, ...]
    hidden: tuple[int, ...]

    @property
    def activation_label(self) -> str:
        return "+".join(self.activation)

    @property
    def hidden_label(self) -> str:
        return ",".join(str(size) for size in self.hidden)

    def params(self) -> dict:
        activation = self.activation[0] if len(self.activation) == 1 else self.activation
        return {"hidden_layer_sizes": self.hidden, "activation": activation}


@dataclass(frozen=True)
class Grid:
    """Activations x hidden sizes; ``params`` are further `SurrogateMLP` keyword arguments."""

    activations: tuple[tuple[str, ...], ...]
    hidden: tuple[tuple[int, ...], ...]
    params: Mapping = field(default_factory=dict)

    @classmethod
    def parse(cls, activations: str, hidden: str, params: Mapping | None = None) -> Grid:
        """``"tanh,relu+identity"`` and ``"32,32;64,64"`` -> a grid; ValueError if invalid."""
        from training.activations import get_activation

        acts = tuple(tuple(p.strip() for p in item.split("+")) for item in _items(activations, ","))
        for names in acts:
            for name in names:
                get_activation(name)
        sizes = []
        for item in _items(hidden, ";"):
            try:
                layer_sizes = tuple(int(s) for s in _items(item, ","))
            except ValueError:
                layer_sizes = ()
            if not layer_sizes or min(layer_sizes) < 1:
                raise ParameterError(
                    f"hidden sizes must be positive integers like 32,32; got {item!r}")
            sizes.append(layer_sizes)
        if not acts or not sizes:
            raise ParameterError("the grid needs at least one activation and one architecture")
        return cls(acts, tuple(sizes), dict(params or {}))

    def configs(self) -> list[Config]:
        return [Config(a, h) for a, h in product(self.activations, self.hidden)]

    def to_dict(self) -> dict:
        return {"activations": ["+".join(a) for a in self.activations],
                "hidden": [list(h) for h in self.hidden], "params": dict(self.params)}


def _items(text: str, sep: str) -> list[str]:
    return [item.strip() for item in str(text).split(sep) if item.strip()]


def run_sweep(
    data: Dataset,
    grid: Grid,
    *,
    seeds: int = 1,
    cv: int | None = None,
    n_jobs: int = 1,
    scheduler: str | None = None,
    progress: Callable[[dict], None] | None = None,
    test_fraction: float = 0.2,
    export_onnx: bool = False,
) -> Leaderboard:
    """Fit every configuration x seed (x CV fold) and rank by mean validation RMSE.

    Parameters
    ----------
    data : Dataset
    grid : Grid
    seeds : int
        Random states 0 .. seeds-1 of each configuration.
    cv : int or None
        K-fold cross-validation; None holds out ``test_fraction`` of the rows instead.
    n_jobs : int
        Local worker processes (ignored with ``scheduler``).
    scheduler : str or None
        Address of a running Dask scheduler, e.g. ``"tcp://127.0.0.1:8786"``.
    progress : callable or None
        Called in this process with every finished run's record, as it arrives.
    export_onnx : bool
        Each record passed to ``progress`` also carries ``"onnx"``, the serialized ONNX model
        of that fit (dropped from the leaderboard's runs).

    Returns
    -------
    Leaderboard
        Partial, with ``interrupted`` set, if the sweep was stopped by KeyboardInterrupt.
    """
    import joblib

    configs, splits = grid.configs(), _splits(data.n_rows, cv, test_fraction)
    tasks = [(i, seed, fold) for i in range(len(configs)) for seed in range(seeds)
             for fold in range(len(splits))]
    runs, interrupted = [], False
    with ExitStack() as stack:
        if scheduler:
            from distributed import Client

            stack.enter_context(Client(scheduler))
            # scatter: X and Y are sent to each worker once; tasks refer to them by key.
            stack.enter_context(joblib.parallel_backend("dask", scatter=[data.X, data.Y]))
            n_jobs = -1
        parallel = joblib.Parallel(n_jobs=n_jobs, batch_size=1,
                                   return_as="generator_unordered")
        results = parallel(
            joblib.delayed(fit_config)(data.X, data.Y, configs[i], grid.params, splits[fold],
                                       seed, tag={"config": i, "seed": seed, "fold": fold,
                                                  "folds": len(splits)},
                                       export_onnx=export_onnx)
            for i, seed, fold in tasks
        )
        try:
            for run in results:
                # A Ctrl-C now waits until the finished fit is reported (logged to MLflow, if
                # tracked) and kept: the leaderboard and the tracking server list the same runs.
                with sigint_held():
                    try:
                        if progress is not None:
                            progress(run)
                    finally:
                        run.pop("onnx", None)
                        runs.append(run)
        except KeyboardInterrupt:
            interrupted = True
            results.close()
    rows = aggregate(configs, runs)
    return Leaderboard(rows, sorted(runs, key=lambda r: (r["config"], r["seed"], r["fold"])),
                       grid, len(tasks), interrupted)


def fit_config(X, Y, config: Config, params: Mapping, split, seed: int, tag: Mapping,
               export_onnx: bool = False) -> dict:
    """One run: fit on the training rows, measure on the held-out rows; never raises.

    With ``export_onnx`` the record's ``"onnx"`` holds the fitted model as ONNX bytes.
    """
    from training.optim import collected_notices

    train_rows, val_rows = split
    record = {**tag, "activations": config.activation_label, "hidden": config.hidden_label,
              "worker": _worker_name(), "pid": os.getpid(), "status": "ok", "reason": ""}
    try:
        with collected_notices() as notices:
            record.update(_fit_and_measure(X, Y, config, params, train_rows, val_rows, seed,
                                           export_onnx))
        # A recovered divergence: said once in the record (a worker's stderr may be nowhere).
        record["notice"] = "; ".join(notices)
    except Exception as exc:  # a failed configuration is a row of the leaderboard, not a crash
        reason = first_line(exc)
        record.update(status="failed", reason=f"{type(exc).__name__}: {reason}"[:300])
    return record


def _fit_and_measure(X, Y, config, params, train_rows, val_rows, seed, export_onnx) -> dict:
    from threadpoolctl import threadpool_limits

    from training.estimator import SurrogateMLP
    from training.report import holdout_metrics

    y = Y[:, 0] if Y.shape[1] == 1 else Y
    # A tenth of the training rows watches every epoch, for the curves of the leaderboard.
    model = SurrogateMLP(**{"random_state": seed, "validation_fraction": 0.1, "n_jobs": 1,
                            **params, **config.params()})
    with threadpool_limits(limits=1):  # one core per task; parallelism comes from the tasks
        started = time.perf_counter()
        model.fit(X[train_rows], y[train_rows])
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        predicted = model.predict(X[val_rows])
        predict_us = (time.perf_counter() - started) / len(val_rows) * 1e6
    if not np.all(np.isfinite(predicted)):
        raise FloatingPointError("non-finite predictions on the held-out rows")
    names = [str(j) for j in range(Y.shape[1])]
    per_output = holdout_metrics(Y[val_rows], predicted, names)
    # Several outputs have different units: rank them by RMSE relative to each output's spread.
    key = "rmse" if len(names) == 1 else "relative_rmse"
    record = {
        "val_rmse": float(np.mean([m[key] for m in per_output.values()])),
        "val_r2": float(np.mean([m["r2"] for m in per_output.values()])),
        "epochs": int(model.n_iter_),
        "fit_seconds": fit_seconds,
        "predict_us_per_row": predict_us,
        "n_params": int(sum(w.size for w in model.coefs_) + sum(b.size for b in model.intercepts_)),
        "val_curve": [float(v) for v in (model.validation_scores_ or [])],
        "loss_curve": [float(v) for v in model.loss_curve_],
    }
    if export_onnx:
        from training.export import to_onnx

        name = f"{config.activation_label}-{config.hidden_label}-seed{seed}"
        record["onnx"] = to_onnx(model, name=name).SerializeToString()
    return record


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _splits(n_rows: int, cv: int | None, test_fraction: float) -> list[tuple]:
    from training.pipeline import split_rows

    if cv is None:
        return [split_rows(n_rows, test_fraction, SWEEP_SPLIT_SEED)]
    if not 2 <= cv <= n_rows:
        raise ParameterError(f"cv must be between 2 and the number of rows, got {cv}")
    from sklearn.model_selection import KFold

    folds = KFold(n_splits=cv, shuffle=True, random_state=SWEEP_SPLIT_SEED)
    return list(folds.split(np.zeros((n_rows, 1))))
