"""Engineering test functions: shapes, sampling, reference values."""

from __future__ import annotations

import numpy as np
import pytest

from training.functions import FUNCTIONS

NAMES = sorted(FUNCTIONS)


def centre(name: str) -> np.ndarray:
    f = FUNCTIONS[name]
    return ((f.lower + f.upper) / 2)[None, :]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method", ["lhs", "uniform"])
def test_sample_shape_and_range(name, method):
    f = FUNCTIONS[name]
    X = f.sample(257, method=method, seed=3)
    assert X.shape == (257, f.n_inputs)
    assert (X >= f.lower).all() and (X <= f.upper).all()


@pytest.mark.parametrize("name", NAMES)
def test_lhs_puts_one_point_in_each_stratum(name):
    f = FUNCTIONS[name]
    n = 50
    unit = (f.sample(n, seed=0) - f.lower) / (f.upper - f.lower)
    strata = np.sort(np.floor(unit * n).astype(int), axis=0)
    np.testing.assert_array_equal(strata, np.tile(np.arange(n)[:, None], (1, f.n_inputs)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method", ["lhs", "uniform"])
def test_sample_is_deterministic_with_seed(name, method):
    f = FUNCTIONS[name]
    np.testing.assert_array_equal(f.sample(20, method, seed=7), f.sample(20, method, seed=7))
    assert not np.array_equal(f.sample(20, method, seed=7), f.sample(20, method, seed=8))


@pytest.mark.parametrize("name", NAMES)
def test_call_returns_finite_float64_columns(name):
    f = FUNCTIONS[name]
    Y = f(f.sample(1000, method="uniform", seed=1))
    assert Y.shape == (1000, f.n_outputs) and Y.dtype == np.float64
    assert np.isfinite(Y).all()
    assert (Y.std(axis=0) > 0).all()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Centre of the VLSE ranges: rw=0.1, r=25050, Tu=89335, Hu=1050, Tl=89.55, Hl=760,
        # L=1400, Kw=10950: ln(r/rw) = 12.43121, 2 L Tu / (ln(r/rw) rw^2 Kw) = 183760.43,
        # Tu/Tl = 997.599, Q = 2 pi 89335 * 290 / (12.43121 * 184759.03) = 70.87291.
        ("borehole", 70.8729126),
        # Vb1 = 3.864407, beta (Rc2 + 9) = 1701.875; terms 4.599680 + 0.011659 + 0.699278.
        ("otl_circuit", 5.3106169),
        # A = P0 S + 19.62 M - k V0 / S = 692.9, V = 0.00387102 m3.
        ("piston", 0.4643970),
        # Sweep 0, so the cosines drop out: 258.43719 + Sw Wp = 258.43719 + 9.1875.
        ("wing_weight", 267.6246926),
    ],
)
def test_reference_value_at_centre(name, expected):
    assert FUNCTIONS[name](centre(name))[0, 0] == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ((0.6, -0.4), 2.0 + 0.5 * 1.2 + 0.06),  # pyramid apex
        ((-2.0, 2.0), 0.5 * 1.0 + 1.0 - 0.2),  # on the terrace
        ((-0.5, -0.5), 0.0 - 0.05),  # valley floor
    ],
)
def test_surface_hand_checked_points(point, expected):
    assert FUNCTIONS["surface"](np.array([point]))[0, 0] == pytest.approx(expected)


def test_thermal_actuator_moves_further_and_heats_more_with_voltage():
    f = FUNCTIONS["thermal_actuator"]
    Y = f(np.array([[1.0, 200.0], [3.0, 200.0], [5.0, 200.0]]))
    assert (np.diff(Y, axis=0) > 0).all()
    assert (Y[:, 1] > 300.0).all()


@pytest.mark.parametrize("shape", [(5,), (5, 3), (2, 5, 8)])
def test_call_rejects_wrong_shape(shape):
    with pytest.raises(ValueError, match="expects X of shape"):
        FUNCTIONS["borehole"](np.ones(shape))


def test_sample_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown sampling method"):
        FUNCTIONS["piston"].sample(4, method="sobol")


@pytest.mark.parametrize(
    ("name", "point", "expected"),
    [
        ("ishigami", [np.pi / 2, np.pi / 2, 1.0], 1.0 + 7.0 + 0.1),
        # 10 sin(pi / 4) + 0 + 5 + 2.5, whatever the five inactive inputs are.
        ("friedman", [0.5] * 5 + [0.9, 0.1, 0.3, 0.7, 0.2], 10 * np.sqrt(0.5) + 7.5),
        # All inputs 0.1: 5 (0.1) / 1.1 + x5 + 40 (0.001) - 0.5 and the small linear terms.
        ("welch", [0.1] * 20, 0.0910454545),
        ("periodic8", [np.pi / 2, 0.0, 0.0, np.pi / 2, 0.0, 0.0, np.pi / 4, 0.0],
         1.0 + 0.8 + 0.6 + 0.5 + 0.4 + 0.3),
        ("sparse30", [0.0] * 7 + [np.pi / 6] + [0.0] * 22, 1.0 + np.pi / 6),
    ],
)
def test_benchmark_functions_at_hand_checked_points(name, point, expected):
    assert FUNCTIONS[name](np.array([point]))[0, 0] == pytest.approx(expected, rel=1e-9)
