"""``surrogate predict``: send a table to a running service in batches, write predictions as CSV.

Uses only the serving install's dependencies (numpy, orjson, the standard library), and Triton's
binary tensor extension so that large tables cost no JSON number formatting.
"""

from __future__ import annotations

import csv
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click

from training.cli.common import CliError


@click.command()
@click.argument("table", type=click.Path(dir_okay=False, exists=True))
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, envvar="SURROGATE_URL",
              help="Base URL of the service.")
@click.option("--model", "model_name", required=True, help="Model name.")
@click.option("--version", "model_version", type=click.IntRange(min=1), default=None,
              help="Model version (default: latest).")
@click.option("--batch-size", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output CSV (default: standard output).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per request.")
def predict(table, url, model_name, model_version, batch_size, out, timeout) -> None:
    """Predict every row of TABLE (CSV with the model's input columns) with a served model."""
    import numpy as np

    base = url.rstrip("/")
    card = _get_json(f"{base}/v1/models/{model_name}", timeout)
    inputs = [spec["name"] for spec in card["inputs"]]
    outputs = [spec["name"] for spec in card["outputs"]]
    header, rows = _read_table(Path(table))
    missing = [name for name in inputs if name not in header]
    if missing:
        raise CliError(f"{table}: no column {', '.join(missing)} (the model needs "
                       f"{', '.join(inputs)})")
    X = _matrix(rows, [header.index(name) for name in inputs], table)
    path = f"/v2/models/{model_name}" + (f"/versions/{model_version}" if model_version else "")
    predictions = [
        _infer_binary(f"{base}{path}/infer", X[start:start + batch_size], len(outputs), timeout)
        for start in range(0, X.shape[0], batch_size)
    ]
    Y = np.vstack(predictions) if predictions else np.empty((0, len(outputs)), np.float32)
    names = [f"{n}_pred" if n in header else n for n in outputs]
    _write_csv(out, header + names, rows, Y)


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        return header, [row for row in reader if row]


def _matrix(rows, columns: list[int], table: str):
    import numpy as np

    X = np.empty((len(rows), len(columns)), dtype=np.float32)
    for i, row in enumerate(rows):
        try:
            X[i] = [float(row[c]) for c in columns]
        except (ValueError, IndexError) as exc:
            raise CliError(f"{table}: row {i + 1} has a missing or non-numeric input") from exc
    return X


def _infer_binary(url: str, X, n_outputs: int, timeout: float):
    import numpy as np
    import orjson

    from service.bundle_format import INPUT_TENSOR, OUTPUT_TENSOR

    header = orjson.dumps({
        "inputs": [{"name": INPUT_TENSOR, "shape": list(X.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": X.nbytes}}],
        "outputs": [{"name": OUTPUT_TENSOR, "parameters": {"binary_data": True}}],
    })
    request = urllib.request.Request(
        url, data=header + np.ascontiguousarray(X, dtype="<f4").tobytes(), method="POST",
        headers={"Inference-Header-Content-Length": str(len(header)),
                 "Content-Type": "application/octet-stream"})
    with _open(request, timeout) as response:
        body = response.read()
        json_length = int(response.headers.get("Inference-Header-Content-Length", len(body)))
    meta = orjson.loads(body[:json_length])["outputs"][0]
    if json_length == len(body):  # the server answered in JSON
        return np.asarray(meta["data"], dtype=np.float32).reshape(meta["shape"])
    return np.frombuffer(body[json_length:], dtype="<f4").reshape(meta["shape"])


def _get_json(url: str, timeout: float) -> dict:
    import orjson

    with _open(urllib.request.Request(url), timeout) as response:
        return orjson.loads(response.read())


def _open(request: urllib.request.Request, timeout: float):
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise CliError(f"{request.full_url}: HTTP {exc.code}: {_error_text(exc)}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach {request.full_url}: {reason}") from exc


def _error_text(exc: urllib.error.HTTPError) -> str:
    import orjson

    body = exc.read()
    try:
        return str(orjson.loads(body).get("error", body[:200]))
    except (orjson.JSONDecodeError, AttributeError):
        return body[:200].decode("utf-8", "replace")


def _write_csv(out: str | None, header: list[str], rows, Y) -> None:
    handle = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    try:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row, prediction in zip(rows, Y, strict=True):
            writer.writerow(row + [f"{v:.7g}" for v in prediction])
    finally:
        if out:
            handle.close()
