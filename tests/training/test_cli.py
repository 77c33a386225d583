from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from training.cli import main
from training.selection import PATHS

FAST = ["--hidden", "8", "--epochs", "40", "--solver", "adam", "--no-progress"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "runs.csv"
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, 120), rng.uniform(1, 2, 120)
    pd.DataFrame({"a": a, "b": b, "y": np.sin(4 * a) * b, "z": np.exp(2 * a) + b}).to_csv(
        path, index=False
    )
    return path


def _train(table, repo, *extra):
    args = [
        "train",
        "--data",
        str(table),
        "--inputs",
        "a,b",
        "--outputs",
        "y,z",
        "--name",
        "m",
        "--repo",
        str(repo),
        *FAST,
        *extra,
    ]
    return CliRunner().invoke(main, args)


def test_train_writes_a_complete_bundle(table, tmp_path):
    result = _train(table, tmp_path, "--units", "a=m,y=K", "--activation", "relu")
    assert result.exit_code == 0, result.output
    version = tmp_path / "m" / "1"
    assert {p.name for p in version.iterdir()} >= {
        "model.onnx",
        "model.json",
        "convergence.png",
        "parity.png",
    }
    card = json.loads((version / "model.json").read_text())
    assert [i["name"] for i in card["inputs"]] == ["a", "b"]
    assert card["inputs"][0]["unit"] == "m" and card["outputs"][0]["unit"] == "K"
    assert 0.0 <= card["inputs"][0]["min"] < card["inputs"][0]["max"] <= 1.0
    assert card["layers"][0] == {"units": 8, "activation": "relu"}
    assert set(card["metrics"]["per_output"]) == {"y", "z"}
    assert card["training"]["refit_on_all_rows"] is False
    assert card["metrics"]["split"] == "cv" and card["metrics"]["rows"] == 120
    assert card["training"]["rows"]["fit"] == 120
    assert "cross-validated metrics" in result.output and "RMSE" in result.output
    assert "chose alpha" in result.output
    # Sobol' indices of the fitted model, per output and input; z = exp(2a) + b: a dominates.
    sensitivity = card["sensitivity"]
    assert sensitivity["n"] == 4096 and sensitivity["evaluations"] == 4096 * 4
    indices = sensitivity["indices"]
    assert set(indices) == {"y", "z"} and set(indices["z"]["ST"]) == {"a", "b"}
    assert set(indices["z"]) == {"S1", "ST", "S1_conf", "ST_conf", "DGSM"}
    assert indices["z"]["S1"]["a"] > 0.7 > indices["z"]["S1"]["b"]
    assert (tmp_path / "m" / "config.pbtxt").is_file()
    assert _train(table, tmp_path).exit_code == 0
    assert (tmp_path / "m" / "2" / "model.onnx").is_file()


def test_train_an_ensemble(table, tmp_path):
    result = _train(table, tmp_path, "--ensemble", "3", "--n-jobs", "2", "--seed", "4")
    assert result.exit_code == 0, result.output
    version = tmp_path / "m" / "1"
    assert {"model.onnx", "jacobian.onnx", "model.json"} <= {p.name for p in version.iterdir()}
    card = json.loads((version / "model.json").read_text())
    assert card["ensemble"] == {"members": 3, "seeds": [4, 5, 6]}
    assert card["training"]["estimator"] == "SurrogateEnsemble"
    assert [t["name"] for t in card["tensors"]["outputs"]] == ["outputs", "std", "jacobian"]
    members = card["metrics"]["members_relative_rmse"]
    assert set(members) == {"y", "z"} and all(len(errors) == 3 for errors in members.values())
    assert card["training"]["fit_log"][0].startswith("member 0 (seed 4): ")
    assert 'name: "std"' in (tmp_path / "m" / "config.pbtxt").read_text()


