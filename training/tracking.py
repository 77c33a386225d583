"""Optional MLflow tracking of a sweep (``surrogate sweep --mlflow-uri``).

Layout, as MLflow's own hyperparameter-tuning examples and Optuna's MLflow callback do it: one
parent run for the sweep (its grid, the leaderboard files, the winner) and one nested run per
fit, i.e. per configuration x seed (x CV fold); with one seed and no CV that is one run per
configuration. A fit is the unit that has one loss curve and one ONNX model, so the MLflow UI can
overlay and compare the curves of any runs; the children carry ``activation`` and
``hidden_layer_sizes`` parameters and, once the sweep ends, their configuration's ``rank`` tag,
to group the seeds of a configuration. The winner's refit is one more child run.

Everything is logged from the driver process as the fits come back, never from Dask workers,
which may not reach the tracking server. Only this module imports mlflow, and only
:func:`open_tracker` does so, so a sweep without ``--mlflow-uri`` runs without it installed.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from service.bundle_format import CARD_FILE, MODEL_FILE
from training.errors import TrainingError, first_line
from training.signals import sigint_held

INSTALL_HINT = 'pip install "surrogate-serving[mlflow]"'
_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_REPORT_FILES = ("leaderboard.csv", "leaderboard.json", "curves.png", "report.md")


class TrackingError(TrainingError, RuntimeError):
    """MLflow is missing or the tracking server cannot be used."""


def _whole(method):
    """Log all of ``method``'s entries, or none if it fails, before a Ctrl-C takes effect:
    interrupted mid-write, a file store keeps a run without its meta.yaml, and then cannot even
    list the experiment."""

    @functools.wraps(method)
    def held(*args, **kwargs):
        with sigint_held():
            return method(*args, **kwargs)

    return held


def open_tracker(uri: str, experiment: str, run_name: str, params: Mapping) -> SweepTracker:
    """Start the sweep's parent run in ``experiment`` (created if missing) at ``uri``.

    Raises
    ------
    TrackingError
        mlflow is not installed, or the store at ``uri`` refuses the experiment or the run.
    """
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise TrackingError(f"--mlflow-uri needs MLflow: {INSTALL_HINT}") from exc
    try:
        with sigint_held():
            client = MlflowClient(tracking_uri=uri)
            found = client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else client.create_experiment(experiment)
            parent = client.create_run(experiment_id, run_name=run_name)
            tracker = SweepTracker(client, experiment_id, parent.info.run_id)
            tracker.log(parent.info.run_id, params=params)
    except (MlflowException, OSError) as exc:
        raise TrackingError(f"MLflow at {uri}: {first_line(exc)}") from exc
    return tracker


class SweepTracker:
    """Logs a sweep's fits as nested runs of one parent run."""

    def __init__(self, client, experiment_id: str, parent_id: str) -> None:
        self.client, self.experiment_id, self.parent_id = client, experiment_id, parent_id
        self.runs_of_config: dict[int, list[str]] = defaultdict(list)
        self.closed = False

    @_whole
    def log_fit(self, record: Mapping, params: Mapping) -> str:
        """One finished fit of :func:`training.sweep.fit_config` as a child run; its id.

        ``params`` are the grid's shared `SurrogateMLP` parameters (solver, epochs, rate).
        """
        from training.report import convergence_png

        name = f"{record['activations']} [{record['hidden']}] seed {record['seed']}" + (
            f" fold {record['fold']}" if record["folds"] > 1 else "")
        run_id = self._child(name, {"status": record["status"], "worker": record["worker"],
                                    "reason": record["reason"], "config": record["config"],
                                    "notice": record.get("notice", "")})
        self.runs_of_config[record["config"]].append(run_id)
        ok = record["status"] == "ok"
        try:
            self.log(run_id, params={**params, "activation": record["activations"],
                                     "hidden_layer_sizes": record["hidden"],
                                     "seed": record["seed"], "fold": record["fold"]},
                     metrics={key: record[key] for key in _FIT_METRICS if ok},
                     curves={"val_loss": record.get("val_curve") or [],
                             "train_loss": record.get("loss_curve") or []})
            if ok:
                self.log_files(run_id, {
                    "loss_curve.png": convergence_png(record["loss_curve"], record["val_curve"],
                                                      name),
                    MODEL_FILE: record["onnx"],
                })
        finally:
            self.client.set_terminated(run_id, "FINISHED" if ok else "FAILED")
        return run_id

    @_whole
    def log_leaderboard(self, board, report_dir: Path) -> None:
        """The leaderboard files and the best scores on the parent; each child's ``rank``."""
        for row in board.rows:
            for run_id in self.runs_of_config.get(row["config"], []):
                self.client.set_tag(run_id, "rank", str(row["rank"]))
        winner = board.winner
        self.log(self.parent_id,
                 metrics={"best_val_rmse": winner["val_rmse_mean"],
                          "best_val_r2": winner["val_r2_mean"]} if winner else {},
                 tags={"finished_runs": len(board.runs), "interrupted": board.interrupted,
                       **({"winner": f"{winner['activations']} [{winner['hidden']}]"}
                          if winner else {})})
        for file_name in _REPORT_FILES:
            self.client.log_artifact(self.parent_id, str(report_dir / file_name), "leaderboard")

    @_whole
    def log_winner(self, result, params: Mapping) -> str:
        """The winner's refit and export (a :class:`training.pipeline.TrainResult`) as a child
        run that records the bundle path and holds its model.onnx and model.json."""
        run_id = self._child("winner refit", {"bundle": str(result.bundle)})
        try:
            metrics = {f"holdout_{key}_{output}": value
                       for output, per in result.metrics["per_output"].items()
                       for key, value in per.items()}
            self.log(run_id, params={**params, "bundle": str(result.bundle)},
                     metrics={**metrics, "fit_seconds": result.fit_seconds},
                     curves={"train_loss": list(result.model.loss_curve_),
                             "val_loss": list(result.model.validation_scores_ or [])})
            for file_name in (MODEL_FILE, CARD_FILE):
                self.client.log_artifact(run_id, str(Path(result.bundle) / file_name), "bundle")
            self.client.set_tag(self.parent_id, "bundle", str(result.bundle))
        finally:
            self.client.set_terminated(run_id, "FINISHED")
        return run_id

    @_whole
    def close(self, status: str = "FINISHED") -> None:
        """End the parent run, once: FINISHED, FAILED or KILLED (an interrupted sweep)."""
        if not self.closed:
            self.closed = True
            self.client.set_terminated(self.parent_id, status)

    def log(self, run_id: str, *, params: Mapping | None = None,
            metrics: Mapping | None = None, tags: Mapping | None = None,
            curves: Mapping[str, Iterable[float]] | None = None) -> None:
        """Parameters, scalar metrics, tags and per-epoch curves (step = epoch, from 1)."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        entries = [Metric(key, float(value), now, 0) for key, value in (metrics or {}).items()
                   if value is not None]
        for key, curve in (curves or {}).items():
            # NaN marks epochs without held-out rows (a final fit on every row): no point.
            entries += [Metric(key, float(value), now, step)
                        for step, value in enumerate(curve, start=1) if math.isfinite(value)]
        params = [Param(key, _text(value)) for key, value in (params or {}).items()]
        tags = [RunTag(key, _text(value)) for key, value in (tags or {}).items()]
        self.client.log_batch(run_id, metrics=entries[:_BATCH], params=params, tags=tags)
        for start in range(_BATCH, len(entries), _BATCH):
            self.client.log_batch(run_id, metrics=entries[start:start + _BATCH])

    def log_files(self, run_id: str, files: Mapping[str, bytes]) -> None:
        """Upload in-memory files as the run's artifacts."""
        with tempfile.TemporaryDirectory(prefix="surrogate-mlflow-") as directory:
            for file_name, data in files.items():
                path = Path(directory) / file_name
                path.write_bytes(data)
                self.client.log_artifact(run_id, str(path))

    def _child(self, name: str, tags: Mapping) -> str:
        tags = {"mlflow.parentRunId": self.parent_id, **{k: _text(v) for k, v in tags.items()}}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        return run.info.run_id


_FIT_METRICS = ("val_rmse", "val_r2", "epochs", "fit_seconds", "predict_us_per_row", "n_params")


def _text(value) -> str:
    """A parameter or tag value: JSON for lists and mappings, str otherwise."""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)
