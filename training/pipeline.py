"""From a checked table to a bundle in the repository: split, fit, measure, plot, export.

`surrogate train` and `surrogate demo` both go through `train_and_export`, so a demo model is
made exactly as a user's model is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from training.data import Dataset

_LIBRARIES = ("numpy", "scikit-learn", "scipy", "onnx", "onnxruntime")


@dataclass(frozen=True)
class TrainJob:
    """What to train and where to put it.

    ``params`` are `SurrogateMLP` keyword arguments. With ``refit`` the exported model is fit
    again on every row after the held-out metrics are measured; the card says so.
    ``extra_training_info`` is merged into the card's ``training`` section (e.g. a sweep).
    ``ensemble`` > 1 trains a `SurrogateEnsemble` of that many members (seeds ``seed``,
    ``seed + 1``, ...), ``n_jobs`` of them at a time (joblib's meaning); the metrics are the
    ensemble mean's.
    """

    name: str
    repo: Path
    params: Mapping = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)
    test_fraction: float = 0.2
    refit: bool = False
    seed: int = 0
    description: str = ""
    extra_training_info: Mapping | None = None
    ensemble: int = 0
    n_jobs: int | None = None


@dataclass(frozen=True)
class TrainResult:
    bundle: Path
    metrics: dict
    model: object
    fit_seconds: float


def split_rows(n_rows: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split into training and held-out row indices."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n_rows)
    n_test = max(1, int(round(test_fraction * n_rows)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def train_and_export(
    data: Dataset, job: TrainJob, callback: Callable | None = None
) -> TrainResult:
    """Fit on the training split, measure on the held-out split, write a new bundle version."""
    from training.bundle import write_bundle
    from training.ensemble import members
    from training.report import convergence_png, holdout_metrics, parity_png

    train_rows, test_rows = split_rows(data.n_rows, job.test_fraction, job.seed)
    params = {"random_state": job.seed, **job.params}
    started = time.perf_counter()
    model = _build(job, params, callback).fit(data.X[train_rows], _target(data.Y[train_rows]))
    Y_test_pred = model.predict(data.X[test_rows])
    per_output = holdout_metrics(data.Y[test_rows], Y_test_pred, list(data.outputs))
    member_errors = _member_errors(model, data, test_rows) if job.ensemble > 1 else None
    first = members(model)[0]  # an ensemble's curves are its first member's
    loss_curve, val_curve = list(first.loss_curve_), list(first.validation_scores_ or [])
    epochs = int(first.n_iter_)
    fit_rows = train_rows
    if job.refit:
        model = _build(job, params, callback).fit(data.X, _target(data.Y))
        fit_rows = np.arange(data.n_rows)
    fit_seconds = time.perf_counter() - started

    title = f"{job.name}: {', '.join(data.outputs)}"
    extra_files = {
        "convergence.png": convergence_png(loss_curve, val_curve, title),
        "parity.png": parity_png(data.Y[test_rows], Y_test_pred, list(data.outputs), title),
    }
    metrics = {"split": "holdout", "rows": int(test_rows.size), "per_output": per_output}
    if member_errors is not None:
        metrics["members_relative_rmse"] = member_errors
    bundle = write_bundle(
        model,
        job.repo,
        job.name,
        inputs=_input_specs(data, fit_rows, job.units),
        outputs=[{"name": n, "unit": job.units.get(n, "")} for n in data.outputs],
        metrics=metrics,
        training_info={
            **_training_info(data, job, model, params, epochs, fit_seconds, fit_rows),
            **(job.extra_training_info or {}),
        },
        description=job.description,
        extra_files=extra_files,
    )
    return TrainResult(bundle=bundle, metrics=metrics, model=model, fit_seconds=fit_seconds)


def _build(job: TrainJob, params: Mapping, callback: Callable | None):
    """The unfitted model: a `SurrogateMLP`, or a `SurrogateEnsemble` of them."""
    from training.ensemble import SurrogateEnsemble
    from training.estimator import SurrogateMLP

    if job.ensemble <= 1:
        return SurrogateMLP(**params, callback=callback)
    # Members fit in other processes, where a progress callback would print nowhere.
    member = SurrogateMLP(**{k: v for k, v in params.items() if k != "random_state"})
    return SurrogateEnsemble(
        member, n_members=job.ensemble, random_state=params["random_state"], n_jobs=job.n_jobs
    )


def _member_errors(model, data: Dataset, test_rows: np.ndarray) -> dict:
    """Held-out relative RMSE of every member, per output, to set next to the mean's."""
    from training.report import holdout_metrics

    names = list(data.outputs)
    errors = [
        holdout_metrics(data.Y[test_rows], member.predict(data.X[test_rows]), names)
        for member in model.estimators_
    ]
    return {name: [e[name]["relative_rmse"] for e in errors] for name in names}


def _target(Y: np.ndarray) -> np.ndarray:
    # One output: fit on 1-D y, as sklearn users expect predict() to return 1-D then.
    return Y[:, 0] if Y.shape[1] == 1 else Y


def _input_specs(data: Dataset, rows: np.ndarray, units: Mapping[str, str]) -> list[dict]:
    X = data.X[rows]
    return [
        {"name": name, "unit": units.get(name, ""), "min": float(X[:, j].min()),
         "max": float(X[:, j].max())}
        for j, name in enumerate(data.inputs)
    ]


def _training_info(data, job, model, params, epochs, fit_seconds, fit_rows) -> dict:
    return {
        "estimator": type(model).__name__,
        "params": {k: _jsonable(v) for k, v in sorted(params.items())},
        "epochs": epochs,
        "fit_log": _fit_log(model),
        "rows": {"total": data.n_rows, "fit": int(fit_rows.size),
                 "dropped_invalid": data.dropped_rows},
        "test_fraction": job.test_fraction,
        "refit_on_all_rows": job.refit,
        "data": {"source": Path(data.source).name, "sha256": data.sha256},
        "fit_seconds": round(fit_seconds, 3),
        "library_versions": {lib: _version(lib) for lib in _LIBRARIES},
    }


def _fit_log(model) -> list[str]:
    from training.ensemble import SurrogateEnsemble

    if not isinstance(model, SurrogateEnsemble):
        return list(getattr(model, "fit_log_", []))
    return [
        f"member {i} (seed {seed}): {line}"
        for i, (seed, member) in enumerate(zip(model.seeds_, model.estimators_, strict=True))
        for line in member.fit_log_
    ]


def _jsonable(value):
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
