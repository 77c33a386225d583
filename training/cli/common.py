"""Pieces shared by the training subcommands: list options, TOML config, progress, tables,
notices."""

from __future__ import annotations

import tomllib
import warnings
from contextlib import contextmanager
from pathlib import Path

import click


class CliError(click.ClickException):
    """A one-line error for the user; nothing was written. Exit status 1, click's for a failed
    command (usage errors, :class:`CliUsageError`, exit 2)."""

    exit_code = 1


class CliUsageError(click.UsageError):
    """A flag, or a config file's value, that cannot be used: click's usage error (exit 2)."""


# What a command reports as a one-line failure: the training side's errors, the bundle format's,
# and the file system's. Anything else is a bug and keeps its traceback.
def failures() -> tuple[type[BaseException], ...]:
    from service.bundle_format import BundleFormatError
    from training.errors import TrainingError

    return TrainingError, BundleFormatError, OSError


def failed(exc: BaseException, prefix: str = "") -> CliError:
    """The one-line :class:`CliError` for ``exc``."""
    from training.errors import first_line

    return CliError(prefix + first_line(exc))


def split_list(value) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c']; also accepts a list (from a config file)."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def parse_units(value) -> dict[str, str]:
    """'rw=m,Q=m3/yr' (or a TOML table) -> {'rw': 'm', 'Q': 'm3/yr'}."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    units = {}
    for item in split_list(value):
        name, sep, unit = item.partition("=")
        if not sep or not name.strip():
            raise CliUsageError(f"--units: expected NAME=UNIT, got {item!r}")
        units[name.strip()] = unit.strip()
    return units


def load_config(ctx: click.Context, param: click.Parameter, path: str | None):
    """Eager ``--config`` callback: the file's keys become defaults, so flags still win."""
    if not path:
        return path
    try:
        table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliUsageError(f"cannot read config {path}: {exc}") from exc
    known = {p.name for p in ctx.command.params if p.name != "config"}
    defaults = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            names = ", ".join(sorted(known))
            raise CliUsageError(f"config {path}: unknown key {key!r} (known: {names})")
        defaults[name] = _config_value(value)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path


def _config_value(value):
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return value


def table_options(name_help: str):
    """The options every training command shares: config file, table, columns, name, repo."""
    options = (
        click.option("--config", type=click.Path(dir_okay=False), is_eager=True,
                     expose_value=False, callback=load_config,
                     help="TOML file with the same keys as these flags; flags win."),
        click.option("--data", required=True, type=click.Path(dir_okay=False),
                     help="CSV or Parquet table of simulation runs."),
        click.option("--inputs", required=True, help="Input column names, comma-separated."),
        click.option("--outputs", required=True, help="Output column names, comma-separated."),
        click.option("--name", required=True, help=name_help),
        click.option("--repo", default="models", show_default=True,
                     envvar="SURROGATE_MODEL_REPOSITORY", type=click.Path(file_okay=False),
                     help="Model repository directory."),
    )

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@contextmanager
def epoch_progress(label: str, enabled: bool = True):
    """A live line with the phase (selection, fit, polish), the epoch or finished selection
    tasks, training and validation loss and the estimated time left; yields the estimator
    callback."""
    if not enabled:
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[phase]:<9}"),
        TextColumn("{task.fields[step]:>11}"),
        TextColumn("train {task.fields[train]}"),
        TextColumn("val {task.fields[val]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[left]}"),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(label, phase="", step="", train="-", val="-", left="")

        def on_epoch(epoch, train_loss, val_loss=None, *, phase="fit", seconds_left=None,
                     done=None, total=None):
            fields = {"phase": phase}
            if done is not None:
                fields["step"] = f"run {done}/{total}"
            else:
                fields.update(step=f"epoch {epoch}", train=_loss(train_loss), val=_loss(val_loss))
            if seconds_left is not None:
                fields["left"] = f"~{seconds_left:.0f} s left"
            progress.update(task, **fields)

        yield on_epoch


def _loss(value) -> str:
    return "-" if value is None or value != value else f"{value:.3e}"


