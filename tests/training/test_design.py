"""Designs of experiments (``training.design``, ``surrogate design``): space-filling points in
the inputs' ranges, linear, log-scaled and integer, and extensions of existing tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import qmc

from training import design as doe
from training.cli import main
from training.data import load_table
from training.errors import DataError, ParameterError

BOUNDS = """\
[V]
min = 1.0
max = 5.0
unit = "V"

[k]
min = 1e-3
max = 10
scale = "log"
unit = "W/m/K"

[layers]
min = 1
max = 6
integer = true

[L]
min = 100
max = 300
"""


@pytest.fixture
def bounds(tmp_path):
    path = tmp_path / "bounds.toml"
    path.write_text(BOUNDS)
    return path


@pytest.fixture
def factors(bounds):
    return doe.read_bounds(bounds)


def test_bounds_are_read_in_file_order_with_units_scales_and_integers(factors):
    assert [f.name for f in factors] == ["V", "k", "layers", "L"]
    assert factors[0] == doe.Factor("V", 1.0, 5.0, "V")
    assert factors[1].log and factors[1].unit == "W/m/K" and not factors[1].integer
    assert factors[2].integer and (factors[2].low, factors[2].high) == (1.0, 6.0)


def test_a_bounds_file_written_from_factors_reads_back_the_same(tmp_path, factors):
    odd = [*factors, doe.Factor("flow rate", 0.5, 2.5, 'm3/s "at inlet"')]
    path = tmp_path / "again.toml"
    path.write_text(doe.bounds_toml(odd))
    assert doe.read_bounds(path) == odd


@pytest.mark.parametrize(("text", "message"), [
    ("[V]\nmin = 1\n", "input 'V': max must be a finite number, got None"),
    ("[V]\nmin = 2\nmax = 1\n", "input 'V': min (2) must be below max (1)"),
    ("[V]\nmin = 0\nmax = 1\nscale = \"log\"\n", "scale = \"log\" needs min > 0, got 0"),
    ("[V]\nmin = 0\nmax = 1\nscale = \"ln\"\n", "scale must be \"linear\" or \"log\""),
    ("[n]\nmin = 0.5\nmax = 4\ninteger = true\n", "integer = true needs whole min and max"),
    ("[V]\nmin = 0\nmax = 1\nunits = \"V\"\n", "unknown key 'units'; keys: integer, max, min"),
    ("[V]\nmin = 0\nmax = true\n", "max must be a finite number, got True"),
    ("V = 3\n", "input 'V' must be a table"),
    ("[V\nmin = 0\n", "not valid TOML"),
    ("", "no inputs"),
])
def test_a_bad_bounds_file_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bounds.toml"
    path.write_text(text)
    with pytest.raises(DataError, match="bounds.toml") as refused:
        doe.read_bounds(path)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("method", ["lhs", "sobol", "halton"])
def test_every_method_stays_in_the_ranges_and_respects_integers(factors, method):
    rows = doe.design(factors, 64, method, seed=0)
    assert rows.shape == (64, 4)
    for i, f in enumerate(factors):
        assert rows[:, i].min() >= f.low and rows[:, i].max() <= f.high
    assert np.array_equal(rows[:, 2], np.rint(rows[:, 2]))
    assert set(rows[:, 2]) == {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}  # every level is used
    np.testing.assert_array_equal(rows, doe.design(factors, 64, method, seed=0))
    assert not np.array_equal(rows, doe.design(factors, 64, method, seed=1))


def test_latin_hypercube_puts_one_point_in_every_stratum_of_every_input(factors):
    n = 40
    rows = doe.design(factors, n, "lhs", seed=3)
    for i in (0, 1, 3):  # continuous inputs; k in the logarithm of its range
        strata = np.floor(factors[i].to_unit(rows[:, i]) * n).astype(int)
        assert sorted(strata) == list(range(n))


def test_a_log_input_is_spread_evenly_over_its_decades(factors):
    k = doe.design(factors, 400, "lhs", seed=0)[:, 1]
    decades = np.histogram(np.log10(k), bins=4, range=(-3, 1))[0]
    assert list(decades) == [100, 100, 100, 100]  # a linear scale would put 90% in the last


def test_sobol_needs_a_power_of_two(factors):
    with pytest.raises(ParameterError, match="power of two points.*use 32 or 64"):
        doe.design(factors, 50, "sobol")


def test_designs_are_more_uniform_than_random_points(factors):
    random = np.mean([qmc.discrepancy(np.random.default_rng(s).random((64, 4)))
                      for s in range(20)])
    for method in doe.METHODS:
        figures = doe.quality(factors, doe.design(factors, 64, method, seed=0))
        assert figures["discrepancy"] < 0.7 * random, method
        assert figures["min_distance"] > 0


def test_an_extension_fills_the_gaps_of_a_table(factors):
    # A table crowded into the lower half of V: the new points go to the upper half.
    existing = doe.design(factors, 30, "lhs", seed=2)
    existing[:, 0] = 1.0 + (existing[:, 0] - 1.0) / 2
    new = doe.extend(factors, existing, 30, seed=0)
    assert new.shape == (30, 4) and np.all(new[:, 0] >= 1.0) and np.all(new[:, 0] <= 5.0)
    assert np.mean(new[:, 0] > 3.0) > 0.8
    assert np.array_equal(new[:, 2], np.rint(new[:, 2]))
    combined = doe.quality(factors, np.vstack([existing, new]))
    randoms = [doe.design(factors, 30, "lhs", seed=s) for s in range(5)]
    naive = np.mean([doe.quality(factors, np.vstack([existing, r]))["discrepancy"]
                     for r in randoms])
    assert combined["discrepancy"] < naive
    assert combined["discrepancy"] < doe.quality(factors, existing)["discrepancy"]
    # No new point lands on an old one.
    unit_old = np.column_stack([f.to_unit(existing[:, i]) for i, f in enumerate(factors)])
    unit_new = np.column_stack([f.to_unit(new[:, i]) for i, f in enumerate(factors)])
    gaps = np.min(np.linalg.norm(unit_new[:, None] - unit_old[None], axis=2), axis=1)
    assert gaps.min() > 0.05


def test_an_extension_never_repeats_a_row(tmp_path):
    levels = [doe.Factor("n", 1, 3, integer=True), doe.Factor("m", 1, 3, integer=True)]
    existing = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    new = doe.extend(levels, existing, 6, seed=0)
    every = {tuple(row) for row in np.vstack([existing, new])}
    assert len(every) == 9  # the 3 x 3 grid, each level pair once
    with pytest.raises(DataError, match="only 6 new distinct rows fit in these ranges"):
        doe.extend(levels, existing, 7, seed=0)


def test_the_command_writes_the_design_and_reports_its_quality(tmp_path, bounds):
    out = tmp_path / "design.csv"
    result = CliRunner().invoke(main, ["design", "--bounds", str(bounds), "--n", "32",
                                       "--method", "sobol", "--seed", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote 32 rows of 4 inputs to {out} (sobol, seed 4)" in result.output
    assert "k: 0.001 to 10 W/m/K, log" in result.output
    assert "layers: 1 to 6, integer" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("design:"))
    reported = float(line.split("discrepancy ")[1].split(",")[0])
    lines = out.read_text().splitlines()
    assert lines[0] == "V,k,layers,L" and len(lines) == 33
    assert all(cell.isdigit() for cell in (row.split(",")[2] for row in lines[1:]))
    table = load_table(out, ["V", "k", "layers", "L"], [], for_training=False).X
    np.testing.assert_array_equal(table, doe.design(doe.read_bounds(bounds), 32, "sobol", 4))
    assert math.isclose(reported, doe.quality(doe.read_bounds(bounds), table)["discrepancy"],
                        rel_tol=1e-3)


def test_the_command_extends_a_table_and_reports_both(tmp_path, bounds):
    first, more = tmp_path / "first.csv", tmp_path / "more.csv"
    runner = CliRunner()
    assert runner.invoke(main, ["design", "--bounds", str(bounds), "--n", "20", "--out",
                                str(first)]).exit_code == 0
    result = runner.invoke(main, ["design", "--bounds", str(bounds), "--n", "10", "--extend",
                                  str(first), "--out", str(more)])
    assert result.exit_code == 0, result.output
    assert f"filling the gaps of {first}" in result.output
    assert f"with the 20 rows of {first}: centered L2 discrepancy" in result.output
    assert len(more.read_text().splitlines()) == 11


@pytest.mark.parametrize(("args", "message"), [
    (["--n", "50", "--method", "sobol"], "sobol needs a power of two points"),
    (["--n", "5", "--extend", "missing.csv"], "data file not found: missing.csv"),
])
def test_a_failed_design_is_one_line_and_leaves_the_output_alone(tmp_path, bounds, args,
                                                                  message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "design.csv"
    out.write_text("kept\n")
    result = CliRunner().invoke(main, ["design", "--bounds", str(bounds), *args, "--out",
                                       str(out)])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert out.read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bounds.toml", "design.csv"]
