"""``surrogate evaluate``: a model against a table it has never seen (new simulations).

Runs the bundle's own ``model.onnx`` in onnxruntime, as the service does, so the figures are
those of the served model, and can gate a CI job: ``--fail-above`` exits 1 when any output's
RMSE/std is above the bound.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from training.cli.common import failed, failures, metrics_table, model_version_options, run_graph
from training.jsonable import jsonable


@click.command()
@click.argument("name")
@click.option("--data", "table", required=True, type=click.Path(dir_okay=False),
              help="CSV or Parquet table with the model's input and output columns.")
@model_version_options
@click.option("--fail-above", type=click.FloatRange(min=0), default=None, metavar="RELRMSE",
              help="Exit with status 1 when any output's RMSE/std is above this.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Where to write the predicted-vs-true plot (default: "
                   "evaluate-NAME-vVERSION.png).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON only.")
@click.option("--drop-invalid", is_flag=True, help="Drop rows with empty/NaN/inf/text cells.")
def evaluate(name, table, version, repo, fail_above, plot, as_json, drop_invalid) -> None:
    """Measure model NAME on a table of new simulations: R2, RMSE, RMSE/std and max error per
    output, and how many rows lie outside the training domain."""
    import numpy as np

    from service.bundle_format import MODEL_FILE, OUTPUT_TENSOR, read_card, version_dir
    from training.data import load_table
    from training.report import holdout_metrics, parity_png

    try:
        directory = version_dir(Path(repo), name, version)
        card = read_card(directory)
    except failures() as exc:
        raise failed(exc) from exc
    inputs = [spec["name"] for spec in card["inputs"]]
    outputs = [spec["name"] for spec in card["outputs"]]
    try:
        data = load_table(table, inputs, outputs, drop_invalid=drop_invalid,
                          for_training=False)
    except failures() as exc:
        raise failed(exc) from exc
    (predicted,) = run_graph(directory / MODEL_FILE, data.X, [OUTPUT_TENSOR])
    per_output = holdout_metrics(data.Y, predicted, outputs)
    low = np.array([spec["min"] for spec in card["inputs"]])
    high = np.array([spec["max"] for spec in card["inputs"]])
    outside = (data.X < low) | (data.X > high)
    result = {
        "model": name, "version": int(card["version"]), "data": str(table),
        "rows": data.n_rows, "dropped_invalid": data.dropped_rows,
        "out_of_domain_rows": int(outside.any(axis=1).sum()),
        "out_of_domain_by_input": {n: int(c) for n, c in zip(inputs, outside.sum(axis=0),
                                                              strict=True) if c},
        "per_output": per_output,
        "fail_above": fail_above,
    }
    failing = [n for n, m in per_output.items()
               if fail_above is not None and not m["relative_rmse"] <= fail_above]
    result["failed"] = failing
    plot_path = Path(plot or f"evaluate-{name}-v{card['version']}.png")
    title = f"{name} v{card['version']} on {Path(table).name}"
    plot_path.write_bytes(parity_png(data.Y, predicted, outputs, title))
    result["plot"] = str(plot_path)
    if as_json:
        click.echo(json.dumps(jsonable(result), indent=1))
    else:
        _print(result, card)
    if failing:
        if not as_json:
            bound = f"{fail_above:g}"
            click.echo(f"error: RMSE/std above {bound} for {', '.join(failing)}", err=True)
        sys.exit(1)


def _print(result: dict, card: dict) -> None:
    from rich.console import Console

    console = Console()
    console.print(metrics_table(
        f"{result['model']} v{result['version']} on {result['rows']} new rows",
        result["per_output"]))
    line = f"{result['out_of_domain_rows']} of {result['rows']} rows outside the training domain"
    if result["out_of_domain_by_input"]:
        line += " (" + ", ".join(f"{n}: {c}" for n, c in
                                 result["out_of_domain_by_input"].items()) + ")"
    console.print(line, markup=False, highlight=False)
    reported = card.get("metrics", {}).get("per_output", {})
    if reported:
        console.print("card's estimate, RMSE/std: " + ", ".join(
            f"{n} {m['relative_rmse']:.3e}" for n, m in reported.items()), markup=False,
            highlight=False)
    console.print(f"wrote {result['plot']}", markup=False, highlight=False)