def test_config_file_keys_and_flags_win(table, tmp_path):
    config = tmp_path / "train.toml"
    config.write_text('hidden = [5, 3]\nactivation = ["tanh", "elu"]\n[units]\nb = "s"\n')
    args = [
        "train",
        "--config",
        str(config),
        "--data",
        str(table),
        "--inputs",
        "a,b",
        "--outputs",
        "y",
        "--name",
        "c",
        "--repo",
        str(tmp_path / "r"),
        "--epochs",
        "20",
        "--solver",
        "adam",
        "--no-progress",
    ]
    assert CliRunner().invoke(main, args).exit_code == 0
    card = json.loads((tmp_path / "r" / "c" / "1" / "model.json").read_text())
    assert [layer["units"] for layer in card["layers"]] == [5, 3, 1]
    assert [layer["activation"] for layer in card["layers"]] == ["tanh", "elu", "identity"]
    assert card["inputs"][1]["unit"] == "s"
    result = CliRunner().invoke(main, args + ["--hidden", "4"] + ["--activation", "relu"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "r" / "c" / "2" / "model.json").read_text())
    assert [layer["units"] for layer in card["layers"]] == [4, 1]


# Click's exit codes: 2 for a flag that cannot be used (a usage error), 1 for a run that fails.
BAD_RUNS = [
    (["--inputs", "a,nope"], "no column 'nope'", 1),
    (["--activation", "swirl"], "--activation: ", 2),
    (["--hidden", "8,x"], "--hidden: expected sizes like 64,64", 2),
    (["--outputs", "a"], "column 'a' is named twice", 1),
    (["--y-scaling", "log", "--outputs", "y"], "output 'y' has a non-positive value", 1),
    (["--data", "missing.csv"], "data file not found", 1),
    (["--name", "../escape"], "name", 2),
    (["--ensemble", "1"], "'--ensemble': 1 is not in the range x>=2", 2),
]


@pytest.mark.parametrize(("change", "message", "code"), BAD_RUNS)
def test_bad_runs_fail_in_one_line_and_write_nothing(table, tmp_path, change, message, code):
    options = {
        "--data": str(table),
        "--inputs": "a,b",
        "--outputs": "y,z",
        "--name": "m",
        "--repo": str(tmp_path / "repo"),
        "--hidden": "8",
        "--epochs": "20",
        "--solver": "adam",
    }
    pairs = dict(zip(change[::2], change[1::2], strict=True))
    args = ["train", "--no-progress"] + [x for k, v in {**options, **pairs}.items() for x in (k, v)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1
    assert not result.exception or isinstance(result.exception, SystemExit)
    assert not any((tmp_path / "repo").rglob("model.onnx"))


def test_unknown_config_key_is_refused(table, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("hiden = [4]\n")
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--config",
            str(config),
            "--data",
            str(table),
            "--inputs",
            "a",
            "--outputs",
            "y",
            "--name",
            "x",
        ],
    )
    assert result.exit_code == 2 and "unknown key 'hiden'" in result.output  # usage


def test_drop_invalid_reports_the_count(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.uniform(0, 1, 60), "y": rng.uniform(0, 1, 60)}).astype(object)
    frame.loc[4, "a"] = "n/a"
    frame.to_csv(tmp_path / "t.csv", index=False)
    base = [
        "train",
        "--data",
        str(tmp_path / "t.csv"),
        "--inputs",
        "a",
        "--outputs",
        "y",
        "--name",
        "d",
        "--repo",
        str(tmp_path / "repo"),
        *FAST,
    ]
    refused = CliRunner().invoke(main, base)
    assert refused.exit_code == 1 and "invalid value 'n/a' in column 'a'" in refused.output
    result = CliRunner().invoke(main, base + ["--drop-invalid"])
    assert result.exit_code == 0, result.output
    assert "dropped 1 row(s)" in result.output


def test_a_test_split_is_reported_beside_the_cross_validated_estimate(table, tmp_path):
    result = _train(table, tmp_path, "--test-fraction", "0.25")
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "m" / "1" / "model.json").read_text())
    metrics = card["metrics"]
    assert metrics["split"] == "holdout" and metrics["rows"] == 30
    assert metrics["cross_validation"]["split"] == "cv"
    assert metrics["cross_validation"]["rows"] == 90
    assert card["training"]["rows"]["fit"] == 90
    assert "held-out test metrics (30 rows)" in result.output


