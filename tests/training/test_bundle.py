"""Model bundles: layout, model card, versions, Triton config, and atomic publication."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from training import parity as parity_module
from training.atomic import ABANDONED_AFTER_SECONDS
from training.bundle import CARD_FORMAT, CARD_KEY, latest_version, read_card, write_bundle
from training.estimator import SurrogateMLP
from training.export import to_onnx
from training.graph import IR_VERSION, OPSET
from training.parity import ParityError, deviations, parity, run_onnx
from training.scaling import Scaler

NAMES = ("rw", "L", "Hu")
LOW = np.array([0.05, 1120.0, 990.0])
HIGH = np.array([0.15, 1680.0, 1110.0])
CARD_KEYS = [
    "format", "name", "version", "description", "created", "inputs", "outputs", "tensors",
    "layers", "scaling", "training", "metrics", "onnx",
]  # fmt: skip

TRITON_CONFIG = """\
name: "borehole"
backend: "onnxruntime"
max_batch_size: 0
input [
  {
    name: "inputs"
    data_type: TYPE_FP32
    dims: [ -1, 3 ]
  }
]
output [
  {
    name: "outputs"
    data_type: TYPE_FP32
    dims: [ -1, 2 ]
  }
]
version_policy: { latest: { num_versions: 1 } }
"""


def table(n_rows: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.uniform(LOW, HIGH, (n_rows, 3))
    u = (X - LOW) / (HIGH - LOW)
    return X, np.column_stack([np.exp(u[:, 0] + u[:, 1] * u[:, 2]), u[:, 2] - u[:, 0]])


def input_specs(X: np.ndarray) -> list[dict]:
    return [
        {"name": name, "unit": "m", "min": X[:, j].min(), "max": X[:, j].max()}
        for j, name in enumerate(NAMES)
    ]


@pytest.fixture(scope="module")
def model() -> SurrogateMLP:
    X, Y = table()
    mlp = SurrogateMLP(
        hidden_layer_sizes=(8, 8),
        activation=("prelu", "gelu"),
        solver="adam",
        max_iter=10,
        random_state=0,
        callback=lambda *args: None,
    )
    return mlp.fit(X, Y)


def write(model, repo, name="borehole", **overrides):
    X, _ = table()
    arguments = {
        "inputs": input_specs(X),
        "outputs": [{"name": "Q", "unit": "m3/yr"}, {"name": "dH", "unit": "m"}],
        "metrics": {"split": "holdout", "rows": 24, "per_output": {"Q": {"r2": np.float64(0.9)}}},
        "training_info": {"rows": 120, "data_sha256": "ab" * 32, "fit_seconds": 0.5},
        "description": "test model",
        "extra_files": {"parity.png": b"\x89PNG fake"},
    }
    return write_bundle(model, repo, name, **{**arguments, **overrides})


def snapshot(root) -> dict[str, bytes | None]:
    """Every path under ``root`` (hidden ones too) with the bytes of the files."""
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else None
        for path in Path(root).rglob("*")
    }


def test_layout(model, tmp_path):
    path = write(model, tmp_path)
    assert path == tmp_path / "borehole" / "1"
    assert sorted(os.listdir(tmp_path / "borehole")) == ["1", "config.pbtxt"]
    assert sorted(os.listdir(path)) == ["jacobian.onnx", "model.json", "model.onnx", "parity.png"]
    assert (path / "parity.png").read_bytes() == b"\x89PNG fake"


def test_card(model, tmp_path):
    path = write(model, tmp_path)
    card = read_card(path)
    assert read_card(path / "model.json") == card
    assert list(card) == CARD_KEYS
    assert (card["format"], card["name"], card["version"]) == (CARD_FORMAT, "borehole", 1)
    assert card["description"] == "test model"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", card["created"])
    X, _ = table()
    assert [spec["name"] for spec in card["inputs"]] == list(NAMES)
    assert [spec["min"] for spec in card["inputs"]] == X.min(axis=0).tolist()
    assert [spec["max"] for spec in card["inputs"]] == X.max(axis=0).tolist()
    assert card["outputs"] == [{"name": "Q", "unit": "m3/yr"}, {"name": "dH", "unit": "m"}]
    assert card["tensors"] == {
        "input": "inputs",
        "outputs": [
            {"name": "outputs", "shape": [-1, 2], "datatype": "FP32"},
            {"name": "jacobian", "shape": [-1, 2, 3], "datatype": "FP32",
             "file": "jacobian.onnx"},
        ],
    }
    assert "ensemble" not in card
    assert card["layers"] == [
        {"units": 8, "activation": "prelu"},
        {"units": 8, "activation": "gelu"},
        {"units": 2, "activation": "identity"},
    ]
    for side, scaler in (("inputs", model.x_scaler_), ("outputs", model.y_scaler_)):
        restored = Scaler.from_dict(card["scaling"][side])
        np.testing.assert_array_equal(restored.offset_, scaler.offset_)
        np.testing.assert_array_equal(restored.scale_, scaler.scale_)
    training = card["training"]
    assert (training["estimator"], training["epochs"], training["rows"]) == (
        "SurrogateMLP",
        model.n_iter_,
        120,
    )
    assert training["params"]["hidden_layer_sizes"] == [8, 8]
    assert training["params"]["callback"].startswith("<function")
    assert card["metrics"]["per_output"] == {"Q": {"r2": 0.9}}
    digest, jacobian_digest = (
        hashlib.sha256((path / file).read_bytes()).hexdigest()
        for file in ("model.onnx", "jacobian.onnx")
    )
    assert card["onnx"] == {
        "file": "model.onnx",
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "sha256": digest,
        "graphs": {"jacobian.onnx": {"sha256": jacobian_digest}},
    }


def test_card_is_embedded_in_the_graph(model, tmp_path):
    path = write(model, tmp_path)
    onnx_model = onnx.load(path / "model.onnx")
    onnx.checker.check_model(onnx_model, full_check=True)
    embedded = json.loads({p.key: p.value for p in onnx_model.metadata_props}[CARD_KEY])
    card = read_card(path)
    del card["onnx"]["sha256"]
    assert embedded == card
    X, _ = table()
    assert parity(model, onnx_model, X) < 1e-5


def test_jacobian_graph(model, tmp_path):
    path = write(model, tmp_path)
    jacobian_model = onnx.load(path / "jacobian.onnx")
    onnx.checker.check_model(jacobian_model, full_check=True)
    graph = jacobian_model.graph
    assert [i.name for i in graph.input] == ["inputs"]
    assert [o.name for o in graph.output] == ["outputs", "jacobian"]
    X, _ = table()
    got = run_onnx(jacobian_model, X[:7], ["outputs", "jacobian"])
    assert got["jacobian"].shape == (7, 2, 3) and got["jacobian"].dtype == np.float32
    np.testing.assert_array_equal(got["outputs"], run_onnx(onnx.load(path / "model.onnx"), X[:7]))
    assert deviations(model, jacobian_model, X) == {
        "outputs": pytest.approx(0, abs=1e-5),
        "jacobian": pytest.approx(0, abs=1e-5),
    }


def test_versions_increase(model, tmp_path):
    model_dir = tmp_path / "borehole"
    assert latest_version(tmp_path, "borehole") is None
    assert [write(model, tmp_path).name for _ in range(3)] == ["1", "2", "3"]
    first = snapshot(model_dir / "1")
    # What the service does not take for a version is not one here either.
    for stray in ("7", "01", "0", "v9", ".tmp-interrupted"):
        (model_dir / stray).mkdir()
    (model_dir / "12").write_text("a file, not a version")
    assert latest_version(tmp_path, "borehole") == 7
    path = write(model, tmp_path)
    assert path.name == "8" and read_card(path)["version"] == 8
    assert snapshot(model_dir / "1") == first


def test_a_version_taken_meanwhile_is_skipped(model, tmp_path, monkeypatch):
    write(model, tmp_path)
    from training import publish

    real, calls = publish.latest_version, itertools.count()

    def stale_once(repo, name):  # another writer published "1" after this one looked
        return None if next(calls) == 0 else real(repo, name)

    monkeypatch.setattr(publish, "latest_version", stale_once)
    path = write(model, tmp_path)
    assert path.name == "2" and next(calls) == 2  # tried "1", lost it, took "2"
    card = read_card(path)
    assert card["version"] == 2
    embedded = onnx.load(path / "model.onnx").metadata_props
    assert json.loads({p.key: p.value for p in embedded}[CARD_KEY])["version"] == 2


def test_triton_config(model, tmp_path):
    write(model, tmp_path)
    assert (tmp_path / "borehole" / "config.pbtxt").read_text() == TRITON_CONFIG


@pytest.mark.parametrize(
    "name", ["", ".hidden", "-x", "a/b", "../up", "a b", "modèle", "x" * 65, "name\n"]
)
def test_invalid_name_is_rejected(model, tmp_path, name):
    with pytest.raises(ValueError, match="invalid model name"):
        write(model, tmp_path, name=name)
    with pytest.raises(ValueError, match="invalid model name"):
        latest_version(tmp_path, name)
    assert os.listdir(tmp_path) == []


def test_longest_valid_name_is_accepted(model, tmp_path):
    name = "A1._-" + "z" * 59
    assert write(model, tmp_path, name=name) == tmp_path / name / "1"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"inputs": input_specs(table()[0])[:2]}, "the model has 3 inputs"),
        ({"outputs": [{"name": "Q", "unit": ""}]}, "the model has 2 outputs"),
        ({"outputs": [{"name": "Q", "unit": ""}] * 2}, "unique"),
        ({"inputs": [{**s, "min": s["max"] + 1} for s in input_specs(table()[0])]}, "min <= max"),
        ({"extra_files": {"model.json": b"{}"}}, "invalid extra file name"),
        ({"extra_files": {"../x.png": b""}}, "invalid extra file name"),
    ],
)
def test_bad_arguments_are_rejected(model, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        write(model, tmp_path, **overrides)
    assert os.listdir(tmp_path) == []


def failing_after(calls: int, real):
    """A stand-in for ``real`` that raises on its ``calls``-th call."""
    count = itertools.count(1)

    def wrapper(*args, **kwargs):
        if next(count) == calls:
            raise OSError(5, "injected I/O error")
        return real(*args, **kwargs)

    return wrapper


# fsync order: staged config.pbtxt, model.onnx, jacobian.onnx, model.json, parity.png, the
# staged directory; all of them come before the rename that publishes the version.
@pytest.mark.parametrize("existing", [False, True], ids=["new-model", "existing-versions"])
@pytest.mark.parametrize(
    ("function", "calls"), [*(("fsync", n) for n in range(1, 7)), ("rename", 1)]
)
def test_a_failed_write_leaves_no_trace(model, tmp_path, monkeypatch, existing, function, calls):
    if existing:
        write(model, tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.setattr(os, function, failing_after(calls, getattr(os, function)))
    with pytest.raises(OSError, match="injected"):
        write(model, tmp_path)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    assert write(model, tmp_path).name == ("2" if existing else "1")


def test_a_write_removes_only_staging_entries_abandoned_long_ago(model, tmp_path):
    """A killed writer's hidden .tmp-* entries go at the next write once an hour old; a live
    writer's (recent) ones stay."""
    write(model, tmp_path)
    model_dir = tmp_path / "borehole"
    old_dir, old_file = model_dir / ".tmp-olddir", model_dir / ".tmp-oldfile"
    recent = model_dir / ".tmp-recent"
    old_dir.mkdir()
    (old_dir / "model.onnx").write_bytes(b"half")
    old_file.write_bytes(b"half a config")
    recent.mkdir()
    long_ago = time.time() - ABANDONED_AFTER_SECONDS - 60
    for path in (old_dir, old_file):
        os.utime(path, (long_ago, long_ago))
    write(model, tmp_path)
    hidden = {p.name for p in model_dir.iterdir() if p.name.startswith(".")}
    assert hidden == {".tmp-recent"}
    assert latest_version(tmp_path, "borehole") == 2


