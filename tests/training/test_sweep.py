from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from training.cli import main
from training.data import Dataset
from training.sweep import Grid, run_sweep

FAST = {"max_iter": 15, "solver": "adam", "alpha": 1e-4}  # one fit per run: the sweep's mechanics


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    rng = np.random.default_rng(0)
    X = rng.uniform(0.0, 1.0, (200, 2))
    Y = (np.sin(4 * X[:, 0]) * (1 + X[:, 1]))[:, None]
    return Dataset(X=X, Y=Y, inputs=("a", "b"), outputs=("y",), source="mem.csv", sha256="0")


@pytest.fixture(scope="module")
def table(tmp_path_factory, dataset) -> str:
    path = tmp_path_factory.mktemp("data") / "runs.csv"
    pd.DataFrame({"a": dataset.X[:, 0], "b": dataset.X[:, 1], "y": dataset.Y[:, 0]}).to_csv(
        path, index=False)
    return str(path)


@pytest.mark.parametrize(("activations", "hidden", "expected_acts", "expected_hidden"), [
    ("relu, tanh", "8", (("relu",), ("tanh",)), ((8,),)),
    ("tanh,relu+identity,tanh+elu", "4,4;8,8", (("tanh",), ("relu", "identity"),
                                                ("tanh", "elu")), ((4, 4), (8, 8))),
    ("swish", "16;8,4", (("swish",),), ((16,), (8, 4))),
])
def test_grid_parses_activations_and_architectures(activations, hidden, expected_acts,
                                                   expected_hidden):
    grid = Grid.parse(activations, hidden)
    assert grid.activations == expected_acts and grid.hidden == expected_hidden
    assert len(grid.configs()) == len(expected_acts) * len(expected_hidden)


@pytest.mark.parametrize(("activations", "hidden", "message"), [
    ("relu,tanhh", "8", "unknown activation 'tanhh'"),
    ("relu+nope", "8,8", "unknown activation 'nope'"),
    ("relu", "8;0", "positive integers"),
    ("relu", "8;x,4", "positive integers"),
    ("", "8", "at least one activation"),
])
def test_grid_rejects_bad_items_clearly(activations, hidden, message):
    with pytest.raises(ValueError, match=message):
        Grid.parse(activations, hidden)


def test_local_sweep_ranks_every_configuration_and_survives_failures(dataset, tmp_path):
    # "tanh+elu" lists two activations, so it fails on the one-layer architecture.
    grid = Grid.parse("tanh,relu,tanh+elu", "4;4,4", FAST)
    seen = []
    board = run_sweep(dataset, grid, seeds=2, n_jobs=2, progress=seen.append)
    assert len(seen) == board.total_tasks == 12 and not board.interrupted
    assert len(board.rows) == 6
    ok = [r for r in board.rows if r["status"] == "ok"]
    assert [r["val_rmse_mean"] for r in ok] == sorted(r["val_rmse_mean"] for r in ok)
    assert [r["rank"] for r in board.rows] == list(range(1, 7))
    (failed,) = [r for r in board.rows if r["status"] == "failed"]
    assert (failed["activations"], failed["hidden"], failed["rank"]) == ("tanh+elu", "4", 6)
    assert "2 names for 1 hidden layers" in failed["reason"]
    assert all(r["epochs"] == 15 and r["n_params"] > 0 and r["fit_seconds"] > 0 for r in ok)

    board.write(tmp_path)
    with open(tmp_path / "leaderboard.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["activations"], r["hidden"]) for r in rows] == [
        (r["activations"], r["hidden"]) for r in board.rows]
    document = json.loads((tmp_path / "leaderboard.json").read_text())
    assert len(document["runs"]) == 12 and document["rows"][-1]["val_rmse_mean"] is None
    assert all(len(r["val_curve"]) == 15 for r in document["runs"] if r["status"] == "ok")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "![validation loss curves](curves.png)" in (tmp_path / "report.md").read_text()


def test_cross_validation_runs_one_task_per_fold(dataset):
    board = run_sweep(dataset, Grid.parse("tanh", "4", FAST), cv=3, n_jobs=1)
    assert sorted(r["fold"] for r in board.runs) == [0, 1, 2]
    assert board.rows[0]["runs"] == 3 and board.rows[0]["val_rmse_std"] > 0


def test_cli_sweep_exports_the_winner_with_the_sweep_in_its_card(table, tmp_path):
    report = tmp_path / "report"
    args = ["sweep", "--data", table, "--inputs", "a,b", "--outputs", "y", "--name", "m",
            "--repo", str(tmp_path / "repo"), "--activations", "tanh,relu+identity",
            "--hidden", "4;4,4", "--epochs", "15", "--solver", "adam", "--n-jobs", "2",
            "--report", str(report), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert {p.name for p in report.iterdir()} == {
        "leaderboard.csv", "leaderboard.json", "curves.png", "report.md"}
    board = json.loads((report / "leaderboard.json").read_text())
    winner = board["rows"][0]
    card = json.loads((tmp_path / "repo" / "m" / "1" / "model.json").read_text())
    sweep = card["training"]["sweep"]
    assert sweep["rank"] == 1 and sweep["leaderboard"] == str(report / "leaderboard.json")
    assert sweep["grid"]["activations"] == ["tanh", "relu+identity"]
    assert card["training"]["params"]["hidden_layer_sizes"] == [
        int(s) for s in winner["hidden"].split(",")]
    assert "relu+identity [4]: 1 of 1 runs failed" in result.output


def test_cli_sweep_rejects_a_bad_activation_without_writing(table, tmp_path):
    result = CliRunner().invoke(main, [
        "sweep", "--data", table, "--inputs", "a,b", "--outputs", "y", "--name", "m",
        "--repo", str(tmp_path), "--activations", "relu,bogus", "--report", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "unknown activation 'bogus'" in result.output
    assert not any(tmp_path.iterdir())
