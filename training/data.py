"""Load a simulation table (CSV or Parquet) and check it before any training starts.

Every problem is a `DataError` whose message is one line naming the file, column and rows, so the
CLI can print it as is and exit without writing anything.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import DataError, first_line

MIN_ROWS = 20
_MAX_LISTED = 5  # rows named in a message before "and N more"


@dataclass(frozen=True)
class Dataset:
    """Numeric inputs and outputs of a table, in physical units."""

    X: np.ndarray
    Y: np.ndarray
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    source: str
    sha256: str
    dropped_rows: int = 0

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]


def load_table(
    path: str | Path,
    inputs: list[str],
    outputs: list[str],
    *,
    drop_invalid: bool = False,
    positive_outputs: bool = False,
    for_training: bool = True,
) -> Dataset:
    """Read ``path`` and return the named columns as float64 arrays.

    Parameters
    ----------
    path : str or Path
        A ``.csv`` (or ``.txt``/``.tsv``) or ``.parquet`` file with a header row.
    inputs, outputs : list of str
        Column names; each must exist once and appear in only one of the two lists.
    drop_invalid : bool
        Drop rows with empty, non-numeric, NaN or infinite cells instead of failing.
    positive_outputs : bool
        Require every output to be > 0 (for log scaling).
    for_training : bool
        Require at least ``MIN_ROWS`` rows and no constant column; False (a table to evaluate a
        model on) takes any non-empty table.
    """
    path = Path(path)
    _check_names(inputs, outputs, need_outputs=for_training)
    raw = path.read_bytes() if path.is_file() else None
    if raw is None:
        raise DataError(f"data file not found: {path}")
    frame = _read_frame(path)
    _check_columns(frame.columns, inputs + outputs, path)
    values, dropped = _numeric_block(frame, inputs + outputs, path, drop_invalid)
    needed = MIN_ROWS if for_training else 1
    if values.shape[0] < needed:
        raise DataError(
            f"{path.name}: {values.shape[0]} usable rows; at least {needed} are needed"
            + (" to train and estimate the error" if for_training else "")
        )
    n_in = len(inputs)
    X, Y = values[:, :n_in], values[:, n_in:]
    if for_training:
        _check_constant(X, inputs, "input", path)
        _check_constant(Y, outputs, "output", path)
    if positive_outputs:
        _check_positive(Y, outputs, path)
    return Dataset(
        X=X,
        Y=Y,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        source=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
        dropped_rows=dropped,
    )


def _check_names(inputs: list[str], outputs: list[str], need_outputs: bool) -> None:
    if not inputs:
        raise DataError("no input columns given (--inputs)")
    if need_outputs and not outputs:
        raise DataError("no output columns given (--outputs)")
    seen: set[str] = set()
    for name in inputs + outputs:
        if name in seen:
            raise DataError(f"column {name!r} is named twice in --inputs/--outputs")
        seen.add(name)


def _read_frame(path: Path):
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in {".csv", ".txt", ".tsv"}:
            _check_csv_header(path, "\t" if suffix == ".tsv" else ",")
            # Read as text so that we, not pandas, decide what a bad cell is and where it is.
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str,
                               keep_default_na=False, skipinitialspace=True)
    except DataError:
        raise
    except Exception as exc:  # pandas and pyarrow raise many types for unreadable files
        raise DataError(f"cannot read {path.name}: {first_line(exc)}") from exc
    raise DataError(f"{path.name}: unsupported file type {suffix!r}; use .csv or .parquet")


def _check_csv_header(path: Path, sep: str) -> None:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle, delimiter=sep), None)
    if not header:
        raise DataError(f"{path.name} is empty: no header row")
    names = [h.strip() for h in header]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{path.name}: duplicate column names {', '.join(duplicates)}")


def _check_columns(columns, wanted: list[str], path: Path) -> None:
    present = [str(c).strip() for c in columns]
    missing = [name for name in wanted if name not in present]
    if missing:
        raise DataError(
            f"{path.name}: no column {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(present)})"
        )


def _numeric_block(frame, names: list[str], path: Path, drop_invalid: bool):
    frame = frame.rename(columns=lambda c: str(c).strip())
    columns = [_to_float(frame[name]) for name in names]
    values = np.column_stack(columns) if columns else np.empty((len(frame), 0))
    bad = ~np.isfinite(values)
    bad_rows = np.flatnonzero(bad.any(axis=1))
    if bad_rows.size and not drop_invalid:
        col = int(np.flatnonzero(bad[bad_rows[0]])[0])
        cell = frame[names[col]].iloc[bad_rows[0]]
        raise DataError(
            f"{path.name}: invalid value {str(cell)!r} in column {names[col]!r}; "
            f"{bad_rows.size} row(s) with empty, non-numeric, NaN or infinite cells: "
            f"{_row_list(bad_rows)} (use --drop-invalid to drop them)"
        )
    return np.delete(values, bad_rows, axis=0), int(bad_rows.size)


def _to_float(series) -> np.ndarray:
    """Parse one column to float64; anything unparseable becomes NaN (found as invalid)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    ):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(series.astype(str).str.strip(), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )


def _row_list(rows: np.ndarray) -> str:
    """Name rows 1-based as a person counts data rows (the header is not a row)."""
    shown = ", ".join(str(r + 1) for r in rows[:_MAX_LISTED])
    more = rows.size - _MAX_LISTED
    return f"rows {shown}" + (f" and {more} more" if more > 0 else "")


def _check_constant(block: np.ndarray, names: list[str], kind: str, path: Path) -> None:
    spread = block.max(axis=0) - block.min(axis=0)
    for name, value, width in zip(names, block[0], spread, strict=True):
        if width == 0:
            raise DataError(
                f"{path.name}: {kind} {name!r} is constant ({value:g}); a surrogate cannot "
                f"learn from or for it; leave it out of --{kind}s"
            )


def _check_positive(Y: np.ndarray, names: list[str], path: Path) -> None:
    for j, name in enumerate(names):
        low = int(np.argmin(Y[:, j]))
        if Y[low, j] <= 0:
            raise DataError(
                f"{path.name}: output {name!r} has a non-positive value ({Y[low, j]:g}, "
                f"row {low + 1}); log scaling needs every value > 0"
            )
