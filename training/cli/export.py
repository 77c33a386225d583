"""``surrogate export``: a bundle's network as an expression, layered formulas, a Python function
or a C function."""

from __future__ import annotations

from pathlib import Path

import click

from training.cli.common import CliError, failed, failures

FORMATS = ("expression", "layered", "python", "c")


@click.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="expression: one closed-form line per output (small networks); layered: one "
                   "line per unit, layer by layer, then the outputs (any size); python: a "
                   "function needing only math; c: a C99 function needing only <math.h>.")
@click.option("--version", "model_version", type=int, default=None,
              help="Model version (default: latest).")
@click.option("--repo", default="models", show_default=True, envvar="SURROGATE_MODEL_REPOSITORY",
              type=click.Path(file_okay=False), help="Model repository directory.")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: standard output).")
@click.option("--max-terms", type=click.IntRange(min=1), default=None,
              help="Largest expression accepted, in numbers and variables (default: 10000).")
def export(name, fmt, model_version, repo, output, max_terms) -> None:
    """Write model NAME, scaling included, as a formula or dependency-free code."""
    from training.formula import MAX_TERMS, export_formula

    try:
        text = export_formula(repo, name, fmt, version=model_version,
                              max_terms=max_terms or MAX_TERMS)
    except failures() as exc:
        raise failed(exc) from None
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
