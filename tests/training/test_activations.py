"""The activation registry: derivatives against finite differences, ONNX output against forward."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest

from training.activations import (
    ACTIVATIONS,
    INIT_RULES,
    Activation,
    get_activation,
    init_std,
)
from training.graph import GraphBuilder, float_tensor

UNITS = 4
KINKS = np.array([0.0, -3.0, 3.0, -1.0, 1.0, 6.0])
EXPECTED_INIT = {
    "he": {
        "relu",
        "leaky_relu",
        "prelu",
        "elu",
        "celu",
        "gelu",
        "silu",
        "mish",
        "relu6",
        "hardswish",
    },
    "lecun": {"selu"},
    "glorot": {
        "identity",
        "tanh",
        "sin",
        "logistic",
        "softsign",
        "hard_sigmoid",
        "hardtanh",
        "softplus",
    },
}


def layer_params(act: Activation) -> dict[str, np.ndarray]:
    """Per-unit parameters that differ between units, so broadcasting errors show."""
    return {name: value * np.linspace(0.5, 1.5, UNITS) for name, value in act.param_init.items()}


def smooth_points(seed: int = 0) -> np.ndarray:
    """Points in [-8, 8] at least 1e-3 away from every kink, shaped (n, UNITS)."""
    z = np.random.default_rng(seed).uniform(-8.0, 8.0, size=(500, UNITS))
    near_kink = np.abs(z[..., None] - KINKS).min(axis=-1) < 1e-3
    return np.where(near_kink, z + 2e-3, z)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivative_matches_central_difference(name):
    act = get_activation(name)
    params = layer_params(act)
    z, h = smooth_points(), 1e-6
    numeric = (act.forward(z + h, params) - act.forward(z - h, params)) / (2 * h)
    np.testing.assert_allclose(act.derivative(z, params), numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", [n for n in ACTIVATIONS if get_activation(n).param_init])
def test_param_grad_matches_central_difference(name):
    act = get_activation(name)
    params = layer_params(act)
    z, h = smooth_points(), 1e-6
    grads = act.param_grad(z, params)
    assert set(grads) == set(act.param_init)
    for key, value in params.items():
        up = act.forward(z, {**params, key: value + h})
        down = act.forward(z, {**params, key: value - h})
        np.testing.assert_allclose(grads[key], (up - down) / (2 * h), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_is_finite_and_quiet_far_out(name):
    # pyproject turns RuntimeWarnings from training.* into errors, so overflow would fail here.
    act = get_activation(name)
    params = layer_params(act)
    z = np.tile(np.array([-1e300, -745.0, -50.0, 50.0, 710.0, 1e300])[:, None], (1, UNITS))
    assert np.isfinite(act.derivative(z, params)).all()
    out = act.forward(z, params)
    assert not np.isnan(out).any()


def run_emitted(act: Activation, params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    g = GraphBuilder()
    g.rename(act.emit(g, "inputs", params), "outputs")
    model = g.make_model(
        [float_tensor("inputs", UNITS)], [float_tensor("outputs", UNITS)], f"act_{act.name}"
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["outputs"], {"inputs": x.astype(np.float32)})[0]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_onnx_emission_matches_forward(name):
    act = get_activation(name)
    params = layer_params(act)
    grid = np.concatenate([np.linspace(-8.0, 8.0, 401), [-60.0, -30.0, -15.0, 15.0, 30.0, 60.0]])
    x = np.tile(grid[:, None], (1, UNITS)).astype(np.float32)
    got = run_emitted(act, params, x)
    assert got.dtype == np.float32
    # Reference computed in float64 on the float32 inputs the graph actually sees.
    expected = act.forward(x.astype(np.float64), params)
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("linear", "identity"), ("swish", "silu"), ("sigmoid", "logistic"), ("sine", "sin")],
)
def test_alias_resolves_to_canonical_entry(alias, canonical):
    assert get_activation(alias) is get_activation(canonical)
    assert alias not in ACTIVATIONS


def test_registry_has_unique_canonical_names():
    assert len(ACTIVATIONS) == 19 == len(set(ACTIVATIONS))
    assert all(get_activation(name).name == name for name in ACTIVATIONS)


@pytest.mark.parametrize("bad", ["relu7", "ReLU ", "", None])
def test_unknown_name_lists_valid_names(bad):
    with pytest.raises(ValueError, match="valid names") as info:
        get_activation(bad)
    message = str(info.value)
    assert all(name in message for name in ACTIVATIONS)
    assert all(alias in message for alias in ("linear", "swish", "sigmoid"))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_init_rule(name):
    rule = get_activation(name).init
    assert name in EXPECTED_INIT[rule]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("he", math.sqrt(2 / 16)), ("lecun", math.sqrt(1 / 16)), ("glorot", math.sqrt(2 / 24))],
)
def test_init_std(rule, expected):
    assert init_std(rule, 16, 8) == pytest.approx(expected)


def test_init_std_rejects_unknown_rule():
    with pytest.raises(ValueError, match="valid rules"):
        init_std("xavier", 4, 4)
    assert set(INIT_RULES) == set(EXPECTED_INIT)
