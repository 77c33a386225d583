"""A diverging fit: recovered by a lower learning rate and said so, or stopped in one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from training.cli import main
from training.estimator import SurrogateMLP
from training.optim import DivergenceWarning
from training.sweep import Grid, run_sweep

# Adam's step is bounded by the learning rate and every activation is computed stably, so only
# absurd rates overflow float64: with this table and two ReLU layers the loss stays finite at
# 1e50, diverges from about 1e51 on, and at 1e60 diverges at every rate run_adam tries (1e60,
# 1e59, 1e58).
RELU = ["--hidden", "16,16", "--activation", "relu", "--solver", "adam", "--epochs", "20",
        "--no-progress"]


def _frame(scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, 120), rng.uniform(0, 1, 120)
    return pd.DataFrame({"a": a, "b": b, "y": scale * np.sin(4 * a) * (1 + b)})


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "runs.csv"
    _frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def huge_table(tmp_path_factory):
    """Outputs near 1e160: finite, but their square is not, whatever the learning rate."""
    path = tmp_path_factory.mktemp("data") / "huge.csv"
    _frame(1e160).to_csv(path, index=False)
    return path


def _args(table, repo, *extra):
    return ["train", "--data", str(table), "--inputs", "a,b", "--outputs", "y", "--name", "m",
            "--repo", str(repo), *RELU, *extra]


def test_a_normal_fit_prints_no_notice(table, tmp_path):
    result = CliRunner().invoke(main, _args(table, tmp_path, "--lr", "1e-3"))
    assert result.exit_code == 0, result.output
    assert "notice" not in result.stderr and (tmp_path / "m" / "1" / "model.onnx").is_file()


@pytest.mark.parametrize(("rate", "message"), [
    (1e51, "the loss diverged at learning rate 1e+51; training recovered with learning rate "
           "1e+50"),
    (1e52, "the loss diverged at learning rate 1e+52 and 1e+51; training recovered with "
           "learning rate 1e+50"),
])
def test_the_estimator_warns_when_it_recovered(rate, message):
    frame = _frame()
    model = SurrogateMLP(hidden_layer_sizes=(16, 16), activation="relu", solver="adam",
                         max_iter=20, learning_rate_init=rate, random_state=0)
    with pytest.warns(DivergenceWarning) as caught:
        model.fit(frame[["a", "b"]].to_numpy(), frame["y"].to_numpy())
    assert [str(w.message) for w in caught] == [message]
    assert np.isfinite(model.loss_curve_).all()


def test_train_says_it_recovered_even_when_the_model_is_then_refused(table, tmp_path):
    # A real process, so the warnings are those a user sees. Recovering from 1e52 at 1e50 leaves
    # weights near 1e50, beyond float32: the export must refuse that model and write nothing.
    command = [sys.executable, "-c", "from training.cli import main; main()",
               *_args(table, tmp_path, "--lr", "1e52")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    notices = [line for line in done.stderr.splitlines() if line.startswith("notice:")]
    assert notices == ["notice: the loss diverged at learning rate 1e+52 and 1e+51; training "
                       "recovered with learning rate 1e+50"]
    assert done.returncode != 0
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_a_sweep_records_the_recovery_of_a_configuration(tmp_path):
    from training.data import Dataset

    frame = _frame()
    data = Dataset(X=frame[["a", "b"]].to_numpy(), Y=frame[["y"]].to_numpy(), inputs=("a", "b"),
                   outputs=("y",), source="mem.csv", sha256="0")
    grid = Grid.parse("relu", "16,16", {"solver": "adam", "max_iter": 20,
                                        "learning_rate_init": 1e51})
    (run,) = run_sweep(data, grid, n_jobs=1).runs
    assert run["notice"] == ("the loss diverged at learning rate 1e+51; training recovered "
                             "with learning rate 1e+50")


@pytest.mark.parametrize(("which", "extra"), [
    ("table", ("--lr", "1e60")),
    ("huge_table", ("--y-scaling", "none")),
])
def test_divergence_at_every_rate_is_a_one_line_error(request, tmp_path, which, extra):
    result = CliRunner().invoke(main, _args(request.getfixturevalue(which), tmp_path, *extra))
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: training diverged at every learning rate tried; lower ")
    assert "notice" not in result.stderr and not (tmp_path / "m").exists()
