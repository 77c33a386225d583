"""`surrogate sweep --mlflow-uri` against a real MLflow file store, read back with MlflowClient."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from click.testing import CliRunner

from training.cli import main
from training.estimator import SurrogateMLP
from training.pipeline import split_rows
from training.sweep import SWEEP_SPLIT_SEED

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from tests.tables import write_runs_table  # noqa: E402

EPOCHS = 6
TINY = ["--solver", "adam", "--epochs", str(EPOCHS), "--alpha", "1e-4", "--n-jobs", "1"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_runs_table(tmp_path_factory.mktemp("data") / "runs.csv", 150)


@pytest.fixture
def store(tmp_path, monkeypatch):
    # MLflow 3 refuses the file store unless asked; it is the one store mlflow-skinny can run
    # without a server, and it is a real store (the same files `mlflow server` would serve).
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return f"file://{tmp_path}/mlruns"


def _sweep(table, tmp_path, *extra, prefix=()):
    args = [*prefix, "sweep", "--data", str(table), "--inputs", "a,b", "--outputs", "y",
            "--name", "m", "--repo", str(tmp_path / "repo"), "--report",
            str(tmp_path / "report"), *TINY, *extra]
    return CliRunner().invoke(main, args)


def _runs(uri: str, experiment: str = "surrogate-sweep-m"):
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id])


def test_every_fit_is_a_nested_run_with_params_metrics_curve_and_onnx(table, tmp_path, store):
    result = _sweep(table, tmp_path, "--activations", "tanh,relu", "--hidden", "4;6",
                    "--mlflow-uri", store)
    assert result.exit_code == 0, result.output
    client, runs = _runs(store)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 6 and len(children) == 5
    fits = [r for r in children if r.info.run_name != "winner refit"]
    assert sorted((r.data.params["activation"], r.data.params["hidden_layer_sizes"])
                  for r in fits) == [("relu", "4"), ("relu", "6"), ("tanh", "4"), ("tanh", "6")]

    document = json.loads((tmp_path / "report" / "leaderboard.json").read_text())
    for run in fits:
        params, metrics = run.data.params, run.data.metrics
        assert (params["solver"], params["max_iter"], params["seed"], params["fold"]) == (
            "adam", str(EPOCHS), "0", "0")
        assert run.info.status == "FINISHED" and run.data.tags["status"] == "ok"
        assert metrics["epochs"] == EPOCHS and metrics["fit_seconds"] > 0
        assert metrics["predict_us_per_row"] > 0 and metrics["val_r2"] <= 1.0
        (record,) = [r for r in document["runs"] if r["activations"] == params["activation"]
                     and r["hidden"] == params["hidden_layer_sizes"]]
        assert metrics["val_rmse"] == pytest.approx(record["val_rmse"])
        rank = [row["rank"] for row in document["rows"] if row["config"] == record["config"]]
        assert run.data.tags["rank"] == str(rank[0])
        curve = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in curve] == list(range(1, EPOCHS + 1))
        assert [m.value for m in curve] == pytest.approx(record["val_curve"])
        artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert artifacts == {"loss_curve.png", "model.onnx"}


def test_the_logged_onnx_model_is_the_fit_of_its_configuration(table, tmp_path, store):
    result = _sweep(table, tmp_path, "--activations", "tanh", "--hidden", "5",
                    "--mlflow-uri", store)
    assert result.exit_code == 0, result.output
    client, runs = _runs(store)
    (fit,) = [r for r in runs if r.data.params.get("activation") == "tanh"
              and "bundle" not in r.data.params]
    path = client.download_artifacts(fit.info.run_id, "model.onnx", str(tmp_path))
    frame = pd.read_csv(table)
    X, y = frame[["a", "b"]].to_numpy(), frame["y"].to_numpy()
    train_rows, _ = split_rows(len(X), 0.2, SWEEP_SPLIT_SEED)
    again = SurrogateMLP(random_state=0, solver="adam", max_iter=EPOCHS, alpha=1e-4,
                         validation_fraction=0.1, activation="tanh",
                         hidden_layer_sizes=(5,)).fit(X[train_rows], y[train_rows])
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (onnx_y,) = session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})
    np.testing.assert_allclose(onnx_y.ravel(), again.predict(X), rtol=1e-4, atol=1e-4)


def test_the_parent_holds_the_leaderboard_and_the_winner_run_the_bundle(table, tmp_path, store):
    result = _sweep(table, tmp_path, "--activations", "tanh,relu", "--hidden", "4",
                    "--mlflow-uri", store, "--mlflow-experiment", "study")
    assert result.exit_code == 0, result.output
    client, runs = _runs(store, "study")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (winner,) = [r for r in runs if r.info.run_name == "winner refit"]
    bundle = str(tmp_path / "repo" / "m" / "1")
    assert parent.info.status == winner.info.status == "FINISHED"
    assert parent.data.tags["bundle"] == winner.data.params["bundle"] == bundle
    assert json.loads(parent.data.params["activations"]) == ["tanh", "relu"]
    assert parent.data.tags["interrupted"] == "False"
    card = json.loads((tmp_path / "repo" / "m" / "1" / "model.json").read_text())
    best = card["training"]["sweep"]
    assert parent.data.metrics["best_val_rmse"] == pytest.approx(best["val_rmse_mean"])
    assert winner.data.params["activation"] == card["layers"][0]["activation"]
    assert winner.data.metrics["holdout_r2_y"] == pytest.approx(
        card["metrics"]["per_output"]["y"]["r2"])
    assert {f.path for f in client.list_artifacts(parent.info.run_id, "leaderboard")} == {
        "leaderboard/leaderboard.csv", "leaderboard/leaderboard.json",
        "leaderboard/curves.png", "leaderboard/report.md"}
    assert {f.path for f in client.list_artifacts(winner.info.run_id, "bundle")} == {
        "bundle/model.onnx", "bundle/model.json"}


def test_a_failed_configuration_is_a_failed_run_with_its_reason(table, tmp_path, store):
    # "tanh+elu" names two activations, so it fails on the one-layer architecture.
    result = _sweep(table, tmp_path, "--activations", "tanh,tanh+elu", "--hidden", "4",
                    "--mlflow-uri", store)
    assert result.exit_code == 0, result.output
    client, runs = _runs(store)
    (failed,) = [r for r in runs if r.data.params.get("activation") == "tanh+elu"]
    assert failed.info.status == "FAILED" and failed.data.tags["status"] == "failed"
    assert "2 names for 1 hidden layers" in failed.data.tags["reason"]
    assert client.list_artifacts(failed.info.run_id) == []


def test_an_unusable_tracking_uri_is_a_one_line_error_before_any_fit(table, tmp_path, store):
    result = _sweep(table, tmp_path, "--activations", "tanh", "--hidden", "4",
                    "--mlflow-uri", "nope://tracking")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: MLflow at nope://tracking: ")
    assert not (tmp_path / "report").exists() and not (tmp_path / "repo").exists()


# A fresh interpreter in which `import mlflow` fails, as it does without the extra installed.
_WITHOUT_MLFLOW = ("import sys; sys.modules['mlflow'] = None; "
                   "from training.cli import main; main()")


@pytest.mark.parametrize(("extra", "status", "stderr"), [
    ((), 0, ""),
    (("--mlflow-uri", "http://127.0.0.1:9"), 1,
     'Error: --mlflow-uri needs MLflow: pip install "surrogate-serving[mlflow]"\n'),
])
def test_without_mlflow_only_tracking_needs_it(table, tmp_path, extra, status, stderr):
    args = ["sweep", "--data", str(table), "--inputs", "a,b", "--outputs", "y", "--name", "m",
            "--repo", str(tmp_path / "repo"), "--report", str(tmp_path / "report"),
            "--activations", "tanh", "--hidden", "4", *TINY, "--no-progress", *extra]
    done = subprocess.run([sys.executable, "-c", _WITHOUT_MLFLOW, *args], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == status, done.stderr
    assert done.stderr == stderr
