"""Interrupting `surrogate sweep` and `surrogate train` for real: SIGINT and SIGKILL sent to the
process at chosen and at random moments, then the report and the repository are checked."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from service.repository import scan
from tests.tables import write_runs_table
from training.cli import main

CLI = "from training.cli import main; main()"

# Prepended to CLI in the child when a test wants it to stop at a moment of the publication:
# an audit hook sees the bundle writer's own os.mkdir / open / os.rename calls, announces the
# moment on stderr and waits there for the test's signal (SIGINT then surfaces as a
# KeyboardInterrupt raised by that very call). Nothing in the product knows about it.
PAUSE_HOOK = """
import os, sys, time
def _moment(event, args):
    if event == "os.mkdir" and os.path.basename(str(args[0])).startswith(".tmp-"):
        return "staging"
    if event == "open" and str(args[0]).endswith("model.json") and ".tmp-" in str(args[0]):
        return "writing"
    if event == "os.rename":
        target = os.path.basename(str(args[1]))
        return "publishing" if target.isdigit() else "config" if target == "config.pbtxt" else None
def _hook(event, args, wanted=os.environ["PAUSE_AT"]):
    if event in ("os.mkdir", "open", "os.rename") and _moment(event, args) == wanted:
        sys.stderr.write("PAUSED\\n"); sys.stderr.flush(); time.sleep(120)