def report_result(result, console=None) -> None:
    """After ``surrogate train`` / ``demo``: how the regularization was chosen (one line), the
    metrics table and where its figures come from, notices, where the bundle went."""
    from rich.console import Console

    from training.ensemble import members

    console = console or Console()
    metrics = result.metrics
    line = selection_line(members(result.model)[0], result.inputs)
    if line:
        console.print(line, markup=False, highlight=False)
    titles = {"cv": "cross-validated metrics", "validation": "validation-split metrics",
              "holdout": "held-out test metrics"}
    console.print(metrics_table(f"{titles[metrics['split']]} ({metrics['rows']} rows)",
                                metrics["per_output"]))
    console.print(f"({metrics['source']})", markup=False, highlight=False)
    for notice in result.notices:
        click.echo(f"notice: {notice}", err=True)
    console.print(f"wrote {result.bundle} in {result.fit_seconds:.1f} s")


def selection_line(model, inputs=()) -> str:
    """One line: the chosen L2 penalty, how it was chosen, from what, and the inputs left out."""
    chosen = getattr(model, "selection_", None)
    if not chosen:
        return ""
    if chosen["method"] != "cv":
        return f"alpha {chosen['alpha']:g} (given)"
    race = chosen.get("activation_race") or {}
    activation = (f"{chosen['activation']} (won the race against "
                  f"{', '.join(a for a in race if a != chosen['activation'])}), " if race
                  else "")
    line = (f"chose {activation}alpha {chosen['alpha']:g} ({chosen['path']} path) by "
            f"{chosen['folds']}-fold cross-validation of {chosen['candidates']} candidates on "
            f"{chosen['rows']} rows in {chosen['selection_seconds']:.0f} s")
    scaler = getattr(model, "y_scaler_", None)
    if scaler is not None and scaler.method == "log" and getattr(model, "y_scaling", "") == "auto":
        line += "; fitted the outputs' logarithm (they span decades)"
    blended = chosen.get("distilled_from")
    if blended:
        line += (f"; smaller alphas overfit (noise?): distilled the model from a blend of "
                 f"{len(blended['candidates'])} candidate(s), {blended['models']} models")
    dropped = chosen.get("dropped_inputs")
    if dropped:
        names = list(inputs) or list(getattr(model, "feature_names_in_", ()))
        named = [str(names[i]) if names else f"x{i}" for i in dropped]
        line += (f"; left out {len(named)} input(s) whose effect is below the error: "
                 f"{', '.join(named)}")
    return line


@contextmanager
def fit_notices():
    """Show every :class:`~training.optim.DivergenceWarning` raised inside as a one-line notice
    on stderr, at the end of the block, even if a later step (the export) fails."""
    from training.optim import DivergenceWarning

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DivergenceWarning)
            yield
    finally:
        for warning in caught:
            if issubclass(warning.category, DivergenceWarning):
                click.echo(f"notice: {warning.message}", err=True)
            else:  # not ours: shown as it would have been without the block
                warnings.showwarning(warning.message, warning.category, warning.filename,
                                     warning.lineno)


def metrics_table(title: str, per_output: dict):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for column in ("output", "R2", "RMSE", "RMSE/std", "max |error|"):
        table.add_column(column, justify="left" if column == "output" else "right")
    for name, m in per_output.items():  # Text: an output name is data, never rich markup
        table.add_row(Text(name), f"{m['r2']:.6f}", f"{m['rmse']:.4g}", f"{m['relative_rmse']:.3e}",
                      f"{m['max_abs_error']:.4g}")
    return table


def run_graph(model_path: Path, X, names: list[str]) -> list:
    """The bundle graph at ``model_path`` run in onnxruntime on the CPU, as the service runs it:
    the outputs ``names`` for the rows ``X``, as float64 arrays."""
    import numpy as np
    import onnxruntime as ort

    from service.bundle_format import INPUT_TENSOR

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    feed = {INPUT_TENSOR: np.ascontiguousarray(X, dtype=np.float32)}
    return [out.astype(np.float64) for out in session.run(names, feed)]


def write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: a hidden sibling renamed over it."""
    from training.atomic import replace_whole

    replace_whole(path, text.encode("utf-8"))


def model_version_options(command):
    """``--version`` and ``--repo``: the options of a command on one version of a model."""
    command = click.option(
        "--repo", default="models", show_default=True, envvar="SURROGATE_MODEL_REPOSITORY",
        type=click.Path(file_okay=False), help="Model repository directory.")(command)
    return click.option("--version", "version", type=click.IntRange(min=1), default=None,
                        help="Model version (default: the latest).")(command)
