"""``surrogate simulate``: one of the analytic test functions (borehole, thermal_actuator, ...)
as a simulator command for ``surrogate loop``, so the loop can be tried without a simulator:
``surrogate loop --simulator "surrogate simulate --function borehole" ...``."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import click

from training.cli.common import CliError, failed, failures


def write_outputs(path: str | os.PathLike, names: list[str], outputs: list[str], X, Y,
                  keep=None) -> None:  # fmt: skip
    """The input rows with their outputs, every number as ``repr`` writes it (read back exactly);
    ``keep[i]`` False leaves row i out."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(names + outputs)
        for index, (x, y) in enumerate(zip(X, Y, strict=True)):
            if keep is None or keep[index]:
                writer.writerow([repr(float(v)) for v in (*x, *y)])


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

    from training.data import load_table
    from training.functions import FUNCTIONS

    if function_name not in FUNCTIONS:
        raise CliError(f"unknown function {function_name!r}; functions: "
                       f"{', '.join(sorted(FUNCTIONS))}")
    if input_path is None:
        raise CliError("no input: give INPUT or set SURROGATE_INPUT")
    fn = FUNCTIONS[function_name]
    names, outputs = [spec[0] for spec in fn.inputs], [spec[0] for spec in fn.outputs]
    try:
        X = load_table(input_path, names, [], for_training=False).X
    except failures() as exc:
        raise failed(exc) from None
    Y = np.asarray(fn(X), dtype=float).reshape(len(X), -1)
    write_outputs(Path(output), names, outputs, X, Y)
