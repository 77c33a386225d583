"""ONNX export: onnxruntime against ``predict`` for every activation and scaling, inside and far
outside the training range, plus graph contract, metadata and the skl2onnx converter."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import skl2onnx
from sklearn.ensemble import VotingRegressor
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from service.bundle_format import INPUT_TENSOR, OUTPUT_TENSOR
from training.activations import ACTIVATIONS
from training.estimator import SurrogateMLP
from training.export import describe, to_onnx
from training.graph import IR_VERSION, OPSET
from training.parameters import X_SCALINGS
from training.parity import parity, run_onnx
from training.scaling import SCALINGS, Scaler

TOLERANCE = 1e-5  # max |onnxruntime - predict| / std(y)
# skl2onnx's own StandardScaler runs in float32 and rounds its offset: ~1e-6 of z on this table.
PIPELINE_TOLERANCE = 1e-4
# Offsets far from zero next to their spread, so float32 scaling mistakes would show.
LOW = np.array([0.05, 100.0, 990.0])
HIGH = np.array([0.15, 50_000.0, 1110.0])


def table(n_rows: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three inputs in physical units, two positive outputs spanning about a decade."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(LOW, HIGH, (n_rows, 3))
    u = (X - LOW) / (HIGH - LOW)
    Y = np.column_stack([np.exp(np.sin(3 * u[:, 0]) + u[:, 1] * u[:, 2]), 1 + u[:, 0] ** 2])
    return X, Y


def probes(n_rows: int = 400, seed: int = 1) -> np.ndarray:
    """Points in the training box and in the box three times as wide, where clips and kinks
    of every activation are reached."""
    rng = np.random.default_rng(seed)
    width = HIGH - LOW
    inside = rng.uniform(LOW, HIGH, (n_rows, 3))
    beyond = rng.uniform(LOW - width, HIGH + width, (n_rows, 3))
    return np.vstack([inside, beyond])


def fit(activation, *, n_outputs: int = 1, **params) -> SurrogateMLP:
    """A quick fit: parity is about the export, not about accuracy."""
    X, Y = table()
    layers = (12,) * (1 if isinstance(activation, str) else len(activation))
    settings = {"hidden_layer_sizes": layers, "solver": "adam", "max_iter": 15, "random_state": 0}
    model = SurrogateMLP(activation=activation, **{**settings, **params})
    return model.fit(X, Y[:, 0] if n_outputs == 1 else Y[:, :n_outputs])


def assert_parity(model) -> float:
    onnx_model = to_onnx(model)
    deviation = parity(model, onnx_model, probes())
    assert deviation < TOLERANCE
    return deviation


@pytest.mark.parametrize("layer", ["hidden", "output"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_parity_of_every_activation(activation, layer):
    if layer == "hidden":
        model = fit(activation)
    else:
        model = fit("tanh", output_activation=activation)
    assert model.activations_[0 if layer == "hidden" else -1] == activation
    assert_parity(model)


@pytest.mark.parametrize(
    "activations",
    [
        ("relu", "elu"),
        ("tanh", "prelu", "gelu"),
        ("silu", "hardswish", "relu6", "softsign"),
        ("mish", "selu", "hard_sigmoid", "hardtanh"),
        ("leaky_relu", "celu", "logistic", "softplus", "identity"),
    ],
)
def test_parity_with_mixed_activations(activations):
    model = fit(activations, output_activation="prelu")
    assert model.activations_ == (*activations, "prelu")
    assert_parity(model)


@pytest.mark.parametrize("n_outputs", [1, 2])
@pytest.mark.parametrize("y_scaling", SCALINGS)
@pytest.mark.parametrize("x_scaling", X_SCALINGS)
def test_parity_with_every_scaling(x_scaling, y_scaling, n_outputs):
    assert_parity(
        fit(("tanh", "relu"), x_scaling=x_scaling, y_scaling=y_scaling, n_outputs=n_outputs)
    )


def test_parity_with_log_scaled_inputs():
    # The estimator does not offer log inputs, but a Scaler does: the exporter follows the
    # Scaler contract, so a model carrying one exports faithfully (probes kept positive).
    model = fit("gelu")
    model.x_scaler_ = Scaler("log").fit(table()[0])
    deviation = parity(model, to_onnx(model), np.abs(probes()) + 1e-3)
    assert deviation < TOLERANCE


@pytest.mark.parametrize("y_scaling", ["standard", "log"])
def test_parity_when_offsets_dwarf_the_spread(y_scaling):
    # Inputs like time stamps or absolute temperatures: x - offset keeps ~4 significant digits
    # of float32, so the offset's own float32 rounding would cost ~1e-3 of y; the exporter
    # scales (and unscales) in float64 to avoid it.
    rng = np.random.default_rng(0)
    low, high = np.array([1e4, 300.0]), np.array([1e4 + 1, 301.0])
    X = rng.uniform(low, high, (150, 2))
    y = 1000 + 100 * np.sin(2 * (X[:, 0] - low[0])) * (X[:, 1] - low[1])
    model = SurrogateMLP(
        hidden_layer_sizes=(12,), solver="adam", max_iter=15, random_state=0, y_scaling=y_scaling
    ).fit(X, y)
    width = high - low
    points = np.vstack(
        [rng.uniform(low, high, (400, 2)), rng.uniform(low - width, high + width, (400, 2))]
    )
    assert parity(model, to_onnx(model), points) < TOLERANCE


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_graph_contract(n_outputs):
    onnx_model = to_onnx(fit("prelu", n_outputs=n_outputs))
    onnx.checker.check_model(onnx_model, full_check=True)
    assert onnx_model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in onnx_model.opset_import] == [("", OPSET)]
    graph = onnx_model.graph
    assert [i.name for i in graph.input] == [INPUT_TENSOR]
    assert [o.name for o in graph.output] == [OUTPUT_TENSOR]
    for value, width in ((graph.input[0], 3), (graph.output[0], n_outputs)):
        tensor = value.type.tensor_type
        assert tensor.elem_type == onnx.TensorProto.FLOAT
        batch, columns = tensor.shape.dim
        assert batch.dim_param and not batch.HasField("dim_value")
        assert columns.dim_value == width
    assert run_onnx(onnx_model, probes()[:5]).shape == (5, n_outputs)


def test_metadata():
    model = fit("elu", y_scaling="log")
    onnx_model = to_onnx(model, name="borehole", metadata={"owner": "lab", "rows": 150})
    props = {p.key: p.value for p in onnx_model.metadata_props}
    assert onnx_model.graph.name == "borehole"
    assert props["owner"] == "lab"
    assert json.loads(props["rows"]) == 150
    summary = describe(model)
    assert json.loads(props["surrogate.layers"]) == summary["layers"]
    assert json.loads(props["surrogate.scaling"]) == summary["scaling"]
    assert summary["layers"] == [
        {"units": 12, "activation": "elu"},
        {"units": 1, "activation": "identity"},
    ]
    assert summary["scaling"]["outputs"]["method"] == "log"


def test_unfitted_model_is_refused():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        to_onnx(SurrogateMLP())


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_skl2onnx_converts_a_pipeline(n_outputs):
    X, Y = table()
    mlp = SurrogateMLP(
        hidden_layer_sizes=(10, 6),
        activation=("gelu", "prelu"),
        max_iter=15,
        solver="adam",
        y_scaling="log",
        random_state=0,
    )
    pipe = Pipeline([("scale", StandardScaler()), ("mlp", mlp)])
    pipe.fit(X, Y[:, 0] if n_outputs == 1 else Y)
    onnx_model = skl2onnx.to_onnx(pipe, X[:1].astype(np.float32), target_opset=OPSET)
    onnx.checker.check_model(onnx_model, full_check=True)
    assert run_onnx(onnx_model, X[:4]).shape == (4, n_outputs)
    assert parity(pipe, onnx_model, probes()) < PIPELINE_TOLERANCE


def test_skl2onnx_keeps_names_unique_with_two_estimators():
    X, Y = table()
    members = [
        (
            f"m{i}",
            SurrogateMLP(
                hidden_layer_sizes=(8,), activation=act, max_iter=10, solver="adam", random_state=i
            ),
        )
        for i, act in enumerate(("relu6", "hardtanh"))
    ]
    voting = VotingRegressor(members).fit(X, Y[:, 0])
    onnx_model = skl2onnx.to_onnx(voting, X[:1].astype(np.float32), target_opset=OPSET)
    onnx.checker.check_model(onnx_model, full_check=True)
    assert parity(voting, onnx_model, probes()) < TOLERANCE


def test_skl2onnx_refuses_an_older_opset():
    X, Y = table()
    with pytest.raises(RuntimeError, match=f"target_opset >= {OPSET}"):
        skl2onnx.to_onnx(fit("tanh"), X[:1].astype(np.float32), target_opset=OPSET - 4)
