"""``surrogate suggest``: the next simulations go where an ensemble's members disagree, spread
apart, away from runs already done, inside the training domain."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from training import SurrogateEnsemble, SurrogateMLP
from training.bundle import write_bundle
from training.cli import main

MEMBER = SurrogateMLP(hidden_layer_sizes=(16, 16), max_iter=50, lbfgs_maxiter=150, alpha=1e-6)
INPUTS = [{"name": "a", "unit": "m", "min": 0.0, "max": 1.0},
          {"name": "b", "unit": "s", "min": 0.0, "max": 1.0}]
OUTPUTS = [{"name": "y", "unit": "K"}, {"name": "z", "unit": "W"}]


def _table(rng, n):
    """Rows crowded into a < 0.5, except a few: the members agree there and nowhere else."""
    X = rng.uniform(0, 1, (n, 2))
    X[: n - 4, 0] *= 0.5
    return X, np.column_stack([np.sin(3 * X[:, 0]) + X[:, 1], 100 * X[:, 0] * X[:, 1]])


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("models")
    X, Y = _table(np.random.default_rng(0), 120)
    ensemble = SurrogateEnsemble(MEMBER, n_members=4, random_state=0, n_jobs=2).fit(X, Y)
    write_bundle(ensemble, repo, "half", inputs=INPUTS, outputs=OUTPUTS, metrics={},
                 training_info={"data": {"source": "half.csv"}})
    single = SurrogateMLP(hidden_layer_sizes=(8,), alpha=1e-3, lbfgs_maxiter=50).fit(X, Y)
    write_bundle(single, repo, "single", inputs=INPUTS, outputs=OUTPUTS, metrics={},
                 training_info={"data": {"source": "half.csv"}})
    return repo


def _run(repo, *args):
    return CliRunner().invoke(main, ["suggest", *args, "--repo", str(repo)])


def _read(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows, np.array([[float(r["a"]), float(r["b"])] for r in rows])


def test_suggestions_go_where_the_members_disagree_and_spread_out(repo, tmp_path):
    out = tmp_path / "next.csv"
    result = _run(repo, "half", "--n", "8", "--seed", "0", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote 8 rows to {out}" in result.output
    rows, x = _read(out)
    assert list(rows[0]) == ["a", "b", "y", "z", "y_std", "z_std"]
    assert np.all((x >= 0) & (x <= 1))
    assert np.mean(x[:, 0] > 0.5) >= 0.75  # the empty half of the domain
    distances = np.linalg.norm(x[:, None] - x[None], axis=2)[np.triu_indices(8, 1)]
    assert distances.min() > 0.1  # a batch, not eight copies of the most uncertain row
    assert all(float(r["y_std"]) > 0 and float(r["z_std"]) > 0 for r in rows)


def test_runs_already_done_are_kept_away_from(repo, tmp_path):
    first = tmp_path / "first.csv"
    assert _run(repo, "half", "--n", "4", "--seed", "0", "--out", str(first)).exit_code == 0
    again = tmp_path / "again.csv"
    result = _run(repo, "half", "--n", "4", "--seed", "0", "--exclude", str(first), "--out",
                  str(again))
    assert result.exit_code == 0, result.output
    _, done = _read(first)
    _, x = _read(again)
    nearest = np.linalg.norm(x[:, None] - done[None], axis=2).min(axis=1)
    assert nearest.min() > 0.1


def test_without_out_the_csv_is_printed(repo):
    result = _run(repo, "half", "--n", "3", "--seed", "1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "a,b,y,z,y_std,z_std" and len(lines) == 4


def test_a_single_model_is_told_how_to_get_an_ensemble(repo):
    result = _run(repo, "single", "--n", "3")
    assert result.exit_code == 1
    assert "model 'single' is not an ensemble" in result.output
    assert "half.csv" in result.output and "--ensemble 5" in result.output
    assert "Traceback" not in result.output


def test_a_missing_model_or_table_is_one_line(repo, tmp_path):
    result = _run(repo, "nothing", "--n", "3")
    assert result.exit_code == 1 and result.output.startswith("Error:")
    result = _run(repo, "half", "--n", "3", "--exclude", str(tmp_path / "none.csv"))
    assert result.exit_code == 1 and "data file not found" in result.output
