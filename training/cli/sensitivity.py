"""``surrogate sensitivity``: which inputs matter, for each output of a model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from training.cli.common import CliUsageError, failed, failures, model_version_options, run_graph


@click.command()
@click.argument("name")
@click.option("--n", "n", type=int, default=None,
              help="Base samples, a power of two (default 8192; the model runs N (inputs + 2) "
                   "times).")
@model_version_options
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Where to write the bar chart (default: sensitivity-NAME-vVERSION.png).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the indices as JSON only.")
def sensitivity(name, n, version, repo, plot, seed, as_json) -> None:
    """Sobol' indices of model NAME over its training box: first order (S1) and total (ST) per
    output and input, with 95% bootstrap half-widths, and the bound on ST from the exact
    Jacobian (DGSM)."""
    from service.bundle_format import (
        JACOBIAN_FILE,
        MODEL_FILE,
        OUTPUT_TENSOR,
        read_card,
        version_dir,
    )
    from training.design import factors_of
    from training.errors import ParameterError
    from training.sensitivity import DEFAULT_N, indices

    try:
        directory = version_dir(Path(repo), name, version)
        card = read_card(directory)
        factors = factors_of(card)
    except failures() as exc:
        raise failed(exc) from exc
    outputs = [spec["name"] for spec in card["outputs"]]

    def predict(x):
        return run_graph(directory / MODEL_FILE, x, [OUTPUT_TENSOR])[0]

    jacobian = None
    if (directory / JACOBIAN_FILE).is_file():
        def jacobian(x):
            return run_graph(directory / JACOBIAN_FILE, x, ["jacobian"])[0]

    try:
        table = indices(factors, outputs, predict, jacobian, DEFAULT_N if n is None else n, seed)
    except ParameterError as exc:
        raise CliUsageError(f"--n: {exc}") from exc
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    plot = Path(plot or f"sensitivity-{name}-v{directory.name}.png")
    _print(name, table)
    try:
        plot.write_bytes(_chart(name, table))
    except OSError as exc:
        raise failed(exc) from exc
    click.echo(f"bar chart: {plot}")


def _print(name: str, table: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for output, figures in table.items():
        grid = Table(title=f"{name}: {output}", title_justify="left")
        for column in ("input", "S1", "ST", "DGSM bound on ST"):
            grid.add_column(column, justify="left" if column == "input" else "right")
        for item in sorted(figures["ST"], key=figures["ST"].get, reverse=True):
            dgsm = figures.get("DGSM", {}).get(item)
            grid.add_row(item, f"{figures['S1'][item]:.3f} ± {figures['S1_conf'][item]:.3f}",
                         f"{figures['ST'][item]:.3f} ± {figures['ST_conf'][item]:.3f}",
                         "-" if dgsm is None else f"{dgsm:.3g}")
        console.print(grid)


def _chart(name: str, table: dict) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(table), figsize=(4.5 * len(table), 3.8), squeeze=False)
    for ax, (output, figures) in zip(axes[0], table.items(), strict=True):
        names = list(figures["S1"])
        at = np.arange(len(names))
        for offset, key in ((-0.2, "S1"), (0.2, "ST")):
            ax.bar(at + offset, [figures[key][i] for i in names], 0.4, label=key,
                   yerr=[figures[f"{key}_conf"][i] for i in names], capsize=3)
        ax.set(title=f"{name}: {output}", ylim=(0, 1.05), xticks=at, xticklabels=names)
        ax.tick_params(axis="x", labelrotation=45 if len(names) > 6 else 0)
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
