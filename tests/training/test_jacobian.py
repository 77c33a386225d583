"""The exported ``jacobian`` against central finite differences, for every activation (hidden and
output layer), per-layer mixes and every input and output scaling; the ONNX derivative emitters
against the registry's numpy derivatives.

The acceptance check takes finite differences of the estimator's float64 ``predict`` (which the
ONNX ``outputs`` match to 1e-5 of std(y), test_export), with a step of 1e-4 of each input's range,
far below any curvature of these networks and far above float64 rounding, on points in the
training box and in the box three times as wide. A second check differentiates the ONNX
``outputs`` themselves, in the training box, with a step of 1e-3 of the range: float32 outputs
carry ~6e-8 of |y|, so that check allows those few ulps divided by the step on top of the
tolerance, and measures derivatives per input range (an input spanning 0.1 next to one spanning
5e4 would otherwise compare the latter's noise with the former's derivative).

Piecewise-linear activations have no derivative at a kink, and a central difference straddling
one measures neither side: rows are kept only when every pre-activation of every stencil point
lies in the same piece (between the same two kinks) as at the centre, which also keeps them far
enough from the kinks for float32 and float64 to agree on the side.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.exceptions import NotFittedError

from training.activations import ACTIVATIONS, get_activation
from training.estimator import SurrogateMLP
from training.export import to_onnx
from training.graph import GraphBuilder, float_tensor
from training.jacobian import reverse_mode
from training.network import fitted_network
from training.parameters import X_SCALINGS
from training.parity import deviations, run_onnx
from training.scaling import SCALINGS, Scaler

TOLERANCE = 1e-3  # max |jacobian - finite differences| / max |jacobian|, per output
PARITY = 1e-5  # max |onnx jacobian - predict_jacobian| / max |jacobian| off the kinks
LOW = np.array([0.05, 100.0, 990.0])
HIGH = np.array([0.15, 50_000.0, 1110.0])
WIDTH = HIGH - LOW
# Inputs of order 1, where unscaled inputs ("none") make a sensible network.
UNIT_BOX = (np.array([0.5, 1.0, 2.0]), np.array([1.5, 3.0, 2.5]))
MIXES = [
    ("relu", "elu"),
    ("tanh", "prelu", "gelu"),
    ("silu", "hardswish", "relu6", "softsign"),
    ("mish", "selu", "hard_sigmoid", "hardtanh"),
    ("leaky_relu", "celu", "logistic", "softplus", "identity"),
]


def table(n_rows: int = 150, seed: int = 0, box=(LOW, HIGH)) -> tuple[np.ndarray, np.ndarray]:
    low, high = box
    rng = np.random.default_rng(seed)
    X = rng.uniform(low, high, (n_rows, 3))
    u = (X - low) / (high - low)
    Y = np.column_stack([np.exp(np.sin(3 * u[:, 0]) + u[:, 1] * u[:, 2]), 1 + u[:, 0] ** 2,
                         2 + u[:, 1] - u[:, 2] ** 2])  # fmt: skip
    return X, Y


def probes(n_rows: int = 200, seed: int = 1, box=(LOW, HIGH)) -> np.ndarray:
    """Float32-exact points in the training box and in the box three times as wide."""
    low, high = box
    rng = np.random.default_rng(seed)
    inside = rng.uniform(low, high, (n_rows, 3))
    beyond = rng.uniform(2 * low - high, 2 * high - low, (n_rows, 3))
    return np.vstack([inside, beyond]).astype(np.float32).astype(np.float64)


def fit(activation, *, n_outputs: int = 2, box=(LOW, HIGH), **params) -> SurrogateMLP:
    """Two hidden layers by default, so the chain rule runs through a hidden-to-hidden MatMul."""
    X, Y = table(box=box)
    layers = (10,) * (2 if isinstance(activation, str) else len(activation))
    settings = {"hidden_layer_sizes": layers, "solver": "adam", "max_iter": 15, "random_state": 0,
                "alpha": 1e-4}  # one fit: these tests are about the derivatives of a network
    model = SurrogateMLP(activation=activation, **{**settings, **params})
    return model.fit(X, Y[:, 0] if n_outputs == 1 else Y[:, :n_outputs])


def stencil(X: np.ndarray, steps: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Points ``X +- step_j e_j`` in ``dtype``, shaped (2, n_in, n_rows, n_in), and the actual
    distance between each pair (float32 rounding changes it)."""
    shifts = np.eye(X.shape[1]) * steps
    points = np.stack([X[None] + shifts[:, None], X[None] - shifts[:, None]]).astype(dtype)
    diagonal = np.arange(X.shape[1])
    width = (points[0] - points[1]).astype(np.float64)[diagonal, :, diagonal]
    return points.astype(np.float64), width


