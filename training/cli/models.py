"""``surrogate models`` and ``surrogate show``: what a model repository holds, read from disk.

Both read bundles through :mod:`service.bundle_format` (the card reader the service uses) and
check what can be checked without loading a model: the card parses and passes the format's
checks, ``model.onnx`` is there and matches the card's sha256. Whether the service can serve a
bundle (ONNX Runtime loads it) is the service's to say: ``GET /v2/repository/index``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click

from service import bundle_format as fmt
from training.cli.common import CliError, failed, failures, metrics_table
from training.errors import first_line

REPO_OPTION = click.option(
    "--repo", default="models", show_default=True, envvar="SURROGATE_MODEL_REPOSITORY",
    type=click.Path(file_okay=False), help="Model repository directory.")


def bundle_state(directory: Path) -> tuple[dict | None, str]:
    """The card of the bundle in ``directory`` (None if unreadable) and ``"ok"`` or why not."""
    try:
        card = fmt.check_card(fmt.read_card(directory))
    except failures() as exc:
        return None, first_line(exc)
    model = directory / fmt.MODEL_FILE
    if not model.is_file():
        return card, f"{fmt.MODEL_FILE} is missing"
    expected = (card.get("onnx") or {}).get("sha256")
    if expected and hashlib.sha256(model.read_bytes()).hexdigest() != expected:
        return card, f"{fmt.MODEL_FILE} does not match the card's sha256"
    return card, "ok"


def _held_out(card: dict) -> str:
    """Each output's held-out RMSE/std, and where it was measured."""
    metrics = card.get("metrics") or {}
    per_output = metrics.get("per_output") or {}
    if not per_output:
        return "-"
    figures = ", ".join(f"{name} {m['relative_rmse']:.2e}" for name, m in per_output.items()
                        if isinstance(m, dict) and m.get("relative_rmse") is not None)
    split = metrics.get("split")
    return f"{figures} ({split})" if split else figures


@click.command()
@REPO_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def models(repo, as_json) -> None:
    """List the models in a repository: versions, whether the latest bundle is intact, inputs
    and outputs with units, and the held-out RMSE/std of each output."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    root = Path(repo)
    if not root.is_dir():
        raise CliError(f"model repository {str(root)!r} does not exist")
    rows = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if not fmt.is_valid_name(model_dir.name):
            continue
        found = fmt.versions(model_dir)
        card, state = bundle_state(model_dir / str(found[-1])) if found else (None, "no versions")
        rows.append({
            "name": model_dir.name, "versions": found, "state": state,
            "inputs": ", ".join(fmt.names(card, "inputs")) if card else "",
            "outputs": ", ".join(fmt.names(card, "outputs")) if card else "",
            "held_out_relative_rmse": _held_out(card) if card else "",
        })
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no models in {root} (train one: surrogate train, or surrogate demo)")
        return
    table = Table(title=f"models in {root}")
    for column in ("name", "versions", "latest bundle", "inputs", "outputs",
                   "held-out RMSE/std"):
        table.add_column(column)
    for row in rows:  # Text: names and units are data, never rich markup
        table.add_row(*map(Text, (row["name"], ", ".join(map(str, row["versions"])) or "-",
                                  row["state"], row["inputs"], row["outputs"],
                                  row["held_out_relative_rmse"])))
    Console(soft_wrap=False).print(table)


@click.command()
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), default=None,
              help="Model version (default: the latest).")
@REPO_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the model card (model.json) as is.")
def show(name, version, repo, as_json) -> None:
    """Show model NAME's card readably: inputs with units and training range, outputs, layers,
    scaling, how it was trained and chosen, and its held-out metrics."""
    from rich.console import Console

    try:
        directory = fmt.version_dir(Path(repo), name, version)
    except failures() as exc:
        raise failed(exc) from exc
    card, state = bundle_state(directory)
    if card is None:
        raise CliError(f"{directory}: {state}")
    if as_json:
        click.echo(json.dumps(card, indent=1))
        return
    console = Console(soft_wrap=False, highlight=False)
    say = lambda text="": console.print(text, markup=False)  # noqa: E731  card text is data
    say(f"{card['name']} version {card.get('version', directory.name)}  ({directory})")
    if card.get("description"):
        say(card["description"])
    say(f"bundle: {state}; created {card.get('created', '?')}")
    console.print(_inputs_table(card))
    layers = card.get("layers") or []
    if layers:
        say("layers: " + " -> ".join(
            f"{layer['units']} {layer['activation']}" for layer in layers))
    scaling = card.get("scaling") or {}
    if scaling:
        say("scaling: inputs " + scaling.get("inputs", {}).get("method", "?")
            + ", outputs " + scaling.get("outputs", {}).get("method", "?"))
    ensemble = card.get("ensemble")
    if ensemble:
        say(f"ensemble: {ensemble.get('members')} members (outputs std)")
    for line in _training_lines(card.get("training") or {}):
        say(line)
    metrics = card.get("metrics") or {}
    if metrics.get("per_output"):
        title = f"held-out metrics ({metrics.get('split', '?')}, {metrics.get('rows', '?')} rows)"
        console.print(metrics_table(title, metrics["per_output"]))
        if metrics.get("source"):
            say(metrics["source"])
    for line in _sensitivity_lines(card.get("sensitivity")):
        say(line)


def _sensitivity_lines(section) -> list[str]:
    """One line per output: the inputs by total Sobol' index, largest first."""
    indices = (section or {}).get("indices") if isinstance(section, dict) else None
    if not isinstance(indices, dict):
        return []
    lines = []
    for output, figures in indices.items():
        total = (figures or {}).get("ST") if isinstance(figures, dict) else None
        if not isinstance(total, dict) or not total:
            continue
        ranked = sorted(total.items(), key=lambda item: -float(item[1]))
        lines.append(f"inputs that matter for {output} (total Sobol' index): "
                     + ", ".join(f"{name} {float(value):.2f}" for name, value in ranked))
    return lines


def _inputs_table(card: dict):
    from rich.table import Table
    from rich.text import Text

    table = Table(title="inputs and outputs")
    for column in ("", "name", "unit", "training range"):
        table.add_column(column)
    for spec in card.get("inputs", []):
        span = f"{spec['min']:.6g} .. {spec['max']:.6g}" if "min" in spec and "max" in spec else ""
        table.add_row("input", Text(spec["name"]), Text(spec.get("unit", "")), span)
    for spec in card.get("outputs", []):
        table.add_row("output", Text(spec["name"]), Text(spec.get("unit", "")), "")
    return table


def _training_lines(training: dict) -> list[str]:
    lines = []
    rows = training.get("rows") or {}
    if training.get("estimator"):
        fit = f"{training['estimator']} on {rows.get('fit', '?')} of {rows.get('total', '?')} rows"
        if training.get("fit_seconds") is not None:
            fit += f" in {training['fit_seconds']:.1f} s"
        lines.append("trained: " + fit)
    chosen = training.get("selection") or {}
    if chosen.get("method") == "cv":
        candidates = chosen.get("candidates")
        count = len(candidates) if isinstance(candidates, list) else candidates
        lines.append(f"alpha {chosen.get('alpha'):g}, chosen by {chosen.get('folds')}-fold "
                     f"cross-validation over {count} candidates ({chosen.get('path')} path)")
    elif training.get("alpha") is not None:
        lines.append(f"alpha {training['alpha']:g} (given)")
    return lines
