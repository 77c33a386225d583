"""``python -m bench.paired``: our server CPU per request against the bare peer's, measured in
the same worker processes.

``python -m bench`` runs each system as a server of its own. On a shared machine two servers
running the same code land 5-8% apart from one run to the next (where their workers, sockets and
memory fall), as much as the ratios it reports are judged by. Here one gunicorn server (the
service's settings and worker class) runs our service with the bare WSGI + ORT peer mounted
under ``/bare/`` (``bench.peers.paired``); each round sends each scenario to ours and the same
rows as V2 JSON to the bare handler (whichever goes first alternates from round to round), over
the same number of connections, and reads the workers' CPU around each (after an unmeasured quarter
of its time, so one load's aftermath is not charged to the next). The figure is the median over
rounds of ours / bare within a round: what our request costs above the least a request can cost,
in the same processes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench import load
from bench.hotpath import RESULTS
from bench.models import build
from bench.peers.paired import PREFIX
from bench.scenarios import BARE, OURS, SCENARIOS, load_for
from bench.serving import OURS_WORKER, GunicornSpec, cpu_seconds, start_gunicorn

DEFAULT_SCENARIOS = ("single_v2", "single_v1", "rows1000_v2", "rows1000_v1col")


def bare_scenario(scenario: str) -> str:
    """The bare peer's scenario for ``scenario``: V2 JSON of as many rows (it has no V1)."""
    return "single_v2" if SCENARIOS[scenario].rows == 1 else "rows1000_v2"


def server_cpu_us(server, one: load.Load, connections: int, seconds: float) -> float:
    """Server CPU microseconds per request of ``one`` sent for ``seconds``, after a quarter of
    that unmeasured: what the previous load left behind (a 1000-row load's freed memory, say)
    is not charged to this one."""
    load.drive(one, connections, seconds / 4)
    pids = server.worker_pids()
    before = sum(cpu_seconds(pid) for pid in pids)
    result = load.drive(one, connections, seconds)
    if result.failures or not result.requests:
        raise RuntimeError(f"{one.url}: {result.failures} of {result.requests} requests failed")
    return (sum(cpu_seconds(pid) for pid in pids) - before) * 1e6 / result.requests


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__)
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--workdir", type=Path, default=RESULTS / "work",
                   help="where the bench model is built (as python -m bench)")
    args = p.parse_args(argv)
    scenarios = args.scenarios.split(",")
    unknown = [s for s in scenarios if s not in SCENARIOS or s == "binary100k"]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}; choose from "
                f"{', '.join(s for s in SCENARIOS if s != 'binary100k')}")
    models = build(args.workdir, demo=False)
    spec = GunicornSpec("bench.peers.paired:create_app()", args.workers, args.threads,
                        OURS_WORKER, {"SURROGATE_MODEL_REPOSITORY": str(models.repository),
                                      "BENCH_ONNX": str(models.onnx_path)})
    server = start_gunicorn("paired", spec, args.workdir / "logs")
    try:
        bare_url = server.url + PREFIX.rstrip("/")
        loads = {s: (load_for(OURS, s, server.url, models),
                     load_for(BARE, bare_scenario(s), bare_url, models)) for s in scenarios}
        for ours, peer in loads.values():  # unmeasured: first requests warm caches up
            for one in (ours, peer):
                load.drive(one, args.connections, min(args.seconds, 1.0))
        figures: dict[str, list[tuple[float, float]]] = {s: [] for s in scenarios}
        for round_no in range(1, args.rounds + 1):
            for scenario, (ours, peer) in loads.items():
                # Either goes first in alternate rounds, so neither always follows the other.
                order = (ours, peer) if round_no % 2 else (peer, ours)
                cpu = {one: server_cpu_us(server, one, args.connections, args.seconds)
                       for one in order}
                pair = (cpu[ours], cpu[peer])
                figures[scenario].append(pair)
                print(f"round {round_no}: {scenario:15} ours {pair[0]:7.0f} us  "
                      f"bare {pair[1]:7.0f} us  x{pair[0] / pair[1]:.3f}", flush=True)
                time.sleep(0.5)
    finally:
        server.stop()
    print(f"\nServer CPU per request, {args.connections} connections, {args.rounds} rounds of "
          f"{args.seconds:g} s, ours and bare in the same {args.workers} workers "
          f"({args.threads} threads):\n")
    print("| scenario | ours us/request | bare us/request | x bare (median of rounds) | "
          "x bare per round |\n| --- | --- | --- | --- | --- |")
    for scenario, pairs in figures.items():
        ratios = [ours / peer for ours, peer in pairs]
        print(f"| {SCENARIOS[scenario].label} | {statistics.median(o for o, _ in pairs):.0f} | "
              f"{statistics.median(b for _, b in pairs):.0f} | {statistics.median(ratios):.3f} | "
              f"{' / '.join(f'{r:.2f}' for r in ratios)} |")


if __name__ == "__main__":
    main()
