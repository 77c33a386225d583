"""From a checked table to a bundle in the repository: split, fit, measure, plot, export.

`surrogate train` and `surrogate demo` both go through `train_and_export`, so a demo model is
made exactly as a user's model is.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from training.data import Dataset
from training.errors import DataError, ParameterError
from training.jsonable import jsonable

_LIBRARIES = ("numpy", "scikit-learn", "scipy", "onnx", "onnxruntime")


@dataclass(frozen=True)
class TrainJob:
    """What to train and where to put it.

    ``params`` are `SurrogateMLP` keyword arguments. By default (``test_fraction`` 0) the
    exported model is fit on every row and its metrics are cross-validated: the out-of-fold
    predictions of its selection (or of its validation split, for large tables). With
    ``test_fraction`` > 0 that share of the rows is held out, never seen by the fit, and the
    metrics are measured there (the cross-validated estimate is kept beside them); ``refit``
    then fits the exported model again on every row afterwards, and the card says so.
    ``extra_training_info`` is merged into the card's ``training`` section (e.g. a sweep).
    ``ensemble`` > 1 trains a `SurrogateEnsemble` of that many members (seeds ``seed``,
    ``seed + 1``, ...), ``n_jobs`` of them at a time (joblib's meaning); the metrics are the
    ensemble mean's.
    """

    name: str
    repo: Path
    params: Mapping = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)
    test_fraction: float = 0.0
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
    notices: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()  # the table's input columns, in the model's order


# Notices about the reported error, checked on every output.
OVERFIT_RATIO, OVERFIT_MIN_ERROR = 3.0, 0.02  # held-out relative RMSE vs the training one
NOISE_RATIO, NOISE_MIN_ERROR = 1.3, 0.005
CV_FALLBACK_FOLDS = 4


def split_rows(n_rows: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split into training and held-out row indices."""
    if not 0.0 < test_fraction < 1.0:
        raise ParameterError(f"test fraction must be between 0 and 1, got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n_rows)
    n_test = max(1, int(round(test_fraction * n_rows)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def train_and_export(
    data: Dataset, job: TrainJob, callback: Callable | None = None
) -> TrainResult:
    """Fit, measure on rows the model did not see, write a new bundle version."""
    from training.bundle import write_bundle
    from training.ensemble import members
    from training.report import convergence_png, holdout_metrics, parity_png

    if job.test_fraction:
        train_rows, test_rows = split_rows(data.n_rows, job.test_fraction, job.seed)
    else:
        train_rows, test_rows = np.arange(data.n_rows), np.arange(0)
    params = {"random_state": job.seed, **job.params}
    names = list(data.outputs)
    started = time.perf_counter()
    model = _build(job, params, callback).fit(data.X[train_rows], _target(data.Y[train_rows]))
    estimate = _estimate(model, job, params, data, train_rows)
    training_error = holdout_metrics(data.Y[train_rows], model.predict(data.X[train_rows]), names)
    if test_rows.size:
        Y_pred = model.predict(data.X[test_rows])
        Y_true = data.Y[test_rows]
        metrics = {"split": "holdout", "rows": int(test_rows.size),
                   "per_output": holdout_metrics(Y_true, Y_pred, names),
                   "source": f"{test_rows.size} rows held out before training (test_fraction "
                             f"{job.test_fraction:g}), never seen by the fit",
                   "cross_validation": estimate["summary"]}
    else:
        Y_true, Y_pred = estimate["true"], estimate["predicted"]
        metrics = {"split": estimate["split"], "rows": int(len(Y_true)),
                   "per_output": holdout_metrics(Y_true, Y_pred, names),
                   "source": estimate["source"]}
    metrics["training"] = {n: {"relative_rmse": m["relative_rmse"], "rmse": m["rmse"]}
                           for n, m in training_error.items()}
    metrics["noise_suspected"] = bool(members(model)[0].selection_.get("smaller_alpha_overfits"))
    if job.ensemble > 1:
        held = (data.Y[test_rows], test_rows) if test_rows.size else None
        metrics["members_relative_rmse"] = _member_errors(model, data, held, names)
    first = members(model)[0]  # an ensemble's curves are its first member's
    loss_curve, val_curve = list(first.loss_curve_), list(first.validation_scores_ or [])
    epochs = int(first.n_iter_)
    fit_rows = train_rows
    if job.refit and test_rows.size:
        model = _build(job, params, callback).fit(data.X, _target(data.Y))
        fit_rows = np.arange(data.n_rows)
    fit_seconds = time.perf_counter() - started

    title = f"{job.name}: {', '.join(data.outputs)}"
    extra_files = {
        "convergence.png": convergence_png(loss_curve, val_curve, title),
        "parity.png": parity_png(Y_true, Y_pred, names, f"{title} ({metrics['split']})"),
    }
    inputs = _input_specs(data, fit_rows, job.units)
    bundle = write_bundle(
        model,
        job.repo,
        job.name,
        inputs=inputs,
        outputs=[{"name": n, "unit": job.units.get(n, "")} for n in data.outputs],
        metrics=metrics,
        training_info={
            **_training_info(data, job, model, params, epochs, fit_seconds, fit_rows),
            **(job.extra_training_info or {}),
        },
        description=job.description,
        extra_files=extra_files,
        sensitivity=sensitivity_section(model, inputs, list(data.outputs)),
    )
    return TrainResult(bundle=bundle, metrics=metrics, model=model, fit_seconds=fit_seconds,
                       notices=tuple(error_notices(metrics)), inputs=tuple(data.inputs))


def _estimate(model, job: TrainJob, params: Mapping, data: Dataset, rows: np.ndarray) -> dict:
    """The error of the fit estimated on rows it did not train on: the model's own held-out
    predictions (its cross-validation, or its validation split), or, for a model that has
    none, a cross-validation of its settings here."""
    from training.ensemble import members
    from training.report import holdout_metrics

    fitted = members(model)
    held = [np.asarray(m.heldout_prediction_, dtype=np.float64).reshape(len(rows), -1)
            for m in fitted if getattr(m, "heldout_kind_", None)]
    if held:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rows no member held out
            predicted = np.nanmean(np.stack(held), axis=0)
        kind = fitted[0].heldout_kind_
        source = _heldout_source(fitted[0], len(held))
    else:
        predicted, kind, source = _cross_validate(job, params, data, rows)
    keep = ~np.isnan(predicted).any(axis=1)
    true = data.Y[rows][keep]
    split = "cv" if kind == "cv" else "validation"
    summary = {"split": split, "rows": int(keep.sum()), "source": source,
               "per_output": holdout_metrics(true, predicted[keep], list(data.outputs))}
    return {"split": split, "true": true, "predicted": predicted[keep], "source": source,
            "summary": summary}


def _heldout_source(model, n_members: int) -> str:
    chosen = model.selection_
    if model.heldout_kind_ == "cv":
        folds, blended = chosen["folds"], chosen.get("distilled_from")
        models = (f"the blend of {len(blended['candidates'])} candidates' fold models the "
                  "exported model was distilled from" if blended
                  else f"the {folds} fold models")
        text = (f"out-of-fold predictions of {models}, of a {folds}-fold cross-validation on "
                f"{chosen['rows']} rows (each fold model trained on "
                f"{100 * (folds - 1) / folds:.0f}% of them); the exported model trained on "
                f"all {chosen['final_rows']} rows")
    else:
        text = (f"the exported model's predictions of {chosen['validation_rows']} validation "
                f"rows held out from its training, before a last pass over every row")
    if n_members > 1:
        text += f"; averaged over the {n_members} ensemble members"
    return text


def _cross_validate(job: TrainJob, params: Mapping, data: Dataset, rows: np.ndarray):
    from sklearn.model_selection import KFold

    folds = KFold(CV_FALLBACK_FOLDS, shuffle=True, random_state=job.seed)
    X, Y = data.X[rows], data.Y[rows]
    predicted = np.full(Y.shape, np.nan)
    for train, val in folds.split(X):
        fold_model = _build(job, params, None).fit(X[train], _target(Y[train]))
        predicted[val] = np.asarray(fold_model.predict(X[val])).reshape(len(val), -1)
    source = (f"out-of-fold predictions of a {CV_FALLBACK_FOLDS}-fold cross-validation of the "
              f"same settings on {len(rows)} rows; the exported model trained on all of them")
    return predicted, "cv", source


def error_notices(metrics: dict) -> list[str]:
    """One line per output whose held-out error says something the table alone does not: far
    above the training error (overfitting), or no better than it while the selection saw
    smaller penalties fit something that does not generalise (the noise of the outputs; a model
    that merely underfits shows the first sign without the second)."""
    notices = []
    for name, held in metrics["per_output"].items():
        train = metrics["training"][name]["relative_rmse"]
        error = held["relative_rmse"]
        if not (math.isfinite(error) and math.isfinite(train)):
            continue
        if error >= OVERFIT_MIN_ERROR and error > OVERFIT_RATIO * train:
            notices.append(
                f"{name}: the held-out error (RMSE/std {error:.3g}) is {error / train:.0f}x the "
                f"training error ({train:.3g}): the model fits its own rows far better than new "
                "ones; more rows would help")
        elif metrics.get("noise_suspected") and NOISE_MIN_ERROR <= error <= NOISE_RATIO * train:
            notices.append(
                f"{name}: the held-out error (RMSE/std {error:.3g}) is at the training error "
                f"({train:.3g}), the noise level of the table: more rows will help more than "
                "tuning")
    return notices


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


def _member_errors(model, data: Dataset, held, names: list[str]) -> dict:
    """Every member's own relative RMSE per output, to set next to the mean's: on the test rows,
    or on each member's held-out predictions."""
    from training.report import holdout_metrics

    errors = []
    for member in model.estimators_:
        if held is not None:
            Y_true, rows = held
            errors.append(holdout_metrics(Y_true, member.predict(data.X[rows]), names))
        elif getattr(member, "heldout_kind_", None):
            predicted = np.asarray(member.heldout_prediction_).reshape(data.n_rows, -1)
            keep = ~np.isnan(predicted).any(axis=1)
            errors.append(holdout_metrics(data.Y[keep], predicted[keep], names))
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


# Base samples of the indices a card carries: a tenth of a second or so for a surrogate, and
# within about 0.03 of the exact indices (``surrogate sensitivity`` takes more on request).
CARD_SENSITIVITY_N = 2**12


def sensitivity_section(model, inputs: list[dict], outputs: list[str]) -> dict | None:
    """The card's ``sensitivity``: Sobol' indices of the fitted model over its training box
    (:mod:`training.sensitivity`), or None for a box without finite bounds."""
    from training.design import factors_from
    from training.ensemble import members
    from training.sensitivity import indices

    log = members(model)[0].x_scaling == "log"
    try:
        factors = factors_from(inputs, log)
    except DataError:
        return None
    table = indices(factors, outputs, lambda x: model.predict(x).reshape(len(x), -1),
                    model.predict_jacobian, n=CARD_SENSITIVITY_N)
    return {"method": "Sobol' indices (SALib, Saltelli sampling), bounds on ST from the exact "
                      "Jacobian (DGSM)",
            "n": CARD_SENSITIVITY_N, "evaluations": CARD_SENSITIVITY_N * (len(factors) + 2),
            "indices": table}


def _training_info(data, job, model, params, epochs, fit_seconds, fit_rows) -> dict:
    from training.ensemble import members

    first = members(model)[0]
    info = {
        "estimator": type(model).__name__,
        "params": {k: jsonable(v) for k, v in sorted(params.items())},
        "alpha": float(first.alpha_),
        "selection": _selection(first, data.inputs),
        "epochs": epochs,
        "fit_log": _fit_log(model),
        "rows": {"total": data.n_rows, "fit": int(fit_rows.size),
                 "dropped_invalid": data.dropped_rows},
        "test_fraction": job.test_fraction,
        "refit_on_all_rows": bool(job.refit and job.test_fraction),
        "data": {"source": Path(data.source).name, "sha256": data.sha256},
        "fit_seconds": round(fit_seconds, 3),
        "library_versions": {lib: installed_version(lib) for lib in _LIBRARIES},
    }
    return info


def _selection(model, inputs: list[str]) -> dict:
    """The card's record of how the regularization and the inputs were chosen (the candidates
    and their mean validation loss, the winner first); inputs by name."""
    chosen = {k: jsonable(v) for k, v in model.selection_.items()}
    if "dropped_inputs" in chosen:
        chosen["dropped_inputs"] = [inputs[i] for i in chosen["dropped_inputs"]]
        chosen["screened_inputs"] = [[inputs[i] for i in weak]
                                     for weak in chosen["screened_inputs"]]
    results = getattr(model, "cv_results_", None)
    if results:
        order = sorted(range(len(results["params"])), key=lambda i: results["rank_val_loss"][i])
        chosen["candidates"] = [
            {**results["params"][i], "mean_val_loss": _finite(results["mean_val_loss"][i]),
             "rank": results["rank_val_loss"][i]} for i in order]
    return chosen


def _finite(value: float):
    return value if math.isfinite(value) else None


def _fit_log(model) -> list[str]:
    from training.ensemble import SurrogateEnsemble

    if not isinstance(model, SurrogateEnsemble):
        return list(getattr(model, "fit_log_", []))
    return [
        f"member {i} (seed {seed}): {line}"
        for i, (seed, member) in enumerate(zip(model.seeds_, model.estimators_, strict=True))
        for line in member.fit_log_
    ]


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``; None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
