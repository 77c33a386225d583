"""``python -m bench.many_models``: what a repository of many small models costs a worker.

For each repository size (100 and 2000 models by default, plus one model as the baseline),
the default ``surrogate serve`` application runs under gunicorn with the service's settings
module, and the run reports: seconds from the start to ``/v2/health/ready``, RSS and PSS per
worker, the memory per model (RSS above the one-model server's, over the extra models), and the
latency of single-row V2 requests to the last model loaded, then of the same requests asking for
its Jacobian (whose session a worker creates on first use).

The models are copies of one 4-32-32-2 ``SurrogateMLP`` bundle (a surrogate per component or
operating point looks like this), trained briefly and written by ``training.bundle``.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from bench.serving import OURS_WORKER, GunicornSpec, Server, memory_mb, start_gunicorn
from service import bundle_format as fmt

RESULTS = Path(__file__).with_name("results")
COUNTS = (100, 2000)
SEED_MODEL = "m0"
REQUESTS = 200
N_INPUTS, HIDDEN, N_OUTPUTS = 4, (32, 32), 2


@dataclass(frozen=True)
class Measurement:
    models: int
    ready_seconds: float
    rss_mb: list[float]  # per worker
    pss_mb: list[float]
    p50_ms: float
    p99_ms: float
    jacobian_p50_ms: float


def seed_bundle(workdir: Path) -> Path:
    """The version directory of the model every repository copies, trained once and cached."""
    import numpy as np

    from training import SurrogateMLP
    from training.bundle import write_bundle

    model_dir = workdir / "seed" / SEED_MODEL
    if (model_dir / "1" / "model.json").exists():
        return model_dir
    shutil.rmtree(model_dir, ignore_errors=True)
    rng = np.random.default_rng(0)
    X = rng.random((200, N_INPUTS))
    y = np.c_[X.sum(axis=1), X[:, 0] * X[:, 1]]
    model = SurrogateMLP(hidden_layer_sizes=HIDDEN, alpha=1e-3, lbfgs_maxiter=50,
                         random_state=0).fit(X, y)
    write_bundle(model, workdir / "seed", SEED_MODEL,
                 inputs=[{"name": f"x{i}", "unit": "1", "min": 0.0, "max": 1.0}
                         for i in range(N_INPUTS)],
                 outputs=[{"name": "sum", "unit": "1"}, {"name": "product", "unit": "1"}],
                 metrics={}, training_info={})
    return model_dir


def repository(workdir: Path, count: int) -> Path:
    """A repository of ``count`` copies of the seed model, ``m0`` to ``m<count-1>``."""
    seed = seed_bundle(workdir)
    repo = workdir / f"repo-{count}"
    if len(list(repo.glob("m*"))) == count:
        return repo
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    card = fmt.read_card(seed / "1")
    for i in range(count):
        shutil.copytree(seed, repo / f"m{i}")
        card["name"] = f"m{i}"  # as its own export would have it (the graphs' sha256 stay)
        (repo / f"m{i}" / "1" / fmt.CARD_FILE).write_bytes(orjson.dumps(card))
    return repo


def measure(repo: Path, count: int, workers: int, log_dir: Path) -> Measurement:
    spec = GunicornSpec("service:create_app()", workers=workers, worker_class=OURS_WORKER,
                        env={"SURROGATE_MODEL_REPOSITORY": str(repo)})
    started = time.monotonic()
    server = start_gunicorn(f"many-{count}", spec, log_dir)
    try:
        ready = time.monotonic() - started
        last = f"m{count - 1}"
        plain = _latencies(server, last, None)
        jacobian = _latencies(server, last, "jacobian")
        memory = [memory_mb(pid) for pid in server.worker_pids()]
    finally:
        server.stop()
    return Measurement(count, ready, [m[0] for m in memory], [m[1] for m in memory],
                       _percentile(plain, 50), _percentile(plain, 99),
                       _percentile(jacobian, 50))


def _latencies(server: Server, model: str, output: str | None) -> list[float]:
    """Milliseconds of ``REQUESTS`` sequential single-row V2 requests on one connection."""
    body = {"inputs": [{"name": "inputs", "shape": [1, N_INPUTS], "datatype": "FP32",
                        "data": [0.5] * N_INPUTS}]}
    if output:
        body["outputs"] = [{"name": output}]
    payload = orjson.dumps(body)
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    times = []
    try:
        for _ in range(REQUESTS):
            start = time.perf_counter()
            connection.request("POST", f"/v2/models/{model}/infer", payload,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            times.append((time.perf_counter() - start) * 1000)
            if response.status != 200:
                raise RuntimeError(f"{model}: {response.status} {answer[:200]!r}")
    finally:
        connection.close()
    return times


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def markdown(baseline: Measurement, rows: list[Measurement], workers: int) -> str:
    base_rss = statistics.mean(baseline.rss_mb)
    lines = [
        f"Many models: `surrogate serve` defaults under gunicorn, {workers} workers; copies of "
        f"one {N_INPUTS}-{'-'.join(map(str, HIDDEN))}-{N_OUTPUTS} model. Per model: mean worker "
        f"RSS above the one-model server's ({base_rss:.0f} MB), over the extra models. Latency: "
        f"{REQUESTS} sequential single-row V2 JSON requests to the last model, one connection.",
        "",
        "| models | ready s | RSS per worker MB | PSS per worker MB | MB per model | p50 ms "
        "| p99 ms | jacobian p50 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in [baseline, *rows]:
        per_model = ((statistics.mean(m.rss_mb) - base_rss) / (m.models - 1)
                     if m.models > 1 else float("nan"))
        lines.append(
            f"| {m.models} | {m.ready_seconds:.1f} | "
            f"{' / '.join(f'{v:.0f}' for v in m.rss_mb)} | "
            f"{' / '.join(f'{v:.0f}' for v in m.pss_mb)} | {per_model:.3f} | "
            f"{m.p50_ms:.2f} | {m.p99_ms:.2f} | {m.jacobian_p50_ms:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.many_models", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", default=",".join(map(str, COUNTS)),
                   help="repository sizes, comma-separated (100,2000)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    p.add_argument("--workdir", type=Path, default=RESULTS / "work" / "many_models")
    p.add_argument("--out", type=Path, default=RESULTS / "many_models.md")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    if any(c < 2 for c in counts):
        p.error("--counts: every size must be at least 2 (1 model is the baseline)")
    log_dir = args.workdir / "logs"
    baseline = measure(repository(args.workdir, 1), 1, args.workers, log_dir)
    rows = [measure(repository(args.workdir, c), c, args.workers, log_dir) for c in counts]
    text = markdown(baseline, rows, args.workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text, end="")


if __name__ == "__main__":
    main()
