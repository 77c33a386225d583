"""``surrogate sweep``: fit a grid of activations x architectures, rank them, export the winner."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

import click

from training.cli.common import (
    CliError,
    failed,
    failures,
    fit_notices,
    split_list,
    table_options,
)

_PASSTHROUGH = {"epochs": "max_iter", "solver": "solver", "lr": "learning_rate_init",
                "alpha": "alpha"}


@click.command()
@table_options("Model name of the exported winner.")
@click.option("--activations", default="relu,tanh,elu,silu,gelu", show_default=True,
              help="Activations to try; '+' makes a per-layer mix: tanh,relu+identity.")
@click.option("--hidden", default="32,32;64,64", show_default=True,
              help="Architectures to try, ';'-separated.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Random seeds per configuration.")
@click.option("--cv", type=click.IntRange(min=2), default=None,
              help="K-fold cross-validation instead of one held-out split.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Directory for the leaderboard files [default: ./sweep-NAME].")
@click.option("--scheduler", default=None, envvar="SURROGATE_DASK_SCHEDULER",
              help="Run on this Dask scheduler, e.g. tcp://host:8786.")
@click.option("--n-jobs", type=int, default=-1, show_default=True,
              help="Local worker processes (-1: one per core); ignored with --scheduler.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Maximum epochs.")
@click.option("--solver", default=None, help="auto (default), adam or lbfgs.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Initial learning rate (Adam).")
@click.option("--alpha", type=click.FloatRange(min=0), default=None,
              help="L2 penalty of every run (default: each run chooses its own by "
                   "cross-validation; a fixed one makes a quick screen).")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True, help="Rows held out (without --cv).")
@click.option("--progress/--no-progress", default=True,
              help="Show the progress bar (a line per finished run when not on a terminal).")
@click.option("--mlflow-uri", default=None,
              help="Track every run in MLflow at this URI (needs the mlflow extra).")
@click.option("--mlflow-experiment", default=None,
              help="MLflow experiment [default: surrogate-sweep-NAME].")
def sweep(**options) -> None:
    """Train every configuration of a grid, write a leaderboard and export the winner."""
    from training.bundle import check_name
    from training.data import load_table
    from training.sweep import Grid

    try:
        check_name(options["name"])
        params = {param: options[flag] for flag, param in _PASSTHROUGH.items()
                  if options[flag] is not None}
        grid = Grid.parse(options["activations"], options["hidden"], params)
        data = load_table(options["data"], split_list(options["inputs"]),
                          split_list(options["outputs"]))
    except failures() as exc:
        raise failed(exc) from exc
    tracker = _open_tracker(options, grid, data)
    try:
        _sweep(data, grid, options, tracker)
    except BaseException:
        if tracker is not None:
            tracker.close("FAILED")
        raise


def _sweep(data, grid, options: dict, tracker) -> None:
    from training.sweep import run_sweep

    report_dir = Path(options["report_dir"] or f"sweep-{options['name']}")
    n_tasks = len(grid.configs()) * options["seeds"] * (options["cv"] or 1)
    with _progress(n_tasks, options["progress"], tracker, grid.params) as progress:
        try:
            board = run_sweep(data, grid, seeds=options["seeds"], cv=options["cv"],
                              n_jobs=options["n_jobs"], scheduler=options["scheduler"],
                              progress=progress, test_fraction=options["test_fraction"],
                              export_onnx=tracker is not None)
        except failures() as exc:
            raise failed(exc, "sweep failed: ") from exc
    leaderboard = board.write(report_dir)
    _print_table(board)
    click.echo(f"wrote {report_dir}/ (leaderboard.csv, leaderboard.json, curves.png, report.md)")
    if tracker is not None:
        tracker.log_leaderboard(board, report_dir)
    if board.interrupted:
        click.echo("interrupted: the leaderboard lists the runs that finished", err=True)
        if tracker is not None:
            tracker.close("KILLED")
        raise click.exceptions.Exit(130)
    if board.winner is None:
        raise CliError("every configuration failed; nothing exported")
    result = _export_winner(data, board, options, leaderboard)
    if tracker is not None:
        tracker.log_winner(result, {**board.grid.params, **_winner_config(board).params()})
        tracker.close()


def _open_tracker(options: dict, grid, data):
    """The MLflow parent run of this sweep, or None without ``--mlflow-uri``."""
    if not options["mlflow_uri"]:
        return None
    from training.tracking import TrackingError, open_tracker

    experiment = options["mlflow_experiment"] or f"surrogate-sweep-{options['name']}"
    params = {"model_name": options["name"], "activations": grid.to_dict()["activations"],
              "hidden": grid.to_dict()["hidden"], "seeds": options["seeds"], "cv": options["cv"],
              "test_fraction": options["test_fraction"], "data": Path(data.source).name,
              "data_sha256": data.sha256, "rows": data.n_rows, **grid.params}
    try:
        return open_tracker(options["mlflow_uri"], experiment, f"sweep {options['name']}",
                            params)
    except TrackingError as exc:
        raise failed(exc) from exc


def _winner_config(board):
    from training.sweep import Config

    winner = board.winner
    return Config(tuple(winner["activations"].split("+")),
                  tuple(int(s) for s in winner["hidden"].split(",")))


def _export_winner(data, board, options: dict, leaderboard: Path):
    from training.pipeline import TrainJob, train_and_export

    winner, config = board.winner, _winner_config(board)
    job = TrainJob(
        name=options["name"], repo=Path(options["repo"]),
        params={**board.grid.params, **config.params()},
        description=f"winner of a sweep of {len(board.rows)} configurations",
        extra_training_info={"sweep": {
            "grid": board.grid.to_dict(), "seeds": options["seeds"], "cv": options["cv"],
            "rank": 1, "configurations": len(board.rows), "leaderboard": str(leaderboard.resolve()),
            "val_rmse_mean": winner["val_rmse_mean"], "val_r2_mean": winner["val_r2_mean"],
            "finished": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }},
    )
    try:
        with fit_notices():
            result = train_and_export(data, job)
    except failures() as exc:
        raise failed(exc, "refitting the winner failed: ") from exc
    for notice in result.notices:
        click.echo(f"notice: {notice}", err=True)
    click.echo(f"winner {winner['activations']} [{winner['hidden']}] exported to {result.bundle}")
    return result


@contextmanager
def _progress(total: int, enabled: bool, tracker, params: dict):
    """Yields the ``progress`` callback of run_sweep: logs each run to MLflow (if tracked) and
    advances a rich bar, or prints a line per run when stdout is not a terminal (logs, CI)."""
    from rich.console import Console

    def track(run: dict) -> None:
        if tracker is not None:
            tracker.log_fit(run, params)

    if not enabled:
        yield track
        return
    if not Console().is_terminal:
        done = count(1)
        yield lambda run: (track(run), click.echo(_run_line(next(done), total, run)))
        return
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        task = bar.add_task("sweep", total=total)
        yield lambda run: (track(run), bar.advance(task))


def _run_line(done: int, total: int, run: dict) -> str:
    outcome = (f"val RMSE {run['val_rmse']:.4g}" if run["status"] == "ok"
               else f"failed: {run['reason']}")
    return (f"[{done}/{total}] {run['activations']} [{run['hidden']}] seed {run['seed']} "
            f"fold {run['fold']}: {outcome}")


def _print_table(board) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep leaderboard ({len(board.runs)}/{board.total_tasks} runs)")
    for column in ("#", "activations", "hidden", "params", "val RMSE", "± std", "val R2",
                   "epochs", "fit s", "us/row", "status"):
        table.add_column(column, justify="left" if column in ("activations", "hidden",
                                                             "status") else "right")
    for row in board.rows:
        ok = row["status"] == "ok"
        table.add_row(
            str(row["rank"]), row["activations"], row["hidden"],
            f"{row['n_params']:.0f}" if ok else "-", f"{row['val_rmse_mean']:.4g}",
            f"{row['val_rmse_std']:.2g}", f"{row['val_r2_mean']:.5f}",
            f"{row['epochs']:.0f}" if ok else "-", f"{row['fit_seconds']:.2f}",
            f"{row['predict_us_per_row']:.2f}", row["status"],
        )
    console = Console()
    console.print(table)
    for row in board.rows:
        if row["reason"]:
            console.print(f"#{row['rank']} {row['activations']} [{row['hidden']}]: {row['reason']}",
                          markup=False)
