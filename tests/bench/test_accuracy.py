"""bench.accuracy: a small run of both parts as its command line runs them, and the Kriging
contender's settings."""

from __future__ import annotations

import importlib.util
import math

from bench import accuracy
from bench.accuracy import (
    CAREFUL,
    KRIGING,
    NOISY_STARTS,
    OURS,
    SMT_MAX_INPUTS,
    SMT_MAX_ROWS,
    Case,
)
from training.functions import FUNCTIONS


def _rows(text: str, heading: str) -> dict[str, list[str]]:
    """The rows of the Markdown table under ``### heading``, by their first cell."""
    section = text.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    cells = [line.strip("|").split("|") for line in section.splitlines()
             if line.startswith("|") and not line.startswith("|---")]
    return {row[0].strip(): [c.strip() for c in row[1:]] for row in cells[1:]}


def test_a_small_run_scores_every_contender_on_every_case_and_size(tmp_path):
    out = tmp_path / "accuracy.md"
    code = accuracy.main(["--cases", "ishigami,borehole@0.05", "--rows", "60",
                          "--sizes", "30,100", "--contenders", "ours,careful,kriging",
                          "--out", str(out)])
    assert code == 0
    text = out.read_text()
    smt = importlib.util.find_spec("smt") is not None
    for heading in ("ishigami (3 inputs)", "borehole (8 inputs, 5% noise)"):
        rows = _rows(text, heading)
        errors = {label: float(rows[label][0]) for label in (OURS, CAREFUL)}
        assert all(math.isfinite(e) and 0 < e < 2 for e in errors.values()), (heading, errors)
        assert float(rows[CAREFUL][1]) == 1.0
        assert abs(float(rows[OURS][1]) - errors[OURS] / errors[CAREFUL]) < 0.01
        kriging = rows[KRIGING]
        if smt:
            assert math.isfinite(float(kriging[0])), kriging
        else:  # said in the table, not left out
            assert kriging[0] == "-" and "smt is not installed" in kriging[-1], kriging
    sizes = _rows(text, "Table size: borehole, noise-free")
    assert list(sizes) == ["30", "100"]
    for cells in sizes.values():
        assert math.isfinite(float(cells[0])) and float(cells[1]) > 0  # ours: error, fit s
    assert (tmp_path / "accuracy-sizes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kriging_estimates_the_noise_from_several_starts_only_on_noisy_cases():
    noisy, clean = accuracy.kriging(Case("piston", 0.01), 0), accuracy.kriging(Case("piston"), 0)
    assert (noisy.eval_noise, noisy.starts) == (True, NOISY_STARTS)
    assert NOISY_STARTS > 1
    assert (clean.eval_noise, clean.starts) == (False, 1)


def test_kriging_is_run_only_where_it_finishes_and_says_why_not_elsewhere():
    wide, small = Case("welch"), Case("borehole")
    assert FUNCTIONS[wide.function].n_inputs > SMT_MAX_INPUTS >= FUNCTIONS[small.function].n_inputs
    assert f"up to {SMT_MAX_INPUTS} inputs" in accuracy.kriging_skip(wide, 100)
    assert "O(rows^3)" in accuracy.kriging_skip(small, SMT_MAX_ROWS + 1)
    reason = accuracy.kriging_skip(small, SMT_MAX_ROWS)
    if importlib.util.find_spec("smt") is None:
        assert "smt is not installed" in reason
    else:
        assert reason is None