sys.addaudithook(_hook)
"""
MOMENTS = ("staging", "writing", "publishing", "config")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_runs_table(tmp_path_factory.mktemp("data") / "runs.csv", 400)


def _train_args(table, repo) -> list[str]:
    return ["train", "--data", str(table), "--inputs", "a,b", "--outputs", "y", "--name", "m",
            "--repo", str(repo), "--hidden", "4", "--epochs", "20", "--solver", "adam",
            "--no-progress"]


def _start(code: str, args: list[str], **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def _complete_versions(repo) -> list[int]:
    """The versions the service would serve; fails unless each is a whole, matching bundle."""
    versions = []
    for ref in scan(repo).get("m", []):
        card = json.loads(ref.card_path.read_text())
        digest = hashlib.sha256(ref.onnx_path.read_bytes()).hexdigest()
        assert card["onnx"]["sha256"] == digest and card["version"] == ref.version
        versions.append(ref.version)
    return sorted(versions)


def _visible_entries(repo) -> set[str]:
    model_dir = repo / "m"
    if not model_dir.is_dir():
        return set()
    return {p.name for p in model_dir.iterdir() if not p.name.startswith(".")}


def _hidden_entries(repo) -> set[str]:
    model_dir = repo / "m"
    return {p.name for p in model_dir.iterdir() if p.name.startswith(".")} if model_dir.is_dir() \
        else set()


def _train_again(table, repo, expected_version: int) -> None:
    result = CliRunner().invoke(main, _train_args(table, repo))
    assert result.exit_code == 0, result.output
    assert _complete_versions(repo)[-1] == expected_version
    assert (repo / "m" / "config.pbtxt").is_file()


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_train_killed_mid_publication_leaves_whole_versions_or_none(table, tmp_path, moment,
                                                                    sig):
    process = _start(PAUSE_HOOK + CLI, _train_args(table, tmp_path), PAUSE_AT=moment)
    assert process.stderr.readline() == "PAUSED\n"
    process.send_signal(sig)
    process.communicate(timeout=120)
    assert process.returncode != 0

    # The version becomes public by one rename: killed before it, there is no version; after it
    # (while replacing config.pbtxt), version 1 is whole.
    published = [1] if moment == "config" else []
    assert _complete_versions(tmp_path) == published
    assert _visible_entries(tmp_path) == {str(v) for v in published}
    if sig == signal.SIGINT:  # the writer's own cleanup ran: nothing hidden is left
        assert _hidden_entries(tmp_path) == set()
    else:  # killed outright, the staging entries stay, hidden, so no reader takes them
        assert all(name.startswith(".tmp-") for name in _hidden_entries(tmp_path))
    _train_again(table, tmp_path, expected_version=len(published) + 1)


def test_train_killed_at_random_moments_never_leaves_a_partial_version(table, tmp_path):
    rng = random.Random(20261123)
    process = _start(CLI, _train_args(table, tmp_path))
    start = time.monotonic()
    process.communicate(timeout=300)
    full_run = time.monotonic() - start  # imports, fit, export, publish: the signals fall in it
    assert process.returncode == 0
    for attempt in range(6):
        sig = (signal.SIGINT, signal.SIGKILL)[attempt % 2]
        process = _start(CLI, _train_args(table, tmp_path))
        time.sleep(rng.uniform(0.5, 1.0) * full_run)
        process.send_signal(sig)
        process.communicate(timeout=300)
        versions = _complete_versions(tmp_path)
        assert _visible_entries(tmp_path) == {str(v) for v in versions} | {"config.pbtxt"}
        assert versions == list(range(1, len(versions) + 1))
    _train_again(table, tmp_path, expected_version=len(_complete_versions(tmp_path)) + 1)


def test_the_next_write_removes_staging_entries_abandoned_long_ago(table, tmp_path):
    process = _start(PAUSE_HOOK + CLI, _train_args(table, tmp_path), PAUSE_AT="publishing")
    assert process.stderr.readline() == "PAUSED\n"
    process.kill()
    process.communicate(timeout=120)
    leftovers = [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers
    two_hours_ago = time.time() - 7200
    for path in leftovers:
        os.utime(path, (two_hours_ago, two_hours_ago))
    _train_again(table, tmp_path, expected_version=1)
    assert _hidden_entries(tmp_path) == set()


def _sweep_args(table, tmp_path, *extra) -> list[str]:
    return ["sweep", "--data", str(table), "--inputs", "a,b",
            "--outputs", "y", "--name", "m", "--repo", str(tmp_path / "repo"), "--report",
            str(tmp_path / "report"), "--activations", "relu,tanh,elu,silu,gelu,softplus",
            "--hidden", "16,16;32,32", "--seeds", "3", "--solver", "adam", "--epochs", "300",
            *extra]


@pytest.mark.parametrize(("n_jobs", "whole_group", "tracked"), [
    ("1", False, False),  # `kill -INT` of the sweep itself, runs in-process
    ("2", True, False),  # Ctrl-C in a terminal: the whole process group, loky workers too
    ("2", True, True),  # the same with MLflow tracking: the parent run ends KILLED
], ids=["in-process", "ctrl-c-workers", "ctrl-c-mlflow"])
def test_an_interrupted_sweep_writes_the_leaderboard_of_what_finished(
        table, tmp_path, monkeypatch, n_jobs, whole_group, tracked):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # see test_tracking.store
    uri = f"file://{tmp_path}/mlruns"
    extra = ("--n-jobs", n_jobs, *(("--mlflow-uri", uri) if tracked else ()))
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, *_sweep_args(table, tmp_path, *extra)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=dict(os.environ))
    for line in process.stdout:  # stdout is a pipe: one line per finished run
        if line.startswith("[2/36]"):
            break
    (os.killpg if whole_group else os.kill)(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, out[-2000:] + err[-4000:]
    assert "interrupted: the leaderboard lists the runs that finished" in err

    document = json.loads((tmp_path / "report" / "leaderboard.json").read_text())
    assert document["interrupted"] is True and document["tasks"] == 36
    assert 2 <= document["finished"] == len(document["runs"]) < 36
    with open(tmp_path / "report" / "leaderboard.csv") as handle:
        assert len(handle.readlines()) == 1 + len(document["rows"])
    assert "Interrupted:" in (tmp_path / "report" / "report.md").read_text()
    assert not (tmp_path / "repo").exists()  # nothing exported, not even half
    if tracked:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("surrogate-sweep-m")
        runs = client.search_runs([experiment.experiment_id])
        (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        assert parent.info.status == "KILLED" and parent.data.tags["interrupted"] == "True"
        # A Ctrl-C while a run is being logged waits for it: every finished fit is a whole run.
        statuses = [r.info.status for r in runs if r is not parent]
        assert statuses == ["FINISHED"] * document["finished"]
