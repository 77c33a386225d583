"""``surrogate design``: the simulations to run first, or the ones to add to a table."""

from __future__ import annotations

import io
from pathlib import Path

import click

from training.cli.common import failed, failures, write_whole


@click.command()
@click.option("--bounds", "bounds_path", required=True, type=click.Path(dir_okay=False),
              help="TOML file, one table per input: min, max, optional unit, scale = \"log\", "
                   "integer = true.")
@click.option("--n", "n", required=True, type=click.IntRange(min=1), help="Rows to design.")
@click.option("--method", type=click.Choice(["lhs", "sobol", "halton"]), default="lhs",
              show_default=True,
              help="Optimised Latin hypercube, scrambled Sobol' (N a power of two), or "
                   "scrambled Halton.")
@click.option("--seed", type=int, default=None, help="Random seed, for the same design again.")
@click.option("--extend", "extend_path", type=click.Path(dir_okay=False), default=None,
              help="An existing table (CSV or Parquet with the inputs' columns): design N rows "
                   "that fill its gaps (from a scrambled Sobol pool).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The CSV to write: a header of input names, then the N rows.")
def design(bounds_path, n, method, seed, extend_path, out) -> None:
    """Design N simulations spread evenly over the inputs' ranges (scipy.stats.qmc), and report
    how evenly: the centered L2 discrepancy and the smallest distance between two rows, both in
    the unit cube the ranges map to."""
    import numpy as np

    from training import design as doe
    from training.data import load_table

    try:
        factors = doe.read_bounds(bounds_path)
        names = [f.name for f in factors]
        if extend_path is None:
            rows, table = doe.design(factors, n, method, seed), None
        else:
            existing = load_table(extend_path, names, [], for_training=False).X
            rows = doe.extend(factors, existing, n, seed)
            table = np.vstack([existing, rows])
        _write_csv(Path(out), names, factors, rows)
    except failures() as exc:
        raise failed(exc) from exc
    how = f"filling the gaps of {extend_path}" if extend_path else method
    how += "" if seed is None else f", seed {seed}"
    click.echo(f"wrote {len(rows)} rows of {len(factors)} inputs to {out} ({how})")
    for factor in factors:
        scale = ", log" if factor.log else ""
        kind = ", integer" if factor.integer else ""
        unit = f" {factor.unit}" if factor.unit else ""
        click.echo(f"  {factor.name}: {factor.low:g} to {factor.high:g}{unit}{scale}{kind}")
    click.echo(_quality_line("design", doe.quality(factors, rows)))
    if table is not None:
        click.echo(_quality_line(f"with the {len(table) - len(rows)} rows of {extend_path}",
                                 doe.quality(factors, table)))


def _quality_line(what: str, figures: dict[str, float]) -> str:
    return (f"{what}: centered L2 discrepancy {figures['discrepancy']:.4g}, smallest distance "
            f"{figures['min_distance']:.4g} (unit cube)")


def _write_csv(path: Path, names, factors, rows) -> None:
    buffer = io.StringIO()
    buffer.write(",".join(names) + "\n")
    for row in rows:
        cells = [str(int(v)) if f.integer else repr(float(v))
                 for f, v in zip(factors, row, strict=True)]
        buffer.write(",".join(cells) + "\n")
    write_whole(path, buffer.getvalue())
