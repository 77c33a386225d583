"""Helpers of the `surrogate loop` tests: borehole as the simulator (bench.simulators.analytic,
a process of its own), its bounds, the loop's command line with small training settings, and the
check of a finished loop directory."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from training.design import bounds_toml, factors_from
from training.functions import FUNCTIONS

BOREHOLE = FUNCTIONS["borehole"]
INPUTS = [spec[0] for spec in BOREHOLE.inputs]
ROOT = Path(__file__).resolve().parents[1]
SIMULATOR = f"{sys.executable} {ROOT / 'bench' / 'simulators' / 'analytic.py'}"
SMALL = ["--ensemble", "2", "--hidden", "8", "--time-budget", "1"]


def write_bounds(path: Path) -> Path:
    """Borehole's input ranges as a bounds file."""
    specs = [{"name": n, "unit": u, "min": low, "max": high} for n, u, low, high in BOREHOLE.inputs]
    path.write_text(bounds_toml(factors_from(specs, False)))
    return path


def loop_args(bounds: Path, tmp_path: Path, *extra: str, simulator: str = SIMULATOR) -> list[str]:
    return ["loop", "--simulator", simulator, "--bounds", str(bounds), "--name", "bh",
            "--repo", str(tmp_path / "repo"), "--dir", str(tmp_path / "loop"), *SMALL, *extra]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def xs(table: list[dict]) -> list[tuple]:
    return [tuple(float(r[n]) for n in INPUTS) for r in table]


def check_finished_state(directory: Path, budget: int) -> tuple[list[dict], list[dict]]:
    """Every simulation is either a finished row with the true outputs or a failed row with its
    reason, none twice, as many as the budget; the report and every round's model exist."""
    table, failed = rows(directory / "table.csv"), rows(directory / "failed.csv")
    assert len(table) + len(failed) == budget
    assert len(set(xs(table) + xs(failed))) == budget
    X = np.array(xs(table))
    np.testing.assert_allclose([float(r["Q"]) for r in table], BOREHOLE(X).ravel(), rtol=1e-12)
    assert all(r["reason"] for r in failed)
    assert rows(directory / "pending.csv") == []
    state = json.loads((directory / "loop.json").read_text())
    assert state["status"].startswith("done")
    versions = [r["version"] for r in state["rounds"]]
    assert versions == sorted(set(versions))
    models = Path(state["settings"]["repo"]) / state["settings"]["name"]
    for index, record in enumerate(state["rounds"]):
        assert len(rows(directory / f"round-{index}.csv")) == record["rows"]
        assert (models / str(record["version"]) / "model.onnx").is_file()
    report = (directory / "report.md").read_text()
    assert f"| {len(state['rounds']) - 1} | {budget} |" in report
    assert (directory / "error.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return table, failed
