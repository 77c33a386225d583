"""``python -m bench``: our service and its peers, side by side in one run on this machine.

Starts surrogate-serving (gunicorn, ``service.gunicorn_config``), the Flask hello-world ceiling,
a bare WSGI + onnxruntime app and a minimal Flask one (what the stack costs with a model and
nothing else), a naive Flask + pickled scikit-learn service and, when installed, Seldon
MLServer's sklearn runtime, all with the same worker count; measures in-process onnxruntime as
the floor; drives each with the same load generator (wrk, else a bounded Python one), round
after round; prints a Markdown table and writes it, the raw records and a PNG chart to
``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

from bench import floor, load, report
from bench.models import Models, build
from bench.peers import mlserver
from bench.scenarios import (
    BARE,
    HELLO,
    LEAN,
    MLSERVER,
    NAIVE,
    OURS,
    SCENARIOS,
    SYSTEMS,
    THROUGHPUT_CONNECTIONS,
    load_for,
    plan,
)
from bench.serving import (
    OURS_WORKER,
    GunicornSpec,
    Server,
    cpu_seconds,
    memory_mb,
    start_gunicorn,
)

RESULTS = Path(__file__).with_name("results")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 round of 2 s runs (about 2 minutes)")
    p.add_argument("--rounds", type=int, default=3, help="repeats of every run (3)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each run (5)")
    p.add_argument("--pause", type=float, default=1.0, help="idle seconds between runs (1)")
    p.add_argument("--workers", type=int, default=2, help="processes per server (2)")
    p.add_argument("--threads", type=int, default=4, help="gthread threads per worker (4)")
    p.add_argument("--worker-class", default="gthread", help="gunicorn worker class (gthread)")
    p.add_argument("--gunicorn-arg", action="append", default=[], metavar="ARG",
                   help="extra gunicorn argument for every gunicorn server, e.g. --reuse-port "
                        "(give it as --gunicorn-arg=--reuse-port)")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help=f"comma-separated subset of {','.join(SYSTEMS)}")
    p.add_argument("--mlserver", default=None,
                   help=f"the mlserver executable (else ${mlserver.ENV}, else PATH)")
    p.add_argument("--mlserver-workers", type=int, default=None,
                   help="MLServer parallel_workers (default --workers; 0 = in the server)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument("--connections", type=int, default=THROUGHPUT_CONNECTIONS,
                   help=f"connections of the throughput runs ({THROUGHPUT_CONNECTIONS})")
    p.add_argument("--ours-app", default="service:create_app()",
                   help="our WSGI app (e.g. bench.peers.batched:create_app() to try batching)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:CLASS:THREADS[:K=V,..]",
                   help="also run our service as ours-NAME with this worker class, thread count "
                        "and extra SURROGATE_* settings, interleaved with ours in every run, "
                        "e.g. sync:sync:1 or batch1:gthread:4:SURROGATE_BATCH_DELAY_MS=1 "
                        "(with --ours-app bench.peers.batched:create_app())")
    p.add_argument("--ours-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for our service, e.g. SURROGATE_BATCH_DELAY_MS=1")
    p.add_argument("--load", choices=("wrk", "python"), default=None,
                   help="load generator (default: wrk when installed)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--workdir", type=Path, default=RESULTS / "work",
                   help="where the bench models are built and cached (bench/results/work)")
    p.add_argument("--rebuild", action="store_true", help="retrain the cached bench models")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.pause = 1, 2.0, 0.5
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    systems = _choice(args.systems, SYSTEMS, "system")
    systems += tuple(f"{OURS}-{v.split(':', 1)[0]}" for v in args.variant)
    args.scenario_keys = _choice(args.scenarios, tuple(SCENARIOS), "scenario")
    notes: list[str] = []
    _log("building the bench models (cached after the first run)")
    models = build(args.workdir, rebuild=args.rebuild)
    floors: list[dict[str, float]] = []
    with ExitStack() as stack:
        servers = _start_all(args, systems, models, stack, notes)
        loads = {(r.system, r.scenario): load_for(r.system, r.scenario, servers[r.system].url,
                                                  models)
                 for r in _plan(args, tuple(servers))}
        memory = _memory(servers, "idle")
        for (system, scenario), one in loads.items():
            _smoke(system, scenario, one)
        records = []
        for round_no in range(1, args.rounds + 1):
            records += _round(round_no, args, loads, servers)
            memory += _memory(servers, f"after round {round_no}")
            if "binary100k" in args.scenario_keys:
                _log(f"round {round_no}: in-process onnxruntime (the floor)")
                floors.append(_floor(models, min(args.seconds, 2.0)))
    _write(args, records, _medians(floors), memory, notes)


def _choice(text: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        sys.exit(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def _plan(args, systems: tuple[str, ...]):
    return plan(systems, args.scenario_keys, args.connections)


def _floor(models: Models, seconds: float) -> dict[str, float]:
    """The floor, measured in each round beside the servers (idle then), like every system."""
    x = models.rows(100_000)
    return {"ort_rows_per_s_1_threads": floor.rows_per_second(models.onnx_path, x, 1, seconds),
            "ort_rows_per_s_2_threads": floor.rows_per_second(models.onnx_path, x, 2, seconds),
            "ort_single_row_us": floor.single_row_us(models.onnx_path, x, seconds / 2)}


def _medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: median(r[key] for r in rounds) for key in (rounds[0] if rounds else {})}


def _start_all(args, systems, models: Models, stack: ExitStack, notes: list[str]) -> dict:
    log_dir = args.out / "logs"
    common = (args.workers, args.threads, args.worker_class)
    extra = tuple(args.gunicorn_arg)
    # Ours runs as `surrogate serve` runs it: gthread as the service's own worker class (JSON
    # refusals, one access line, its socket opened once the models are loaded).
    ours_class = OURS_WORKER if args.worker_class == "gthread" else args.worker_class
    specs = {
        OURS: GunicornSpec(args.ours_app, args.workers, args.threads, ours_class,
                           {"SURROGATE_MODEL_REPOSITORY": str(models.repository),
                            **dict(kv.split("=", 1) for kv in args.ours_env)}, extra),
        HELLO: GunicornSpec("bench.peers.hello:create_app()", *common, {}, extra),
        BARE: GunicornSpec("bench.peers.bare:create_app()", *common,
                           {"BENCH_ONNX": str(models.onnx_path)}, extra),
        LEAN: GunicornSpec("bench.peers.lean:create_app()", *common,
                           {"BENCH_ONNX": str(models.onnx_path)}, extra),
        NAIVE: GunicornSpec("bench.peers.naive:create_app()", *common,
                            {"BENCH_PIPELINE": str(models.pipeline)}, extra),
    }
    for variant in args.variant:
        name, worker_class, threads, *settings = variant.split(":", 3)
        env = {**specs[OURS].env, **dict(kv.split("=", 1) for kv in ",".join(settings).split(",")
                                          if kv)}
        specs[f"{OURS}-{name}"] = GunicornSpec(args.ours_app, args.workers, int(threads),
                                               worker_class, env, extra)
    servers: dict[str, Server] = {}
    for system in systems:
        _log(f"starting {system}")
        if system == MLSERVER:
            server = _start_mlserver(args, models, log_dir, notes)
        else:
            server = start_gunicorn(system, specs[system], log_dir)
        if server is not None:
            stack.callback(server.stop)
            servers[system] = server
    return servers


def _start_mlserver(args, models: Models, log_dir: Path, notes: list[str]) -> Server | None:
    executable = mlserver.find(args.mlserver)
    if executable is None:
        notes.append(f"MLServer skipped: no mlserver executable (--mlserver or ${mlserver.ENV})")
        return None
    workers = args.workers if args.mlserver_workers is None else args.mlserver_workers
    try:
        return mlserver.start_mlserver(executable, models.pipeline, args.workdir, workers,
                                       log_dir)
    except RuntimeError as exc:
        if workers == 0:
            raise
        first = str(exc).splitlines()[0]
        notes.append(f"MLServer with {workers} parallel workers failed ({first}); "
                     "measured with parallel_workers 0 (one process)")
        return mlserver.start_mlserver(executable, models.pipeline, args.workdir, 0, log_dir)


def _smoke(system: str, scenario: str, one: load.Load) -> None:
    """One request before the load: a system that answers it wrong is not measured."""
    request = urllib.request.Request(one.url, one.body, dict(one.headers), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise RuntimeError(f"{system} {scenario}: status {response.status}")
        response.read()


def _round(round_no: int, args, loads: dict, servers: dict[str, Server]) -> list[dict]:
    records = []
    for run in _plan(args, tuple(servers)):
        time.sleep(args.pause)
        pids = servers[run.system].worker_pids()
        before = [cpu_seconds(pid) for pid in pids]
        client_before = _client_cpu_seconds()
        result = load.drive(loads[(run.system, run.scenario)], run.connections, args.seconds,
                            args.load)
        client = _client_cpu_seconds() - client_before
        used = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
        # Keep-alive connections stay on the worker that accepted them: how lopsided was it?
        share = max(used) / sum(used) if sum(used) > 0 else float("nan")
        per_request = 1e6 / result.requests if result.requests else float("nan")
        records.append({"round": round_no, **asdict(run), **asdict(result), "rps": result.rps,
                        "busiest_worker_share": share,
                        "server_cpu_us": sum(used) * per_request,
                        "client_cpu_us": client * per_request})
        _log(f"round {round_no}: {run.system:8} {run.scenario:12} c={run.connections:<3} "
             f"{result.rps:10,.1f} req/s  p50 {result.p50_ms:7.3f} ms  p99 {result.p99_ms:7.3f}"
             f" ms  failures {result.failures}  busiest worker {share:.0%} of CPU  "
             f"server CPU {sum(used) * per_request:,.0f} us/request")
    return records


def _client_cpu_seconds() -> float:
    """CPU the load generator has used: wrk runs as a finished child, the Python one in here."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime + time.process_time()


