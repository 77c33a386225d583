"""``surrogate demo``: train the embedded demo models into the repository, through the same
pipeline as ``surrogate train``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import click

from training.cli.common import CliUsageError, report_result


@dataclass(frozen=True)
class DemoModel:
    name: str
    function: str
    rows: int
    params: dict = field(default_factory=dict)
    description: str = ""


# Every demo chooses its L2 penalty by cross-validation, as `surrogate train` does; their time
# budgets keep all three under a minute on two cores (39 s here: the plan is shrunk to fit the
# budget up front, so the result does not depend on the machine's speed unless a machine slower
# than the work model makes the deadline cut it).
DEMOS = (
    DemoModel("borehole", "borehole", 1000,
              {"hidden_layer_sizes": (32, 32), "activation": "tanh", "time_budget": 20.0},
              "Water flow through a borehole (Harper & Gupta), 8 inputs, tanh MLP."),
    DemoModel("thermal_actuator", "thermal_actuator", 600,
              {"hidden_layer_sizes": (16, 16), "activation": "tanh", "time_budget": 12.0},
              "Electrothermal actuator: two inputs, two outputs, tanh layers as in COMSOL's "
              "DNN example."),
    DemoModel("surface", "surface", 1500,
              {"hidden_layer_sizes": (64, 64), "activation": "relu",
               "output_activation": "identity", "time_budget": 20.0},
              "A function surface with ridges: ReLU hidden layers and a linear output layer."),
)


@click.command()
@click.option("--repo", default="models", show_default=True, envvar="SURROGATE_MODEL_REPOSITORY",
              type=click.Path(file_okay=False), help="Model repository directory.")
@click.option("--if-missing", is_flag=True, help="Only train demo models with no version yet.")
@click.option("--only", default=None, help="Comma-separated subset of demo model names.")
@click.option("--tables", type=click.Path(file_okay=False), default=None,
              help="Also write each demo's training table as CSV into this directory, a "
                   "table of fresh runs beside it (NAME-new.csv) to evaluate the model on, and "
                   "its input ranges (NAME.bounds.toml) for surrogate design.")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(repo: str, if_missing: bool, only: str | None, tables: str | None, seed: int) -> None:
    """Train the demo surrogates (borehole, thermal_actuator, surface) into the repository."""
    from rich.console import Console

    from training.bundle import latest_version
    from training.pipeline import TrainJob, train_and_export

    console = Console()
    chosen = _select(only)
    for spec in chosen:
        if if_missing and latest_version(Path(repo), spec.name) is not None:
            console.print(f"{spec.name}: already in {repo}, skipped")
            continue
        data = _dataset(spec, seed)
        if tables:
            _write_table(data, Path(tables) / f"{spec.name}.csv")
            _write_table(_fresh(spec, seed), Path(tables) / f"{spec.name}-new.csv")
            _write_bounds(spec, Path(tables) / f"{spec.name}.bounds.toml")
        job = TrainJob(name=spec.name, repo=Path(repo), params=spec.params, seed=seed,
                       units=_units(spec.function), description=spec.description)
        with console.status(f"training {spec.name} on {spec.rows} rows"):
            result = train_and_export(data, job)
        console.print(f"{spec.name}:")
        report_result(result, console)


def _select(only: str | None) -> tuple[DemoModel, ...]:
    if not only:
        return DEMOS
    wanted = [s.strip() for s in only.split(",") if s.strip()]
    names = {d.name for d in DEMOS}
    unknown = [w for w in wanted if w not in names]
    if unknown:
        known = ", ".join(sorted(names))
        raise CliUsageError(f"--only: unknown demo model {', '.join(unknown)} (known: {known})")
    return tuple(d for d in DEMOS if d.name in wanted)


def _units(function_name: str) -> dict[str, str]:
    from training.functions import FUNCTIONS

    fn = FUNCTIONS[function_name]
    return {col[0]: col[1] for col in (*fn.inputs, *fn.outputs)}


def _dataset(spec: DemoModel, seed: int):
    from training.data import Dataset
    from training.functions import FUNCTIONS

    fn = FUNCTIONS[spec.function]
    X = fn.sample(spec.rows, method="lhs", seed=seed)
    Y = fn(X)
    digest = hashlib.sha256(X.tobytes() + Y.tobytes()).hexdigest()
    return Dataset(X=X, Y=Y, inputs=tuple(c[0] for c in fn.inputs),
                   outputs=tuple(c[0] for c in fn.outputs),
                   source=f"demo:{spec.function}:lhs:{spec.rows}:seed{seed}", sha256=digest)


def _fresh(spec: DemoModel, seed: int, rows: int = 200):
    """New simulations the model never saw: uniform draws inside the training ranges."""
    from training.data import Dataset
    from training.functions import FUNCTIONS

    fn = FUNCTIONS[spec.function]
    X = fn.sample(rows, method="uniform", seed=seed + 1)
    return Dataset(X=X, Y=fn(X), inputs=tuple(c[0] for c in fn.inputs),
                   outputs=tuple(c[0] for c in fn.outputs), source="", sha256="")


def _write_bounds(spec: DemoModel, path: Path) -> None:
    """The demo's input ranges and units, as ``surrogate design --bounds`` reads them."""
    from training.design import Factor, bounds_toml
    from training.functions import FUNCTIONS

    factors = [Factor(name, low, high, unit)
               for name, unit, low, high in FUNCTIONS[spec.function].inputs]
    path.write_text(bounds_toml(factors), encoding="utf-8")


def _write_table(data, path: Path) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    header = ",".join(data.inputs + data.outputs)
    np.savetxt(path, np.hstack([data.X, data.Y]), delimiter=",", header=header, comments="",
               fmt="%.10g")
