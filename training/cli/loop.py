"""``surrogate loop``: design, simulate, train an ensemble, suggest, simulate, retrain, until the
budget is spent or the target reached; ``--resume DIR`` carries a stopped loop on."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click
from click.core import ParameterSource

from training.cli.common import CliUsageError, failed, failures, split_list


@click.command()
@click.option("--simulator", default=None,
              help='The command that simulates a CSV of input rows, e.g. "python sim.py": its '
                   "input file is its last argument and $SURROGATE_INPUT; it writes the rows "
                   "with output columns to $SURROGATE_OUTPUT.")
@click.option("--bounds", type=click.Path(dir_okay=False), default=None,
              help="The inputs' ranges (TOML, as surrogate design reads it).")
@click.option("--name", default=None, help="Model name in the repository.")
@click.option("--outputs", default=None,
              help="Output columns to train on (default: the simulator's columns that are not "
                   "inputs).")
@click.option("--repo", default="models", show_default=True, envvar="SURROGATE_MODEL_REPOSITORY",
              type=click.Path(file_okay=False), help="Model repository directory.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Loop directory (default: loop-NAME).")
@click.option("--initial", type=click.IntRange(min=2), default=None,
              help="Rows of the initial design (optimised LHS).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Rows suggested per round.")
@click.option("--budget", type=click.IntRange(min=2), default=None,
              help="Simulations in all (failed ones count); with --resume, a new budget.")
@click.option("--target", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop once the cross-validated relative RMSE of every output is at most this.")
@click.option("--ensemble", type=click.IntRange(min=2), default=5, show_default=True,
              help="Members of each round's ensemble (its spread chooses the next rows).")
@click.option("--hidden", default="32,32", show_default=True, help="Hidden layer sizes.")
@click.option("--activation", default="auto", show_default=True,
              help="Hidden activation (auto: tanh and silu race in the cross-validation).")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds each member's fit may take (default: the estimator's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Simulator calls (and ensemble fits) at a time on this machine.")
@click.option("--scheduler", default=None, envvar="SURROGATE_DASK_SCHEDULER",
              help="Run the simulator calls on this Dask scheduler, e.g. tcp://host:8786.")
@click.option("--chunk", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows per simulator call.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds a simulator call may take; its rows fail after that.")
@click.option("--resume", type=click.Path(file_okay=False), default=None,
              help="Carry on the loop in this directory, with its settings.")
@click.pass_context
def loop(ctx: click.Context, **options) -> None:
    """Run the engineer's loop unattended: an initial design, the simulator, an ensemble, the
    next simulations where it is least sure, until --budget simulations or --target."""
    from training.loop import Loop, LoopSettings

    if options["resume"]:
        given = [f"--{'dir' if flag == 'directory' else flag.replace('_', '-')}"
                 for flag in _SETTINGS_FLAGS
                 if ctx.get_parameter_source(flag) is ParameterSource.COMMANDLINE]
        if given:
            raise CliUsageError(f"--resume carries on with the loop's own settings; only "
                                f"--budget can change ({', '.join(given)} given)")
    try:
        if options["resume"]:
            runner = Loop.resume(options["resume"])
            if options["budget"]:
                runner.settings.budget = options["budget"]
        else:
            runner = Loop.create(_directory(options), LoopSettings(**_settings(options)))
    except failures() as exc:
        raise failed(exc) from None
    try:
        reason = runner.run(lambda line: click.echo(line))
    except KeyboardInterrupt:
        click.echo(f"interrupted: {len(runner.x)} finished rows are kept in {runner.directory}; "
                   f"carry on with `surrogate loop --resume {runner.directory}`", err=True)
        sys.exit(130)
    except failures() as exc:
        raise failed(exc, f"{runner.directory}: ") from None
    click.echo(f"done: {reason}; report in {runner.directory / 'report.md'}")


# Options fixed when the loop starts (all but --resume and --budget).
_SETTINGS_FLAGS = ("simulator", "bounds", "name", "outputs", "repo", "directory", "initial",
                   "batch", "target", "ensemble", "hidden", "activation", "time_budget", "seed",
                   "n_jobs", "scheduler", "chunk", "timeout")


def _directory(options: dict) -> Path:
    return Path(options["directory"] or f"loop-{options['name']}")


def _settings(options: dict) -> dict:
    from training.bundle import check_name
    from training.design import read_bounds

    missing = [f"--{flag}" for flag in ("simulator", "bounds", "name", "initial", "batch",
                                        "budget") if options[flag] is None]
    if missing:
        raise CliUsageError(f"missing {', '.join(missing)} (or --resume DIR)")
    try:
        check_name(options["name"])
    except ValueError as exc:
        raise CliUsageError(f"--name: {exc}") from exc
    try:
        sizes = tuple(int(s) for s in split_list(options["hidden"]))
    except ValueError:
        raise CliUsageError(
            f"--hidden: expected sizes like 32,32, got {options['hidden']!r}") from None
    params = {"hidden_layer_sizes": sizes, "activation": options["activation"]}
    if options["time_budget"]:
        params["time_budget"] = options["time_budget"]
    factors = read_bounds(options["bounds"])
    outputs = split_list(options["outputs"]) or None
    both = sorted(set(outputs or []) & {f.name for f in factors})
    if both:
        raise CliUsageError(f"--outputs names inputs: {', '.join(both)}")
    return {"name": options["name"], "repo": options["repo"], "simulator": options["simulator"],
            "factors": [asdict(f) for f in factors], "initial": options["initial"],
            "batch": options["batch"], "budget": options["budget"], "outputs": outputs,
            "target": options["target"], "ensemble": options["ensemble"], "params": params,
            "seed": options["seed"], "n_jobs": options["n_jobs"],
            "scheduler": options["scheduler"], "chunk": options["chunk"],
            "timeout": options["timeout"]}  # fmt: skip
