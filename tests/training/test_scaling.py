from __future__ import annotations

import json

import numpy as np
import pytest

from training.scaling import SCALINGS, Scaler, auto_output_scaling


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    # Positive columns, one spanning six decades, so every method (log included) applies.
    return np.column_stack(
        [rng.uniform(1.0, 5.0, 50), 10.0 ** rng.uniform(-3, 3, 50), rng.normal(100, 7, 50) ** 2]
    )


@pytest.mark.parametrize("method", SCALINGS)
def test_round_trip(method, table):
    scaler = Scaler(method).fit(table)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(table)), table, rtol=1e-9)


@pytest.mark.parametrize("method", SCALINGS)
def test_formula_matches_the_contract(method, table):
    scaler = Scaler(method).fit(table)
    values = np.log(table) if method == "log" else table
    np.testing.assert_allclose(scaler.transform(table), (values - scaler.offset_) / scaler.scale_)


@pytest.mark.parametrize(
    ("method", "check"),
    [
        ("standard", lambda z: np.allclose(z.mean(0), 0) and np.allclose(z.std(0), 1)),
        ("log", lambda z: np.allclose(z.mean(0), 0) and np.allclose(z.std(0), 1)),
        ("minmax", lambda z: np.allclose(z.min(0), -1) and np.allclose(z.max(0), 1)),
        ("none", lambda z: True),
    ],
)
def test_scaled_statistics(method, check, table):
    assert check(Scaler(method).fit(table).transform(table))


@pytest.mark.parametrize("method", SCALINGS)
def test_constant_column_gets_unit_scale(method):
    x = np.column_stack([np.full(10, 3.0), np.linspace(1.0, 2.0, 10)])
    scaler = Scaler(method).fit(x)
    assert scaler.scale_[0] == 1.0
    assert np.all(np.isfinite(scaler.transform(x)))


@pytest.mark.parametrize(
    ("names", "expected"), [(None, "column 1"), (["a", "pressure"], "'pressure' (column 1)")]
)
@pytest.mark.parametrize("bad", [0.0, -2.5, np.nan])
def test_log_rejects_non_positive_and_names_the_column(names, expected, bad):
    x = np.ones((4, 2))
    x[2, 1] = bad
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        Scaler("log").fit(x, names)


def test_dict_round_trip_is_json(table):
    scaler = Scaler("log").fit(table)
    data = json.loads(json.dumps(scaler.to_dict()))
    assert data["method"] == "log" and len(data["offset"]) == table.shape[1]
    again = Scaler.from_dict(data)
    np.testing.assert_array_equal(again.transform(table), scaler.transform(table))


def test_unknown_method():
    with pytest.raises(ValueError, match="standard, minmax, log, none"):
        Scaler("robust")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        # Products and powers spanning decades: the logarithm is their natural scale.
        (lambda u: np.exp(6 * u[:, 0] + 3 * u[:, 1]), "log"),
        (lambda u: (0.1 + u[:, 0]) ** -2 * (1 + u[:, 1]), "log"),
        # A second output that is not positive, or that spans little: standard for all.
        (lambda u: np.column_stack([np.exp(6 * u[:, 0]), u[:, 1] - 0.5]), "standard"),
        (lambda u: 1 + u[:, 0] + u[:, 1], "standard"),
        # A decade only (borehole-like): standard.
        (lambda u: 3 + 30 * u[:, 0] * u[:, 1], "standard"),
        # Spanning decades only through a few values near zero, which the logarithm stretches
        # into a longer tail the other way: standard.
        (lambda u: u[:, 0] ** 3 + 1e-9, "standard"),
    ],
)
def test_auto_output_scaling(make, expected):
    u = np.random.default_rng(1).uniform(0, 1, (500, 2))
    y = make(u).reshape(500, -1)
    assert auto_output_scaling(y) == expected
