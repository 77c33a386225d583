"""A sweep's result: the leaderboard (one row per configuration, best first, over its runs),
and how it is written: leaderboard.csv, leaderboard.json, curves.png and report.md."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.jsonable import jsonable

if TYPE_CHECKING:
    from training.sweep import Config, Grid

__all__ = ["Leaderboard", "aggregate", "curves_png"]

_COLUMNS = ("rank", "activations", "hidden", "n_params", "val_rmse_mean", "val_rmse_std",
            "val_r2_mean", "val_r2_std", "epochs", "fit_seconds", "predict_us_per_row",
            "runs", "status", "reason")


@dataclass
class Leaderboard:
    """Aggregated rows (best first) and the individual runs they summarise."""

    rows: list[dict]
    runs: list[dict]
    grid: Grid
    total_tasks: int
    interrupted: bool = False

    @property
    def winner(self) -> dict | None:
        return self.rows[0] if self.rows and self.rows[0]["status"] == "ok" else None

    def write(self, directory: str | os.PathLike) -> Path:
        """leaderboard.csv, leaderboard.json, curves.png and report.md in ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "leaderboard.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
        document = {"grid": self.grid.to_dict(), "tasks": self.total_tasks,
                    "finished": len(self.runs), "interrupted": self.interrupted,
                    "rows": self.rows, "runs": self.runs}
        (directory / "leaderboard.json").write_text(
            json.dumps(jsonable(document), indent=1), encoding="utf-8")
        (directory / "curves.png").write_bytes(curves_png(self.runs))
        (directory / "report.md").write_text(self.markdown(), encoding="utf-8")
        return directory / "leaderboard.json"

    def markdown(self) -> str:
        lines = ["# Sweep leaderboard", ""]
        if self.interrupted:
            lines += [f"Interrupted: {len(self.runs)} of {self.total_tasks} runs finished.", ""]
        lines += ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        lines += ["| " + " | ".join(_cell(row.get(c)) for c in _COLUMNS) + " |"
                  for row in self.rows]
        return "\n".join([*lines, "", "![validation loss curves](curves.png)", ""])


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "/")


def aggregate(configs: list[Config], runs: list[dict]) -> list[dict]:
    """One row per configuration that ran: mean and spread of its runs' scores, best first
    (failed configurations last), ranked."""
    rows = []
    for i, config in enumerate(configs):
        mine = [r for r in runs if r["config"] == i]
        if not mine:
            continue
        ok = [r for r in mine if r["status"] == "ok"]
        failed = [r for r in mine if r["status"] != "ok"]
        row = {"config": i, "activations": config.activation_label,
               "hidden": config.hidden_label, "runs": len(mine),
               "status": "ok" if ok else "failed",
               "reason": f"{len(failed)} of {len(mine)} runs failed: {failed[0]['reason']}"
               if failed else "",
               "workers": sorted({r["worker"] for r in mine})}
        for key in ("val_rmse", "val_r2"):
            values = [r[key] for r in ok]
            row[f"{key}_mean"] = float(np.mean(values)) if ok else math.nan
            row[f"{key}_std"] = float(np.std(values)) if ok else math.nan
        for key in ("n_params", "epochs", "fit_seconds", "predict_us_per_row"):
            row[key] = float(np.mean([r[key] for r in ok])) if ok else math.nan
        rows.append(row)
    rows.sort(key=lambda r: (r["status"] != "ok", _nan_last(r["val_rmse_mean"])))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def _nan_last(value: float) -> float:
    return math.inf if math.isnan(value) else value


def curves_png(runs: list[dict]) -> bytes:
    """Every run's validation loss per epoch, log scale, one colour per activation."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from training.report import figure_png

    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    labels = sorted({r["activations"] for r in runs})
    colours = {label: f"C{k % 10}" for k, label in enumerate(labels)}
    shown = set()
    for run in runs:
        curve = run.get("val_curve") or []
        if run["status"] != "ok" or not curve:
            continue
        label = run["activations"] if run["activations"] not in shown else None
        shown.add(run["activations"])
        ax.semilogy(np.arange(1, len(curve) + 1), curve, color=colours[run["activations"]],
                    alpha=0.7, linewidth=0.9, label=label)
    ax.set_xlabel("epoch / iteration")
    ax.set_ylabel("validation loss (scaled units)")
    ax.set_title("validation loss of every run")
    ax.grid(True, which="both", alpha=0.3)
    if shown:
        ax.legend(fontsize="small")
    return figure_png(fig)
