"""Sobol' sensitivity indices (``training.sensitivity``, ``surrogate sensitivity``): exact on
functions with known indices, and on a surrogate of one trained on 1000 rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from training import SurrogateMLP
from training.bundle import write_bundle
from training.cli import main
from training.design import Factor
from training.functions import FUNCTIONS
from training.sensitivity import indices

ISHIGAMI = FUNCTIONS["ishigami"]
# Ishigami & Homma, a = 7, b = 0.1 (Saltelli et al. 2008, table 4.x): exact indices.
EXACT = {"S1": {"x1": 0.314, "x2": 0.442, "x3": 0.0}, "ST": {"x1": 0.558, "x2": 0.442,
                                                               "x3": 0.244}}
FACTORS = [Factor(name, low, high, unit) for name, unit, low, high in ISHIGAMI.inputs]


def _ishigami(x):
    return np.asarray(ISHIGAMI(x)).reshape(len(x), 1)


def _within(table, tolerance):
    return {(kind, name): round(table[kind][name] - value, 3)
            for kind, exact in EXACT.items() for name, value in exact.items()
            if abs(table[kind][name] - value) > tolerance}


def test_the_indices_of_the_ishigami_function_itself():
    table = indices(FACTORS, ["y"], _ishigami, n=2**13, seed=0)["y"]
    assert _within(table, 0.02) == {}
    assert all(0 < table["ST_conf"][name] < 0.05 for name in ("x1", "x2", "x3"))


def test_a_log_scaled_input_is_uniform_in_its_logarithm():
    # y = log10(k): with k log-uniform over 1e-3..1e3, y is uniform and k explains it all;
    # S1 of an unused input is 0 either way.
    factors = [Factor("k", 1e-3, 1e3, log=True), Factor("c", 0.0, 1.0)]
    table = indices(factors, ["y"], lambda x: np.log10(x[:, :1]),
                    lambda x: (1 / (x[:, 0] * np.log(10)))[:, None, None] * np.array([[[1, 0]]]),
                    n=2**12)["y"]
    assert table["S1"]["k"] == pytest.approx(1.0, abs=0.02)
    assert abs(table["ST"]["c"]) < 0.01 and table["DGSM"]["c"] == 0.0
    # DGSM bounds ST: for y linear in log k, nu (ln 1e6)^2 / (pi^2 var) = 12 / pi^2.
    assert table["DGSM"]["k"] == pytest.approx(12 / np.pi**2, rel=0.02)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A surrogate of Ishigami, the default estimator on 1000 rows (with a time budget)."""
    repo = tmp_path_factory.mktemp("models")
    X = ISHIGAMI.sample(1000, method="lhs", seed=0)
    model = SurrogateMLP(time_budget=30, random_state=0).fit(X, ISHIGAMI(X))
    specs = [{"name": name, "unit": unit, "min": low, "max": high}
             for name, unit, low, high in ISHIGAMI.inputs]
    write_bundle(model, repo, "ishigami", inputs=specs, outputs=[{"name": "y", "unit": "1"}],
                 metrics={}, training_info={})
    return repo


def test_the_indices_of_a_surrogate_trained_on_1000_rows(repo, tmp_path):
    result = CliRunner().invoke(main, ["sensitivity", "ishigami", "--repo", str(repo), "--json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.output)["y"]
    assert set(table) == {"S1", "ST", "S1_conf", "ST_conf", "DGSM"}
    assert _within(table, 0.03) == {}
    for name in ("x1", "x2", "x3"):  # the bound from the exact Jacobian holds
        assert table["DGSM"][name] >= table["ST"][name] - table["ST_conf"][name]


def test_the_command_prints_a_table_and_writes_a_chart(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["sensitivity", "ishigami", "--repo", str(repo),
                                       "--n", "1024"])
    assert result.exit_code == 0, result.output
    assert "ishigami: y" in result.output and "DGSM bound on ST" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│ x")]
    assert [row.split()[1] for row in rows] == ["x1", "x2", "x3"]  # by ST, largest first
    chart = tmp_path / "sensitivity-ishigami-v1.png"
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert "bar chart: sensitivity-ishigami-v1.png" in result.output


def test_n_must_be_a_power_of_two(repo):
    result = CliRunner().invoke(main, ["sensitivity", "ishigami", "--repo", str(repo),
                                       "--n", "1000"])
    assert result.exit_code == 2 and "--n: n must be a power of two" in result.output