def test_the_card_records_the_choice(table, tmp_path):
    assert _train(table, tmp_path).exit_code == 0
    training = json.loads((tmp_path / "m" / "1" / "model.json").read_text())["training"]
    selection = training["selection"]
    assert selection["method"] == "cv" and selection["folds"] == 4
    assert training["alpha"] == selection["alpha"] == selection["candidates"][0]["alpha"]
    ranks = [c["rank"] for c in selection["candidates"]]
    assert ranks == sorted(ranks) == list(range(1, len(ranks) + 1))
    # Every step of every path on both inputs, and a path per input set the screening tried.
    tried = selection["screened_inputs"]
    steps = sum(len(alphas) for alphas in PATHS.values())
    assert len(ranks) == steps + len(tried) * len(PATHS[selection["path"]])
    assert {c["inputs"] for c in selection["candidates"]} == {2} | {2 - len(t) for t in tried}
    assert set(selection["dropped_inputs"]) <= {"a", "b"} and selection["candidates"][0][
        "inputs"] == 2 - len(selection["dropped_inputs"])
    assert "out-of-fold predictions" in json.loads(
        (tmp_path / "m" / "1" / "model.json").read_text())["metrics"]["source"]
    # The activation race (--activation auto, the default): both, and the winner.
    race = selection["activation_race"]
    assert set(race) == {"tanh", "silu"} and selection["activation"] in race
    assert {c["activation"] for c in selection["candidates"]} == {selection["activation"]}


def test_auto_activation_goes_alone(table, tmp_path):
    result = _train(table, tmp_path, "--activation", "auto,tanh")
    assert result.exit_code == 2 and "--activation: auto chooses one activation" in result.output
    assert not (tmp_path / "m").exists()


def test_error_notices():
    from training.pipeline import error_notices

    def metrics(held, train, noise=False):
        return {"per_output": {"y": {"relative_rmse": held}},
                "training": {"y": {"relative_rmse": train}}, "noise_suspected": noise}

    (overfit,) = error_notices(metrics(0.2, 0.01))
    assert overfit.startswith("y: the held-out error (RMSE/std 0.2) is 20x the training error")
    (noisy,) = error_notices(metrics(0.05, 0.045, noise=True))
    assert "the noise level of the table" in noisy
    assert error_notices(metrics(0.05, 0.045)) == []  # no sign of noise: underfitting, say
    assert error_notices(metrics(1e-3, 1e-4)) == []  # far apart, but both tiny


@pytest.fixture(scope="module")
def trained(table, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    assert _train(table, repo).exit_code == 0
    return repo


def _fresh_table(path, rows=60, seed=5, outside=0):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.1, 0.9, rows), rng.uniform(1.1, 1.9, rows)  # inside the training range
    a[:outside] += 2.0  # beyond it
    pd.DataFrame({"a": a, "b": b, "y": np.sin(4 * a) * b, "z": np.exp(2 * a) + b}).to_csv(
        path, index=False)
    return path


