"""``surrogate export``: a bundle's network as an expression, layered formulas, a Python function,
a C function, or an FMI unit (FMU) for system-simulation tools."""

from __future__ import annotations

from pathlib import Path

import click

from training.cli.common import CliError, CliUsageError, failed, failures

FORMATS = ("expression", "layered", "python", "c", "fmu")


@click.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="expression: one closed-form line per output (small networks); layered: one "
                   "line per unit, layer by layer, then the outputs (any size); python: a "
                   "function needing only math; c: a C99 function needing only <math.h>; fmu: a "
                   "Functional Mock-up Unit (model exchange and co-simulation) compiled for "
                   "this platform.")
@click.option("--version", "model_version", type=int, default=None,
              help="Model version (default: latest).")
@click.option("--repo", default="models", show_default=True, envvar="SURROGATE_MODEL_REPOSITORY",
              type=click.Path(file_okay=False), help="Model repository directory.")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: standard output; for fmu, NAME.fmu).")
@click.option("--max-terms", type=click.IntRange(min=1), default=None,
              help="Largest expression accepted, in numbers and variables (default: 10000).")
@click.option("--fmi", type=click.Choice(["2", "3"]), default=None,
              help="fmu: the FMI version (default: 2, which most tools import).")
@click.option("--sources-only", is_flag=True,
              help="fmu: C sources and their build description, no binary (for a target "
                   "built elsewhere: Windows, macOS).")
def export(name, fmt, model_version, repo, output, max_terms, fmi, sources_only) -> None:
    """Write model NAME, scaling included, as a formula, dependency-free code or an FMU."""
    if fmt == "fmu":
        _export_fmu(name, model_version, repo, output, int(fmi or 2), sources_only)
        return
    if fmi or sources_only:
        raise CliUsageError("--fmi and --sources-only apply to --format fmu only")
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


def _export_fmu(name, version, repo, output, fmi: int, sources_only: bool) -> None:
    from training.fmu import export_fmu

    target = Path(output or f"{name}.fmu")
    try:
        written = export_fmu(repo, name, target, version=version, fmi=fmi,
                             sources_only=sources_only)
    except failures() as exc:
        raise failed(exc) from None
    what = "C sources only" if sources_only else "binary for this platform"
    click.echo(f"wrote {written} (FMI {fmi}.0, model exchange and co-simulation, {what})")
