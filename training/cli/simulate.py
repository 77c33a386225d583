"""``surrogate simulate``: one of the analytic test functions (borehole, thermal_actuator, ...)
as a simulator command for ``surrogate loop``, so the loop can be tried without a simulator:
``surrogate loop --simulator "surrogate simulate --function borehole" ...``."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import click

from training.cli.common import CliError


def read_inputs(path: str | os.PathLike, names: list[str]):
    """The rows of the CSV at ``path`` (as read) and their ``names`` columns as an array."""
    import numpy as np

    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    missing = [name for name in names if rows and name not in rows[0]]
    if missing:
        raise CliError(f"{path}: no column {', '.join(missing)}")
    try:
        X = np.array([[float(row[name]) for name in names] for row in rows], dtype=float)
    except ValueError as exc:
        raise CliError(f"{path}: {exc}") from None
    return rows, X.reshape(len(rows), len(names))


def write_outputs(path: str | os.PathLike, names: list[str], rows: list[dict], outputs: list[str],
                  Y, keep=None) -> None:  # fmt: skip
    """The input rows as read, each with its outputs; ``keep[i]`` False leaves row i out."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(names + outputs)
        for index, (row, y) in enumerate(zip(rows, Y, strict=True)):
            if keep is None or keep[index]:
                writer.writerow([row[name] for name in names] + [repr(float(v)) for v in y])


@click.command()
@click.option("--function", "function_name", default="borehole", show_default=True,
              help="The analytic function: borehole, thermal_actuator, surface, ishigami, ...")
@click.option("--output", type=click.Path(dir_okay=False), envvar="SURROGATE_OUTPUT",
              required=True, help="CSV to write (default: $SURROGATE_OUTPUT).")
@click.argument("input_path", metavar="INPUT", required=False, envvar="SURROGATE_INPUT",
                type=click.Path(dir_okay=False, exists=True))
def simulate(function_name, output, input_path) -> None:
    """Compute an analytic function on the input rows of INPUT (default: $SURROGATE_INPUT) and
    write the rows with its output columns, as surrogate loop asks of a simulator."""
    import numpy as np

    from training.functions import FUNCTIONS

    if function_name not in FUNCTIONS:
        raise CliError(f"unknown function {function_name!r}; functions: "
                       f"{', '.join(sorted(FUNCTIONS))}")
    if input_path is None:
        raise CliError("no input: give INPUT or set SURROGATE_INPUT")
    fn = FUNCTIONS[function_name]
    names, outputs = [spec[0] for spec in fn.inputs], [spec[0] for spec in fn.outputs]
    rows, X = read_inputs(input_path, names)
    Y = np.asarray(fn(X), dtype=float).reshape(len(X), -1)
    write_outputs(Path(output), names, rows, outputs, Y)