def test_evaluate_measures_a_model_on_new_rows(trained, tmp_path):
    fresh = _fresh_table(tmp_path / "new.csv", outside=3)
    plot = tmp_path / "parity.png"
    result = CliRunner().invoke(main, ["evaluate", "m", "--data", str(fresh), "--repo",
                                       str(trained), "--json", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rows"] == 60 and report["out_of_domain_rows"] == 3
    assert report["out_of_domain_by_input"] == {"a": 3}
    assert set(report["per_output"]) == {"y", "z"}
    assert set(report["per_output"]["y"]) == {"r2", "rmse", "relative_rmse", "max_abs_error"}
    assert plot.read_bytes()[:4] == b"\x89PNG" and report["failed"] == []
    text = CliRunner().invoke(main, ["evaluate", "m", "--data", str(fresh), "--repo",
                                     str(trained), "--plot", str(plot)])
    assert "3 of 60 rows outside the training domain (a: 3)" in text.output


def test_evaluate_fails_above_the_bound(trained, tmp_path):
    fresh = _fresh_table(tmp_path / "new.csv")
    base = ["evaluate", "m", "--data", str(fresh), "--repo", str(trained), "--plot",
            str(tmp_path / "p.png")]
    assert CliRunner().invoke(main, base + ["--fail-above", "10"]).exit_code == 0
    result = CliRunner().invoke(main, base + ["--fail-above", "1e-9"])
    assert result.exit_code == 1
    assert "RMSE/std above 1e-09 for y, z" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["nope"], "no model 'nope'"),
    (["m", "--version", "7"], "has no version 7"),
])
def test_evaluate_refuses_in_one_line(trained, tmp_path, args, message):
    fresh = _fresh_table(tmp_path / "new.csv")
    result = CliRunner().invoke(main, ["evaluate", *args, "--data", str(fresh), "--repo",
                                       str(trained)])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert message in line


def test_evaluate_names_a_missing_column(trained, tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"a": [0.1], "b": [1.5], "y": [0.3]}).to_csv(path, index=False)
    result = CliRunner().invoke(main, ["evaluate", "m", "--data", str(path), "--repo",
                                       str(trained)])
    assert result.exit_code == 1 and "no column 'z'" in result.stderr


def test_models_lists_the_repository(trained, tmp_path):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(trained, repo)
    shutil.copytree(repo / "m", repo / "broken")
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not the model")
    result = CliRunner().invoke(main, ["models", "--repo", str(repo), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    card = json.loads((repo / "m" / "1" / "model.json").read_text())
    assert rows["m"]["versions"] == [1] and rows["m"]["state"] == "ok"
    assert rows["m"]["inputs"] == "a, b" and rows["m"]["outputs"] == "y, z"
    figure = card["metrics"]["per_output"]["y"]["relative_rmse"]
    assert f"y {figure:.2e}" in rows["m"]["held_out_relative_rmse"]
    assert rows["broken"]["state"] == "model.onnx does not match the card's sha256"
    text = CliRunner().invoke(main, ["models", "--repo", str(repo)]).output
    assert "broken" in text and "sha256" in text


def test_show_prints_the_card_readably(trained):
    result = CliRunner().invoke(main, ["show", "m", "--repo", str(trained)])
    assert result.exit_code == 0, result.output
    card = json.loads((trained / "m" / "1" / "model.json").read_text())
    low, high = card["inputs"][0]["min"], card["inputs"][0]["max"]
    assert f"{low:.6g} .. {high:.6g}" in result.output
    assert "8 tanh -> 2 identity" in result.output
    assert "held-out metrics" in result.output and "bundle: ok" in result.output
    ranked = sorted(card["sensitivity"]["indices"]["z"]["ST"].items(), key=lambda kv: -kv[1])
    assert ("inputs that matter for z (total Sobol' index): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ranked)) in result.output
    raw = CliRunner().invoke(main, ["show", "m", "--repo", str(trained), "--json"])
    assert json.loads(raw.output) == card
    missing = CliRunner().invoke(main, ["show", "nope", "--repo", str(trained)])
    assert missing.exit_code == 1 and "no model 'nope'" in missing.stderr


def test_the_metrics_source_names_the_blend_a_distilled_model_came_from():
    from types import SimpleNamespace

    from training.pipeline import _heldout_source

    selection = {"folds": 4, "rows": 600, "final_rows": 600, "distilled_from": None}
    model = SimpleNamespace(heldout_kind_="cv", selection_=selection)
    assert _heldout_source(model, 1).startswith("out-of-fold predictions of the 4 fold models,")
    selection["distilled_from"] = {"candidates": [{"path": "weak", "alpha": 1.0, "weight": 1.0}]}
    source = _heldout_source(model, 1)
    assert source.startswith("out-of-fold predictions of the blend of 1 candidates' fold models")
    assert "trained on all 600 rows" in source
