"""``surrogate train``: a table in, a checked, versioned ONNX bundle out."""

from __future__ import annotations

from pathlib import Path

import click

from training.cli.common import (
    CliUsageError,
    epoch_progress,
    failed,
    failures,
    fit_notices,
    parse_units,
    report_result,
    split_list,
    table_options,
)

# CLI option -> SurrogateMLP parameter, for options that pass straight through.
_PASSTHROUGH = {
    "output_activation": "output_activation",
    "epochs": "max_iter",
    "solver": "solver",
    "lr": "learning_rate_init",
    "batch_size": "batch_size",
    "alpha": "alpha",
    "x_scaling": "x_scaling",
    "y_scaling": "y_scaling",
    "cv": "cv",
    "time_budget": "time_budget",
}


@click.command()
@table_options("Model name in the repository.")
@click.option("--hidden", default="64,64", show_default=True, help="Hidden layer sizes.")
@click.option("--activation", default="auto", show_default=True,
              help="One activation for all hidden layers, or one per layer: relu,elu "
                   "(auto: tanh and silu race in the cross-validation).")
@click.option("--output-activation", default=None, help="Activation of the output layer.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Maximum epochs.")
@click.option("--solver", default=None, help="auto (default), adam or lbfgs.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Initial learning rate (Adam).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Adam batch size.")
@click.option("--alpha", type=click.FloatRange(min=0), default=None,
              help="L2 penalty (default: chosen by cross-validation).")
@click.option("--cv", type=click.IntRange(min=2), default=None,
              help="Folds of the cross-validation that chooses the L2 penalty (default 4).")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS",
              help="Bound on the whole fit, selection included (default: 4.5 s up to 100 rows, "
                   "54 s at 1000, 540 s from 100,000 rows on).")
@click.option("--x-scaling", type=click.Choice(["standard", "minmax", "none"]), default=None)
@click.option("--y-scaling", type=click.Choice(["auto", "standard", "minmax", "log", "none"]),
              default=None,
              help="Scaling of the outputs (default auto: log for positive outputs spanning "
                   "decades whose logarithm is the less skewed, else standard).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--ensemble", type=click.IntRange(min=2), default=None,
              help="Train a deep ensemble of this many members (seeds SEED, SEED+1, ...); the "
                   "model also outputs std, the spread of the members.")
@click.option("--n-jobs", type=int, default=-1, show_default=True,
              help="Processes for the cross-validation, or ensemble members trained at a time "
                   "(-1: one per core).")
@click.option("--units", default=None, help="Units per column: rw=m,Q=m3/yr.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True),
              default=0.0, show_default=True,
              help="Rows held out, unseen by the fit, for the reported metrics (0: train on every "
                   "row and report the cross-validated error).")
@click.option("--refit/--no-refit", default=False, show_default=True,
              help="With --test-fraction: refit on all rows after measuring (the card records "
                   "it).")
@click.option("--drop-invalid", is_flag=True, help="Drop rows with empty/NaN/inf/text cells.")
@click.option("--description", default="", help="One line for the model card.")
@click.option("--progress/--no-progress", default=True, help="Show the epoch progress line.")
def train(**options) -> None:
    """Train a surrogate on a table and write a new version to the model repository."""
    from training.data import load_table
    from training.pipeline import train_and_export

    job = _job(options)
    try:
        data = load_table(
            options["data"], split_list(options["inputs"]), split_list(options["outputs"]),
            drop_invalid=options["drop_invalid"],
            positive_outputs=options["y_scaling"] == "log",
        )
        if data.dropped_rows:
            click.echo(f"dropped {data.dropped_rows} row(s) with invalid cells", err=True)
        with fit_notices(), epoch_progress(f"training {job.name}", options["progress"]) as callback:
            result = train_and_export(data, job, callback=callback)
    except failures() as exc:
        raise failed(exc) from exc
    _report(result)


def _job(options: dict):
    from training.bundle import check_name
    from training.pipeline import TrainJob

    try:
        check_name(options["name"])
    except ValueError as exc:  # BundleFormatError
        raise CliUsageError(f"--name: {exc}") from exc
    params = {"hidden_layer_sizes": _hidden(options["hidden"])}
    activations = split_list(options["activation"])
    if "auto" in activations and len(activations) > 1:
        raise CliUsageError("--activation: auto chooses one activation for all hidden layers; "
                            "give it alone, or name one activation per layer")
    _check_activations([a for a in activations if a != "auto"]
                       + split_list(options["output_activation"]))
    params["activation"] = activations[0] if len(activations) == 1 else tuple(activations)
    params.update({param: options[flag] for flag, param in _PASSTHROUGH.items()
                   if options[flag] is not None})
    if not options["ensemble"]:
        params["n_jobs"] = options["n_jobs"]  # the cross-validation's processes
    return TrainJob(
        name=options["name"], repo=Path(options["repo"]), params=params,
        units=parse_units(options["units"]), test_fraction=options["test_fraction"],
        refit=options["refit"], seed=options["seed"], description=options["description"],
        ensemble=options["ensemble"] or 0, n_jobs=options["n_jobs"],
    )


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in split_list(text))
    except ValueError as exc:
        raise CliUsageError(f"--hidden: expected sizes like 64,64, got {text!r}") from exc
    if not sizes or min(sizes) < 1:
        raise CliUsageError(f"--hidden: expected positive sizes like 64,64, got {text!r}")
    return sizes


def _check_activations(names: list[str]) -> None:
    from training.activations import get_activation

    for name in names:
        try:
            get_activation(name)
        except ValueError as exc:
            raise CliUsageError(f"--activation: {exc}") from exc


def _report(result) -> None:
    report_result(result)