def _memory(servers: dict[str, Server], stage: str) -> list[dict]:
    rows = []
    for system, server in servers.items():
        for i, pid in enumerate(sorted(server.worker_pids()), start=1):
            rss, pss = memory_mb(pid)
            rows.append({"system": system, "worker": i, "pid": pid, "stage": stage,
                         "rss_mb": rss, "pss_mb": pss})
    return rows


def _write(args, records: list[dict], floors: dict, memory: list[dict], notes: list[str]) -> None:
    now = datetime.now(UTC)
    meta = {"when": now.strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            "load generator": args.load or load.generator(),
            "our app": args.ours_app
                       + "".join(f", {kv}" for kv in args.ours_env),
            "servers": f"{args.workers} workers, {args.worker_class}"
                       + (f", {args.threads} threads" if args.worker_class == "gthread" else "")
                       + "".join(f", {arg}" for arg in args.gunicorn_arg),
            "rounds": f"{args.rounds} x {args.seconds:g} s, {args.pause:g} s pause",
            "load average at the end (1, 5, 15 min)": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            **({"notes": "; ".join(notes)} if notes else {})}
    summary = report.summarise(records)
    text = report.markdown(summary, floors, memory, meta, args.connections)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    for name in (f"bench-{stamp}", "latest"):
        (args.out / f"{name}.md").write_text(text)
        (args.out / f"{name}.png").write_bytes(report.chart_png(summary, floors, args.connections))
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(
        {"meta": meta, "floor": floors, "records": records, "memory": memory}, indent=1))
    _log(f"wrote {args.out}/bench-{stamp}.md, .png and .json")


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