def central_differences(predict, X: np.ndarray, steps: np.ndarray, dtype) -> np.ndarray:
    """``(f(x + h e_j) - f(x - h e_j)) / (2h)`` as (n_rows, n_out, n_in)."""
    points, width = stencil(X, steps, dtype)
    n_in = X.shape[1]
    values = predict(points.reshape(-1, n_in)).astype(np.float64).reshape(2, n_in, len(X), -1)
    return ((values[0] - values[1]) / width[:, :, None]).transpose(1, 2, 0)


def same_pieces(model, X: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Rows whose stencil points put every pre-activation between the same kinks as the centre."""
    net, layers = fitted_network(model)

    def pieces(points):
        pre, _ = net.forward(layers, model.x_scaler_.transform(points))
        layers_ = zip(pre, net.activations, strict=True)
        codes = [np.searchsorted(act.kinks, z) for z, act in layers_ if act.kinks]
        return np.hstack(codes) if codes else np.zeros((len(points), 0), dtype=int)

    centre = pieces(X)
    points, _ = stencil(X, steps, np.float64)
    keep = np.ones(len(X), dtype=bool)
    for point in points.reshape(-1, *X.shape):
        keep &= (pieces(point) == centre).all(axis=1)
    return keep


def relative_error(got: np.ndarray, expected: np.ndarray, units=1.0, noise=0.0) -> float:
    """``max |got - expected| / (max |got| + noise)`` per output, derivatives first multiplied
    by ``units`` (per input); ``noise`` (per output) is in the same units as the derivatives."""
    got, expected = got * units, expected * units
    largest = np.abs(got).max(axis=(0, 2))
    assert np.all(largest > 0) and np.isfinite(got).all() and np.isfinite(expected).all()
    allowed = largest + np.asarray(noise) / TOLERANCE
    return float((np.abs(got - expected) / allowed[None, :, None]).max())


def assert_jacobian(model, X=None, wide: np.ndarray = WIDTH) -> None:
    """ONNX ``jacobian`` against finite differences of ``predict`` (all of ``X``) and of the ONNX
    ``outputs`` (the first half of ``X``, the training box), and against ``predict_jacobian``."""
    X = probes() if X is None else X
    graph = to_onnx(model, jacobian=True)
    onnx.checker.check_model(graph, full_check=True)
    got = run_onnx(graph, X, ["outputs", "jacobian"])
    jacobian = got["jacobian"].astype(np.float64)
    assert jacobian.shape == (len(X), model.n_outputs_, X.shape[1])
    assert deviations(model, graph, X)["jacobian"] < PARITY

    def predict(points):
        return np.asarray(model.predict(points)).reshape(len(points), -1)

    steps = 1e-4 * wide
    keep = same_pieces(model, X, steps)
    assert keep.mean() > 0.5, "too few probe points away from the kinks"
    exact = central_differences(predict, X[keep], steps, np.float64)
    assert relative_error(jacobian[keep], exact) < TOLERANCE

    def onnx_outputs(points):
        return run_onnx(graph, points, ["outputs"])["outputs"]

    inside, steps = X[: len(X) // 2], 1e-3 * wide
    keep = same_pieces(model, inside, steps)
    rough = central_differences(onnx_outputs, inside[keep], steps, np.float32)
    ulps = 4 * np.finfo(np.float32).eps * np.abs(got["outputs"]).max(axis=0)
    noise = ulps / (2 * 1e-3)  # per range unit
    assert relative_error(jacobian[: len(X) // 2][keep], rough, wide, noise) < TOLERANCE


# Fewer outputs than the 3 inputs: reverse mode; as many: forward mode.
MODES = pytest.mark.parametrize("n_outputs", [2, 3], ids=["reverse", "forward"])


@MODES
@pytest.mark.parametrize("layer", ["hidden", "output"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_jacobian_of_every_activation(activation, layer, n_outputs):
    if layer == "hidden":
        model = fit(activation, n_outputs=n_outputs)
    else:
        model = fit("tanh", output_activation=activation, n_outputs=n_outputs)
    assert model.activations_[0 if layer == "hidden" else -1] == activation
    assert reverse_mode(model) == (n_outputs < 3)
    assert_jacobian(model)


@MODES
@pytest.mark.parametrize("activations", MIXES)
def test_jacobian_with_mixed_activations(activations, n_outputs):
    model = fit(activations, output_activation="prelu", n_outputs=n_outputs)
    assert model.activations_ == (*activations, "prelu")
    assert_jacobian(model)


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("y_scaling", SCALINGS)
@pytest.mark.parametrize("x_scaling", X_SCALINGS)
def test_jacobian_with_every_scaling(x_scaling, y_scaling, n_outputs):
    model = fit(
        ("gelu", "relu"),
        x_scaling=x_scaling,
        y_scaling=y_scaling,
        n_outputs=n_outputs,
        box=UNIT_BOX,
    )
    low, high = UNIT_BOX
    assert_jacobian(model, probes(box=UNIT_BOX), high - low)


@MODES
@pytest.mark.parametrize("y_scaling", ["standard", "log"])
def test_jacobian_with_log_scaled_inputs(y_scaling, n_outputs):
    # The estimator does not offer log inputs, but the Scaler does (see test_export): d log x / dx
    # is 1/x per row, so the steps are relative to each point's magnitude here.
    model = fit(("tanh", "softplus"), y_scaling=y_scaling, n_outputs=n_outputs)
    model.x_scaler_ = Scaler("log").fit(table()[0])
    X = probes()[:200]
    assert_jacobian(model, X, wide=X.min(axis=0))


def test_predict_jacobian_shape_for_one_output():
    model = fit("tanh", n_outputs=1)
    X = probes()[:5]
    assert model.predict(X).shape == (5,)
    assert model.predict_jacobian(X).shape == (5, 1, 3)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivative_emitter_matches_numpy(name):
    act = get_activation(name)
    units = 4
    params = {k: v * np.linspace(0.5, 1.5, units) for k, v in act.param_init.items()}
    rng = np.random.default_rng(0)
    kinks = np.array([0.0, -3.0, 3.0, -1.0, 1.0, 6.0, -1e4, 1e4, -60.0, 60.0])
    z = np.vstack([rng.uniform(-8, 8, (500, units)), np.resize(kinks, (5, units))])
    z = z.astype(np.float32)
    g = GraphBuilder()
    g.rename(act.emit_derivative(g, "z", params), "dz")
    graph = g.make_model([float_tensor("z", units)], [float_tensor("dz", units)], "derivative")
    onnx.checker.check_model(graph, full_check=True)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"z": z})[0]
    assert got.shape == z.shape and got.dtype == np.float32
    expected = act.derivative(z.astype(np.float64), params)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_unfitted_model_has_no_jacobian():
    with pytest.raises(NotFittedError):
        SurrogateMLP().predict_jacobian(probes()[:2])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        to_onnx(SurrogateMLP(), jacobian=True)
