"""Seldon MLServer with its scikit-learn runtime, serving the same pickled pipeline.

MLServer is not a project dependency: install it into its own environment, e.g.
``python -m venv /tmp/mlserver-venv && /tmp/mlserver-venv/bin/pip install mlserver
mlserver-sklearn 'uvloop<0.21'``, and give the bench its ``mlserver`` executable with
``--mlserver`` or ``BENCH_MLSERVER``. Without it the bench skips MLServer and says so.
(uvloop 0.21 and later break MLServer 1.7's parallel workers: "There is no current event
loop"; the bench then falls back to ``parallel_workers`` 0 and notes it.)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bench.serving import ONE_THREAD, Server, free_port, start

ENV = "BENCH_MLSERVER"
MODEL = "bench"


def find(option: str | None) -> Path | None:
    """The mlserver executable from the option, ``BENCH_MLSERVER`` or PATH; None if absent."""
    candidate = option or os.environ.get(ENV) or shutil.which("mlserver")
    if candidate and Path(candidate).is_file():
        return Path(candidate)
    return None


def start_mlserver(executable: Path, pipeline: Path, workdir: Path, workers: int,
                   log_dir: Path) -> Server:
    """Serve ``pipeline`` as model ``bench`` with ``workers`` parallel inference workers.

    ``workers`` 0 runs inference in the server process itself (MLServer's parallel workers
    crash on some Python 3.11 setups).
    """
    root = workdir / "mlserver"
    model_dir = root / MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pipeline, model_dir / "model.joblib")
    port = free_port()
    settings = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
                "parallel_workers": workers, "debug": False}
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = {"name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel",
                      "parameters": {"uri": "./model.joblib"}}
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= ONE_THREAD
    server = start(f"mlserver-{workers}-workers", [str(executable), "start", str(root)], env,
                   f"http://127.0.0.1:{port}", log_dir, ready_path=f"/v2/models/{MODEL}/ready")
    server.master_serves = True
    return server
