"""The README's path, for real: ``surrogate demo`` trains the demo models, ``surrogate serve``
serves them under gunicorn, and predictions over V1, V2 and ``surrogate predict`` match the
simulations the models stand in for."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.e2e.server import SURROGATE, clean_env, running_server
from training.functions import FUNCTIONS


def readme_env(**overrides: str) -> dict[str, str]:
    """The environment a README reader has after ``make setup``: ``surrogate`` on the PATH."""
    return clean_env(PATH=f"{SURROGATE.parent}{os.pathsep}{os.environ['PATH']}", **overrides)


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory):
    """The README's ``surrogate demo`` command, run as written in a fresh directory: the demo
    models in ``models/``, their tables in ``data/``."""
    root = tmp_path_factory.mktemp("demo")
    (command,) = readme_commands("surrogate demo ")
    done = subprocess.run(["bash", "-c", command], cwd=root, capture_output=True, text=True,
                          env=readme_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def demo_server(demo_repo):
    with running_server(demo_repo / "models", demo_repo / "server.log") as server:
        yield server


def _relative_rmse(predicted, truth) -> float:
    return float(np.sqrt(np.mean((predicted - truth) ** 2)) / np.std(truth))


def test_demo_skips_models_that_exist(demo_repo):
    command = [str(SURROGATE), "demo", "--repo", str(demo_repo / "models"), "--if-missing"]
    done = subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("skipped") == 3
    assert not (demo_repo / "models" / "borehole" / "2").exists()


def test_every_demo_model_is_ready(demo_server):
    index = requests.post(f"{demo_server.url}/v2/repository/index", json={}, timeout=10).json()
    assert {(m["name"], m["state"]) for m in index} == {
        ("borehole", "READY"), ("thermal_actuator", "READY"), ("surface", "READY")
    }


def test_v1_named_features_match_the_simulation(demo_server):
    fn = FUNCTIONS["thermal_actuator"]
    X = fn.sample(50, method="uniform", seed=7)
    names = [spec[0] for spec in fn.inputs]
    body = {"instances": [dict(zip(names, map(float, row), strict=True)) for row in X]}
    reply = requests.post(f"{demo_server.url}/v1/models/thermal_actuator:predict", json=body,
                          timeout=10)
    assert reply.status_code == 200, reply.text
    predicted = np.array([[p["displacement"], p["T_max"]] for p in reply.json()["predictions"]])
    truth = fn(X)
    for j in range(truth.shape[1]):
        assert _relative_rmse(predicted[:, j], truth[:, j]) < 1e-2


def test_v2_json_matches_the_simulation(demo_server):
    fn = FUNCTIONS["surface"]
    X = fn.sample(200, method="uniform", seed=3).astype(np.float32)
    body = {"inputs": [{"name": "inputs", "shape": list(X.shape), "datatype": "FP32",
                        "data": X.ravel().tolist()}]}
    reply = requests.post(f"{demo_server.url}/v2/models/surface/infer", json=body, timeout=10)
    assert reply.status_code == 200, reply.text
    output = reply.json()["outputs"][0]
    assert output["name"] == "outputs" and output["shape"] == [200, 1]
    predicted = np.asarray(output["data"]).reshape(200, 1)
    assert _relative_rmse(predicted[:, 0], fn(X.astype(np.float64))[:, 0]) < 5e-2


def test_surrogate_predict_writes_the_table_with_predictions(demo_repo, demo_server, tmp_path):
    out = tmp_path / "pred.csv"
    command = [str(SURROGATE), "predict", "--url", demo_server.url, "--model", "borehole",
               "--batch-size", "300", "--out", str(out), str(demo_repo / "data" / "borehole.csv")]
    done = subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1000 and "Q_pred" in rows[0]
    truth = np.array([float(r["Q"]) for r in rows])
    predicted = np.array([float(r["Q_pred"]) for r in rows])
    assert _relative_rmse(predicted, truth) < 1e-2


def test_surrogate_predict_fails_in_one_line(demo_repo, demo_server):
    table = str(demo_repo / "data" / "surface.csv")
    command = [str(SURROGATE), "predict", "--url", demo_server.url, "--model", "nope", table]
    done = subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode != 0 and "HTTP 404" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_surrogate_evaluate_on_the_fresh_runs(demo_repo, tmp_path):
    import json

    command = [str(SURROGATE), "evaluate", "borehole", "--repo", str(demo_repo / "models"),
               "--data", str(demo_repo / "data" / "borehole-new.csv"), "--json",
               "--plot", str(tmp_path / "parity.png"), "--fail-above", "0.02"]
    done = subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["rows"] == 200 and report["failed"] == []
    # The card's cross-validated estimate is honest: new runs land within a factor of it.
    card = json.loads((demo_repo / "models" / "borehole" / "1" / "model.json").read_text())
    estimate = card["metrics"]["per_output"]["Q"]["relative_rmse"]
    assert report["per_output"]["Q"]["relative_rmse"] < 3 * estimate


def readme_commands(prefix: str) -> list[str]:
    """Every command starting with ``prefix`` in README.md's ``sh`` blocks, continuation lines
    joined, a quoted body spanning lines kept whole."""
    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        current = ""
        for line in block.splitlines():
            if not current and not line.startswith(prefix):
                continue
            current += line + "\n"
            if current.count("'") % 2 == 0 and not line.rstrip().endswith("\\"):
                commands.append(current)
                current = ""
    return commands


def test_the_readme_curl_examples_work_as_written(demo_server, tmp_path):
    """Each README curl command, run by bash as pasted; only the README's ``localhost:8000``
    becomes this server's address. A ``.curlrc`` makes curl fail on an HTTP error status."""
    commands = readme_commands("curl ")
    assert len(commands) >= 6 and any("-d '" in c for c in commands)
    (tmp_path / ".curlrc").write_text("--fail-with-body\n--silent\n--show-error\n")
    env = clean_env(CURL_HOME=str(tmp_path))
    for command in commands:
        assert "localhost:8000" in command
        pasted = command.replace("localhost:8000", demo_server.address)
        done = subprocess.run(["bash", "-c", pasted], capture_output=True, text=True, env=env,
                              timeout=30)
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
        assert json.loads(done.stdout), command  # a JSON answer, not an empty one


