"""Small training tables for CLI tests: ``y = sin(4a) * (1 + b)`` on the unit square."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_runs_table(path: Path, rows: int, seed: int = 0) -> Path:
    """Write ``rows`` rows of columns a, b, y as CSV to ``path`` and return it."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0, 1, rows), rng.uniform(0, 1, rows)
    pd.DataFrame({"a": a, "b": b, "y": np.sin(4 * a) * (1 + b)}).to_csv(path, index=False)
    return path
