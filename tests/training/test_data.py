from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data import MIN_ROWS, DataError, load_table


def _frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0, 1, n), rng.uniform(1, 2, n)
    return pd.DataFrame({"a": a, "b": b, "y": a * b + 1.0, "z": np.exp(a)})


def _write_csv(path, frame: pd.DataFrame, edits: dict | None = None) -> None:
    text = frame.astype(object)
    for (row, column), value in (edits or {}).items():
        text.loc[row, column] = value
    text.to_csv(path, index=False)


def test_csv_and_parquet_give_the_same_numbers(tmp_path):
    frame = _frame()
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    from_csv = load_table(tmp_path / "t.csv", ["a", "b"], ["y", "z"])
    from_parquet = load_table(tmp_path / "t.parquet", ["a", "b"], ["y", "z"])
    np.testing.assert_allclose(from_csv.X, frame[["a", "b"]].to_numpy())
    np.testing.assert_array_equal(from_csv.Y, from_parquet.Y)
    assert from_csv.inputs == ("a", "b") and from_csv.outputs == ("y", "z")
    assert len(from_csv.sha256) == 64 and from_csv.dropped_rows == 0


BAD_TABLES = [
    # (edits to a 40-row table, inputs, outputs, options, message fragment)
    ({}, ["a", "nope"], ["y"], {}, "no column 'nope' (columns: a, b, y, z)"),
    ({}, ["a", "b"], ["a"], {}, "column 'a' is named twice"),
    ({}, [], ["y"], {}, "no input columns given"),
    ({(3, "a"): "abc"}, ["a", "b"], ["y"], {}, "invalid value 'abc' in column 'a'"),
    ({(3, "a"): "abc"}, ["a", "b"], ["y"], {}, "rows 4 (use --drop-invalid"),
    ({(5, "y"): "nan", (7, "b"): "inf"}, ["a", "b"], ["y"], {}, "2 row(s) with empty"),
    ({(5, "y"): ""}, ["a", "b"], ["y"], {}, "invalid value '' in column 'y'"),
    ({(2, "z"): "-1"}, ["a", "b"], ["z"], {"positive_outputs": True},
     "output 'z' has a non-positive value (-1, row 3); log scaling needs every value > 0"),
]


@pytest.mark.parametrize(("edits", "inputs", "outputs", "options", "message"), BAD_TABLES)
def test_bad_tables_name_the_problem(tmp_path, edits, inputs, outputs, options, message):
    path = tmp_path / "t.csv"
    _write_csv(path, _frame(), edits)
    with pytest.raises(DataError) as info:
        load_table(path, inputs, outputs, **options)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_drop_invalid_drops_and_counts(tmp_path):
    path = tmp_path / "t.csv"
    _write_csv(path, _frame(), {(3, "a"): "abc", (5, "y"): "nan", (7, "b"): "-inf"})
    data = load_table(path, ["a", "b"], ["y"], drop_invalid=True)
    assert data.dropped_rows == 3 and data.n_rows == 37
    assert np.isfinite(data.X).all() and np.isfinite(data.Y).all()


def test_constant_columns_are_refused(tmp_path):
    frame = _frame()
    frame["b"] = 2.5
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="input 'b' is constant"):
        load_table(tmp_path / "t.csv", ["a", "b"], ["y"])
    frame["y"] = 1.0
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="output 'y' is constant"):
        load_table(tmp_path / "t.csv", ["a"], ["y"])


def test_too_few_rows(tmp_path):
    _frame(MIN_ROWS - 1).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=f"{MIN_ROWS - 1} usable rows; at least {MIN_ROWS}"):
        load_table(tmp_path / "t.csv", ["a"], ["y"])


def test_duplicate_header_and_missing_file(tmp_path):
    (tmp_path / "d.csv").write_text("a,a,y\n1,2,3\n")
    with pytest.raises(DataError, match="duplicate column names a"):
        load_table(tmp_path / "d.csv", ["a"], ["y"])
    with pytest.raises(DataError, match="data file not found"):
        load_table(tmp_path / "missing.csv", ["a"], ["y"])
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported file type '.xlsx'"):
        load_table(tmp_path / "t.xlsx", ["a"], ["y"])
