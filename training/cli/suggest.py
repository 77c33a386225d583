"""``surrogate suggest``: the next simulations, where an ensemble model is least sure."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import click

from training.cli.common import (
    CliError,
    failed,
    failures,
    model_version_options,
    run_graph,
    write_whole,
)


@click.command()
@click.argument("name")
@click.option("--n", "k", required=True, type=click.IntRange(min=1), help="Rows to suggest.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="CSV to write (default: print the CSV).")
@click.option("--exclude", "exclude", default=None, type=click.Path(dir_okay=False),
              help="A table of runs already done or under way (CSV or Parquet with the "
                   "model's input columns): suggestions keep away from its rows.")
@model_version_options
@click.option("--seed", type=int, default=None, help="Seed of the candidate pool.")
def suggest(name, k, out, exclude, version, repo, seed) -> None:
    """Suggest K simulations for ensemble model NAME: the rows of its training domain where its
    members disagree most (spread over each output's range), spread apart from each other and
    from the rows of --exclude. Columns: the inputs, the predicted outputs, their std."""
    from service.bundle_format import MODEL_FILE, OUTPUT_TENSOR, STD_TENSOR, read_card, version_dir
    from training import suggest as next_runs
    from training.data import load_table
    from training.design import factors_of

    try:
        directory = version_dir(Path(repo), name, version)
        card = read_card(directory)
        factors = factors_of(card)
        inputs = [f.name for f in factors]
        done = None if exclude is None else load_table(exclude, inputs, [],
                                                       for_training=False).X
    except failures() as exc:
        raise failed(exc) from exc
    outputs = [spec["name"] for spec in card["outputs"]]
    names = [t.get("name") for t in (card.get("tensors") or {}).get("outputs", [])]
    if STD_TENSOR not in names:
        source = ((card.get("training") or {}).get("data") or {}).get("source", "its table")
        raise CliError(
            f"model {name!r} is not an ensemble (no std output), so it cannot say where it is "
            f"unsure: train one on the same table ({source}) with `surrogate train ... "
            f"--ensemble 5`, then suggest from it")

    def predict(x):
        return tuple(run_graph(directory / MODEL_FILE, x, [OUTPUT_TENSOR, STD_TENSOR]))

    chosen = next_runs.suggest(factors, predict, k, done, seed)
    text = io.StringIO()
    text.write(",".join([*inputs, *outputs, *(f"{o}_std" for o in outputs)]) + "\n")
    for row in zip(chosen.x, chosen.mean, chosen.std, strict=True):
        text.write(",".join(repr(float(v)) for part in row for v in part) + "\n")
    if out is None:
        sys.stdout.write(text.getvalue())
        return
    try:
        write_whole(Path(out), text.getvalue())
    except failures() as exc:
        raise failed(exc) from exc
    click.echo(f"wrote {k} rows to {out}: normalised spread {chosen.score.max():.3g} at most, "
               f"{chosen.score.min():.3g} at least (std over the output's range in the domain)")