# The README's surrogate commands that this file runs otherwise: ``demo`` is the demo_repo
# fixture itself, ``serve`` (fixed port 8000) is what running_server starts on a free port.
RUN_ELSEWHERE = {"demo", "serve"}


def test_the_readme_surrogate_commands_work_as_written(demo_repo, demo_server, tmp_path):
    """Each ``surrogate`` command of the README (models, show, train, evaluate, sweep, export,
    predict), run by bash as pasted, in README order, in a copy of the directory the README's
    ``surrogate demo`` filled; ``surrogate predict`` finds the server through SURROGATE_URL."""
    commands = readme_commands("surrogate ")
    verbs = [command.split()[1] for command in commands]
    assert {"models", "show", "train", "design", "evaluate", "sweep", "export",
            "predict"} <= set(verbs)
    work = tmp_path / "work"
    shutil.copytree(demo_repo, work, ignore=shutil.ignore_patterns("*.log"))
    env = readme_env(SURROGATE_URL=f"http://{demo_server.address}")
    for verb, command in zip(verbs, commands, strict=True):
        if verb in RUN_ELSEWHERE:
            continue
        done = subprocess.run(["bash", "-c", command], cwd=work, capture_output=True,
                              text=True, env=env, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
    # What the commands say they make is there.
    for name in ("my_borehole", "mixed", "borehole_best"):
        assert (work / "models" / name / "1" / "model.onnx").is_file(), name
    assert (work / "sweep-borehole_best" / "leaderboard.csv").is_file()
    with (work / "pred.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 1000
    assert "def borehole(" in (work / "borehole.py").read_text()
    design = (work / "borehole-design.csv").read_text().splitlines()
    assert design[0] == "rw,r,Tu,Hu,Tl,Hl,L,Kw" and len(design) == 65
    assert "void borehole(" in (work / "borehole.c").read_text()


def test_the_browser_lists_the_demo_models_and_shows_their_cards(browser, demo_server):
    """The model browser on the real demo models (headless chromium, tests/e2e/browser.py)."""
    from tests.e2e.browser import css, screenshot, wait_for_model_list, wait_in

    browser.get(demo_server.url + "/")
    wait_for_model_list(browser)
    names = {row.get_attribute("data-model") for row in css(browser, "#models tbody tr")}
    assert names == {"borehole", "thermal_actuator", "surface"}
    screenshot(browser, "index-demo")
    browser.get(demo_server.url + "/ui/models/thermal_actuator")
    wait_in(browser, lambda b: css(b, "#prediction tbody tr[data-output]")
            and css(b, "#sensitivity tbody tr"), "the thermal actuator's page")  # fmt: skip
    assert len(css(browser, "#sensitivity tbody tr")) == 4  # 2 outputs x 2 inputs
    assert "16 tanh → 16 tanh → 2 identity" in css(browser, "#card-summary")[0].text
    screenshot(browser, "model-demo-thermal_actuator")