@pytest.mark.parametrize(
    ("output", "reference"), [("outputs", r"std\(y\)"), ("jacobian", r"max \|jacobian\|")]
)
def test_parity_failure_writes_nothing(model, tmp_path, monkeypatch, output, reference):
    real = parity_module.deviations

    def off(*args):
        return {**real(*args), output: 2e-4}

    monkeypatch.setattr(parity_module, "deviations", off)
    with pytest.raises(
        ParityError, match=rf"in {output!r} by 0.0002 x {reference} .*; nothing was written"
    ):
        write(model, tmp_path)
    assert os.listdir(tmp_path) == []


def test_parity_probes_stay_positive_for_log_inputs(tmp_path):
    # A log-scaled input needs probes > 0 beyond the range too; the Scaler supports it even
    # though the estimator does not offer it, so the scaler is swapped in after fitting.
    X, Y = table()
    mlp = SurrogateMLP(hidden_layer_sizes=(6,), solver="adam", max_iter=5, random_state=0)
    mlp.fit(X, Y)
    mlp.x_scaler_ = Scaler("log").fit(X)
    assert parity(mlp, to_onnx(mlp), X) < 1e-5
    assert write(mlp, tmp_path).name == "1"


def test_model_fit_on_a_dataframe(tmp_path):
    pd = pytest.importorskip("pandas")
    X, Y = table()
    frame = pd.DataFrame(X, columns=list(NAMES))
    mlp = SurrogateMLP(hidden_layer_sizes=(6,), solver="adam", max_iter=5, random_state=0)
    mlp.fit(frame, Y)
    with pytest.raises(ValueError, match="differ from the columns"):
        write(mlp, tmp_path, inputs=input_specs(X)[::-1])
    assert write(mlp, tmp_path).name == "1"
