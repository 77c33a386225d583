"""``surrogate sweep``: fit a grid of activations x architectures, rank them, export the winner."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from training.cli.common import CliError, split_list, table_options

_PASSTHROUGH = {"epochs": "max_iter", "solver": "solver", "lr": "learning_rate_init"}


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
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True, help="Rows held out (without --cv).")
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
def sweep(**options) -> None:
    """Train every configuration of a grid, write a leaderboard and export the winner."""
    from training.bundle import check_name
    from training.data import DataError, load_table
    from training.sweep import Grid, run_sweep

    try:
        check_name(options["name"])
        params = {param: options[flag] for flag, param in _PASSTHROUGH.items()
                  if options[flag] is not None}
        grid = Grid.parse(options["activations"], options["hidden"], params)
        data = load_table(options["data"], split_list(options["inputs"]),
                          split_list(options["outputs"]))
    except (DataError, ValueError) as exc:
        raise CliError(str(exc).strip().splitlines()[0]) from exc
    report_dir = Path(options["report_dir"] or f"sweep-{options['name']}")
    n_tasks = len(grid.configs()) * options["seeds"] * (options["cv"] or 1)
    with _progress_bar(n_tasks, options["progress"]) as progress:
        try:
            board = run_sweep(data, grid, seeds=options["seeds"], cv=options["cv"],
                              n_jobs=options["n_jobs"], scheduler=options["scheduler"],
                              progress=progress, test_fraction=options["test_fraction"])
        except (OSError, ValueError) as exc:
            raise CliError(f"sweep failed: {exc}") from exc
    leaderboard = board.write(report_dir)
    _print_table(board)
    click.echo(f"wrote {report_dir}/ (leaderboard.csv, leaderboard.json, curves.png, report.md)")
    if board.interrupted:
        click.echo("interrupted: the leaderboard lists the runs that finished", err=True)
        raise click.exceptions.Exit(130)
    if board.winner is None:
        raise CliError("every configuration failed; nothing exported")
    _export_winner(data, board, options, leaderboard)


def _export_winner(data, board, options: dict, leaderboard: Path) -> None:
    from training.pipeline import TrainJob, train_and_export
    from training.sweep import Config

    winner = board.winner
    config = Config(tuple(winner["activations"].split("+")),
                    tuple(int(s) for s in winner["hidden"].split(",")))
    job = TrainJob(
        name=options["name"], repo=Path(options["repo"]),
        params={**board.grid.params, **config.params()},
        test_fraction=options["test_fraction"],
        description=f"winner of a sweep of {len(board.rows)} configurations",
        extra_training_info={"sweep": {
            "grid": board.grid.to_dict(), "seeds": options["seeds"], "cv": options["cv"],
            "rank": 1, "configurations": len(board.rows), "leaderboard": str(leaderboard.resolve()),
            "val_rmse_mean": winner["val_rmse_mean"], "val_r2_mean": winner["val_r2_mean"],
            "finished": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }},
    )
    try:
        result = train_and_export(data, job)
    except ValueError as exc:
        raise CliError(f"refitting the winner failed: {exc}") from exc
    click.echo(f"winner {winner['activations']} [{winner['hidden']}] exported to {result.bundle}")


@contextmanager
def _progress_bar(total: int, enabled: bool):
    """A rich bar counting finished runs; yields the ``progress`` callback of run_sweep."""
    if not enabled:
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=False) as progress:
        task = progress.add_task("sweep", total=total)
        yield lambda run: progress.advance(task)


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
