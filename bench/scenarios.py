"""What the bench sends: one request body per (system, scenario), and the list of runs.

Every system gets the same rows; JSON numbers carry 7 significant digits (what a float32 holds),
so JSON bodies are about equally long whatever the system's own format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from bench.load import Load
from bench.models import MODEL, Models

OURS, HELLO, BARE, LEAN, NAIVE, MLSERVER = "ours", "hello", "bare", "lean", "naive", "mlserver"
SYSTEMS = (OURS, HELLO, BARE, LEAN, NAIVE, MLSERVER)
LABELS = {OURS: "surrogate-serving", HELLO: "Flask hello world (ceiling)",
          BARE: "bare WSGI + ORT (no checks)", LEAN: "minimal Flask + ORT + orjson",
          NAIVE: "naive Flask + sklearn", MLSERVER: "MLServer sklearn"}
THROUGHPUT_CONNECTIONS = 16
LATENCY_CONNECTIONS = 1
BINARY_ROWS = 100_000


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    rows: int


SCENARIOS = {s.key: s for s in (
    Scenario("single_v2", "single-row V2 JSON", 1),
    Scenario("single_v1", "single-row V1 JSON", 1),
    Scenario("rows1000_v2", "1000-row V2 JSON", 1000),
    Scenario("rows1000_v1", "1000-row V1 JSON", 1000),
    Scenario("rows1000_v1col", "1000-row V1 columnar JSON", 1000),
    Scenario("binary100k", "100,000-row V2 binary", BINARY_ROWS),
)}


@dataclass(frozen=True)
class Run:
    """One measurement: ``system`` under ``scenario`` at ``connections``."""

    system: str
    scenario: str
    connections: int


def label(system: str) -> str:
    """A system's name in tables; variants of our service (``ours-...``) keep their own."""
    return LABELS.get(system, system)


def is_ours(system: str) -> bool:
    """Our service or a variant of it (``ours-<name>``: other worker class, settings...)."""
    return system == OURS or system.startswith(OURS + "-")


def plan(systems: tuple[str, ...], scenarios: tuple[str, ...] = tuple(SCENARIOS),
         connections: int = THROUGHPUT_CONNECTIONS) -> list[Run]:
    """Every run of one round, peers beside ours per scenario so they share the conditions.

    Variants of our service run right after ours in each of its runs.
    """
    t, lat = connections, LATENCY_CONNECTIONS
    wanted = [
        (HELLO, "single_v2", t), (OURS, "single_v2", t), (BARE, "single_v2", t),
        (LEAN, "single_v2", t), (NAIVE, "single_v2", t), (MLSERVER, "single_v2", t),
        (OURS, "single_v1", t),
        (HELLO, "single_v2", lat), (OURS, "single_v2", lat), (BARE, "single_v2", lat),
        (LEAN, "single_v2", lat), (NAIVE, "single_v2", lat), (MLSERVER, "single_v2", lat),
        (OURS, "single_v1", lat),
        (OURS, "rows1000_v2", t), (BARE, "rows1000_v2", t), (LEAN, "rows1000_v2", t),
        (NAIVE, "rows1000_v2", t), (MLSERVER, "rows1000_v2", t),
        (OURS, "rows1000_v1", t), (OURS, "rows1000_v1col", t),
        (OURS, "binary100k", 1), (OURS, "binary100k", 2),
    ]
    variants = [s for s in systems if is_ours(s) and s != OURS]
    runs = []
    for system, scenario, conns in wanted:
        if scenario not in scenarios:
            continue
        for chosen in ([system, *variants] if system == OURS else [system]):
            if chosen in systems:
                runs.append(Run(chosen, scenario, conns))
    return runs


def load_for(system: str, scenario: str, url: str, models: Models) -> Load:
    """The request ``system`` is sent in ``scenario`` (peers get their own API's form)."""
    n = SCENARIOS[scenario].rows
    if scenario == "binary100k":
        return binary_load(f"{url}/v2/models/{MODEL}/infer", models.rows(n))
    rows = _rounded(models.rows(n))
    if is_ours(system) or system in (BARE, LEAN):
        return _ours_json(scenario, url, rows, models)
    if system == HELLO:
        return Load(f"{url}/", _v2_json(rows, "FP32"))
    if system == NAIVE:
        return Load(f"{url}/predict", orjson.dumps({"instances": rows.tolist()}))
    if system == MLSERVER:
        return Load(f"{url}/v2/models/{MODEL}/infer", _v2_json(rows, "FP64", name="predict"))
    raise ValueError(f"unknown system {system!r}")


def _ours_json(scenario: str, url: str, rows: np.ndarray, models: Models) -> Load:
    if scenario.endswith("_v2"):
        # Named, as the peers answer predictions only: a V2 request without "outputs" gets
        # every output, the Jacobian too.
        body = _v2_json(rows, "FP32", outputs=[{"name": "outputs"}])
        return Load(f"{url}/v2/models/{MODEL}/infer", body)
    names = input_names(models)
    if scenario.endswith("_v1col"):  # {"inputs": {name: [values...]}}, TF Serving's columnar form
        columns = dict(zip(names, rows.T.tolist(), strict=True))
        return Load(f"{url}/v1/models/{MODEL}:predict", orjson.dumps({"inputs": columns}))
    instances = [dict(zip(names, row, strict=True)) for row in rows.tolist()]
    return Load(f"{url}/v1/models/{MODEL}:predict", orjson.dumps({"instances": instances}))


def binary_load(url: str, x: np.ndarray) -> Load:
    """A V2 request with Triton's binary tensor extension, asking for a binary output too."""
    raw = np.ascontiguousarray(x, dtype="<f4").tobytes()
    header = orjson.dumps({
        "inputs": [{"name": "inputs", "shape": list(x.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": "outputs", "parameters": {"binary_data": True}}],
    })
    return Load(url, header + raw, (("Content-Type", "application/octet-stream"),
                                    ("Inference-Header-Content-Length", str(len(header)))))


def input_names(models: Models) -> list[str]:
    return [spec["name"] for spec in models.card()["inputs"]]


def _v2_json(rows: np.ndarray, datatype: str, name: str = "inputs",
             outputs: list[dict] | None = None) -> bytes:
    request = {"inputs": [{"name": name, "shape": list(rows.shape), "datatype": datatype,
                           "data": rows.ravel().tolist()}]}
    return orjson.dumps(request | ({"outputs": outputs} if outputs else {}))


def _rounded(x: np.ndarray) -> np.ndarray:
    """float64 values of 7 significant digits: short JSON numbers, exact enough for float32."""
    return np.array([[float(f"{v:.7g}") for v in row] for row in x.tolist()])
