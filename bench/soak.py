"""``python -m bench.soak``: mixed requests at many connections for minutes; errors and memory.

Starts the service under gunicorn (``service.gunicorn_config``) on the bench repository (the
bench model beside the demo models, see ``bench.models``), sends a weighted mix of requests
(V2 JSON with 1 and 1000 rows, V2 binary, V1 named instances, metadata, and bad requests that
must get their 4xx) from ``--connections`` client threads, each with its own keep-alive
``requests`` session, samples every worker's RSS and PSS, and writes a Markdown summary:

    python -m bench.soak --minutes 10 --connections 32

An error is a 5xx, any status other than the one expected, a socket error or timeout, or a body
that differs from the one the same request got before the load started (every request of a
kind is the same, so any difference is a wrong answer). Memory is flat when, after the warm-up,
the mean of the last third of a worker's samples is within ``margin_mib`` of the first third's
(see ``memory_growth``). ``LoadRun`` and ``MemorySampler`` are the tests' load generator too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import requests

RESULTS = Path(__file__).with_name("results")
TIMEOUT_S = 30.0
# Growth of a worker's mean RSS, last third against first third, still called flat. After the
# warm-up the RSS only moves when the allocator's high-water mark does: when, by chance, more of
# a worker's threads than ever before hold the largest request of the mix at once (1000 rows of
# the bench model are about a MiB of Python objects; 4 threads). Measured: +0.1 to +3.6 MiB in
# 10-minute runs, +0.1 in 30 s ones on the test models. A leak crosses 4 MiB at about 560 bytes
# per request in the 40 s test (some 7500 requests per worker between the thirds' middles) and
# at about 40 bytes per request in a 10-minute soak (some 100 000).
FLAT_MARGIN_MIB = 4.0


@dataclass(frozen=True)
class Call:
    """One kind of request, sent again and again, and the status it must get."""

    kind: str
    method: str
    path: str
    status: int
    weight: int
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Outcome:
    """One request as a client saw it: ``status`` None for a socket error or timeout."""

    kind: str
    client: int
    request_id: str
    start: float
    end: float
    status: int | None
    problem: str  # "" when the answer was the expected one


def mixed_calls(model: str, card: dict, rows: int = 1000, seed: int = 0) -> list[Call]:
    """The soak mix for ``model`` (its ``card`` from model.json): good and bad requests."""
    names = [spec["name"] for spec in card["inputs"]]
    low = np.array([spec["min"] for spec in card["inputs"]], dtype=np.float32)
    high = np.array([spec["max"] for spec in card["inputs"]], dtype=np.float32)
    x = low + np.random.default_rng(seed).random((rows, len(names)), dtype=np.float32) * (
        high - low)
    infer = f"/v2/models/{model}/infer"
    json_type = (("Content-Type", "application/json"),)
    outside = (high + (high - low)).tolist()

    def v2(data: np.ndarray, shape: list[int] | None = None, **fields) -> bytes:
        tensor = {"name": "inputs", "shape": shape or list(data.shape), "datatype": "FP32",
                  "data": data.ravel().tolist()}
        return json.dumps({"inputs": [tensor], **fields}).encode()

    header = json.dumps({"inputs": [{"name": "inputs", "shape": [100, len(names)],
                                     "datatype": "FP32",
                                     "parameters": {"binary_data_size": x[:100].nbytes}}],
                         "outputs": [{"name": "outputs", "parameters": {"binary_data": True}}]})
    named = json.dumps({"instances": [dict(zip(names, row, strict=True))
                                      for row in x[:10].tolist()]}).encode()
    return [
        Call("v2-json-1", "POST", infer, 200, 30, v2(x[:1]), json_type),
        Call("v2-json-1000", "POST", infer, 200, 4, v2(x), json_type),
        Call("v2-binary-100", "POST", infer, 200, 15, header.encode() + x[:100].tobytes(),
             (("Inference-Header-Content-Length", str(len(header))),)),
        Call("v1-named-10", "POST", f"/v1/models/{model}:predict", 200, 15, named, json_type),
        Call("metadata", "GET", f"/v2/models/{model}", 200, 10),
        Call("ready", "GET", f"/v2/models/{model}/ready", 200, 5),
        Call("bad-json", "POST", infer, 400, 4, b'{"inputs": [', json_type),
        Call("bad-shape", "POST", infer, 400, 4, v2(x[:1], shape=[2, len(names)]), json_type),
        Call("unknown-model", "POST", "/v2/models/no_such_model/infer", 404, 4, v2(x[:1]),
             json_type),
        Call("out-of-domain", "POST", infer, 422, 4,
             v2(np.array([outside], dtype=np.float32),
                parameters={"domain_policy": "reject"}), json_type),
        Call("v1-missing-input", "POST", f"/v1/models/{model}:predict", 400, 4,
             json.dumps({"instances": [{names[0]: float(x[0, 0])}]}).encode(), json_type),
    ]


class LoadRun:
    """``connections`` client threads sending ``calls`` (by weight) to ``url`` until stopped.

    Each thread has one keep-alive ``requests.Session`` without retries, so every connection
    failure is seen and counted. ``start`` sends each call once first to learn its expected
    body; a call whose body varies from one answer to the next cannot be checked and fails.
    """

    def __init__(self, url: str, calls: Sequence[Call], connections: int, seed: int = 0,
                 timeout: float = TIMEOUT_S) -> None:
        self.url, self.calls, self.connections = url, list(calls), connections
        self.seed, self.timeout = seed, timeout
        self.outcomes: list[Outcome] = []
        self._digests: dict[str, str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> LoadRun:
        with requests.Session() as session:
            for call in self.calls:
                first, second = (self._send(session, call, "warm-up") for _ in range(2))
                if first.status_code != call.status or _digest(first) != _digest(second):
                    raise RuntimeError(f"{call.kind}: {first.status_code} {first.text[:200]} "
                                       "is not a fixed answer with the expected status")
                self._digests[call.kind] = _digest(first)
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                         for i in range(self.connections)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Outcome]:
        """Stop sending, wait for the last answers, return every outcome."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return sorted(self.outcomes, key=lambda o: o.start)

    def __enter__(self) -> LoadRun:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def count(self) -> int:
        return len(self.outcomes)

    def _client(self, index: int) -> None:
        pick = random.Random(self.seed * 1_000_003 + index)
        weights = [call.weight for call in self.calls]
        with requests.Session() as session:
            session.mount("http://", requests.adapters.HTTPAdapter(
                pool_connections=1, pool_maxsize=1, max_retries=0))
            n = 0
            while not self._stop.is_set():
                call = pick.choices(self.calls, weights)[0]
                request_id = f"c{index}-{n}"
                n += 1
                start = time.monotonic()
                try:
                    response = self._send(session, call, request_id)
                except requests.RequestException as exc:
                    status, problem = None, f"{type(exc).__name__}: {exc}"
                else:
                    status, problem = response.status_code, self._check(call, response)
                # list.append is atomic under the GIL: no lock on the hot path.
                self.outcomes.append(Outcome(call.kind, index, request_id, start,
                                             time.monotonic(), status, problem))

    def _send(self, session: requests.Session, call: Call, request_id: str) -> requests.Response:
        headers = {**dict(call.headers), "X-Request-ID": request_id}
        return session.request(call.method, self.url + call.path, data=call.body,
                               headers=headers, timeout=self.timeout)

    def _check(self, call: Call, response: requests.Response) -> str:
        if response.status_code != call.status:
            return f"status {response.status_code}, expected {call.status}: {response.text[:200]}"
        if _digest(response) != self._digests[call.kind]:
            return f"body differs from the expected one: {response.text[:200]}"
        return ""


def _digest(response: requests.Response) -> str:
    return hashlib.blake2b(response.content, digest_size=16).hexdigest()


def worker_pids(master: int) -> list[int]:
    """The gunicorn master's child processes (its workers), from /proc."""
    try:
        return sorted(int(p) for p in Path(f"/proc/{master}/task/{master}/children")
                      .read_text().split())
    except OSError:
        return []


def memory_kib(pid: int) -> tuple[int, int] | None:
    """(RSS, PSS) of ``pid`` in KiB from /proc/<pid>/smaps_rollup; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values = dict(line.split()[:2] for line in text.splitlines()[1:])
    return int(values["Rss:"]), int(values["Pss:"])


class MemorySampler:
    """Samples (time, pid, RSS KiB, PSS KiB) of every worker of ``master`` every ``interval`` s."""

    def __init__(self, master: int, interval: float = 1.0) -> None:
        self.master, self.interval = master, interval
        self.samples: list[tuple[float, int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            for pid in worker_pids(self.master):
                memory = memory_kib(pid)
                if memory is not None:
                    self.samples.append((now, pid, *memory))
            if self._stop.wait(self.interval):
                return


def memory_growth(samples: Sequence[tuple[float, int, int, int]], since: float,
                  column: int = 2) -> dict[int, tuple[float, float]]:
    """Per worker, (mean of the first third, mean of the last third) of its samples at or after
    ``since``, in MiB; ``column`` 2 is RSS, 3 is PSS. Workers with fewer than 3 samples are left
    out (a worker replaced during the run has two short series, none of them a trend)."""
    series: dict[int, list[float]] = {}
    for sample in samples:
        if sample[0] >= since:
            series.setdefault(sample[1], []).append(sample[column] / 1024)
    growth = {}
    for pid, values in series.items():
        third = len(values) // 3
        if third:
            growth[pid] = (float(np.mean(values[:third])), float(np.mean(values[-third:])))
    return growth


def problems(outcomes: Sequence[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.problem or o.status is None]


def summary(outcomes: Sequence[Outcome], samples, since: float, meta: dict[str, str]) -> str:
    """The Markdown report: requests and latency per kind, errors, memory per worker."""
    lines = [f"# Soak: {meta['title']}", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items() if key != "title"]
    bad = problems(outcomes)
    lines += ["", "| kind | requests | errors | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for kind in sorted({o.kind for o in outcomes}) + ["all"]:
        chosen = [o for o in outcomes if kind in ("all", o.kind)]
        ms = np.array([o.end - o.start for o in chosen]) * 1e3
        errors = sum(1 for o in bad if kind in ("all", o.kind))
        lines.append(f"| {kind} | {len(chosen)} | {errors} | {np.percentile(ms, 50):.1f} | "
                     f"{np.percentile(ms, 99):.1f} |")
    if bad:
        lines += ["", "First errors:", ""] + [f"- {o.kind} {o.request_id}: {o.problem}"
                                               for o in bad[:10]]
    rss, pss = memory_growth(samples, since, 2), memory_growth(samples, since, 3)
    first_last = _first_last(samples)
    lines += ["", f"Memory per worker (MiB) after the warm-up; flat = last-third mean within "
              f"{FLAT_MARGIN_MIB:g} MiB of the first third's; start and end are the first and last "
              "samples of the whole run.", "",
              "| worker | RSS start | RSS end | PSS start | PSS end | RSS thirds | PSS thirds "
              "| flat |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for pid in sorted(rss):
        (r0, p0), (r1, p1) = first_last[pid]
        flat = rss[pid][1] - rss[pid][0] <= FLAT_MARGIN_MIB
        lines.append(f"| {pid} | {r0:.1f} | {r1:.1f} | {p0:.1f} | {p1:.1f} | "
                     f"{rss[pid][0]:.1f} → {rss[pid][1]:.1f} | {pss[pid][0]:.1f} → "
                     f"{pss[pid][1]:.1f} | {'yes' if flat else 'NO'} |")
    lines += ["", "RSS (MiB) by tenth of the run, warm-up included:", "",
              "| worker | " + " | ".join(str(k) for k in range(1, 11)) + " |",
              "|---|" + "---:|" * 10]
    for pid, tenths in _tenths(samples).items():
        lines.append(f"| {pid} | " + " | ".join(f"{v:.1f}" for v in tenths) + " |")
    return "\n".join(lines) + "\n"


def _tenths(samples) -> dict[int, list[float]]:
    """Per worker with at least 10 samples, its mean RSS in MiB over each tenth of them."""
    by_pid: dict[int, list[float]] = {}
    for sample in samples:
        by_pid.setdefault(sample[1], []).append(sample[2] / 1024)
    return {pid: [float(np.mean(part)) for part in np.array_split(values, 10)]
            for pid, values in sorted(by_pid.items()) if len(values) >= 10}


def _first_last(samples) -> dict[int, tuple[tuple[float, float], ...]]:
    """Per worker, ((RSS, PSS) at its first sample, at its last), in MiB."""
    by_pid: dict[int, list] = {}
    for sample in samples:
        by_pid.setdefault(sample[1], []).append(sample)
    return {pid: tuple((s[2] / 1024, s[3] / 1024) for s in (series[0], series[-1]))
            for pid, series in by_pid.items()}


def soak(url: str, master: int, calls: Sequence[Call], seconds: float, connections: int,
         warmup: float, progress: Callable[[str], None] = lambda _: None):
    """Run the load for ``seconds``; return (outcomes, memory samples, start of the trend)."""
    with MemorySampler(master, interval=max(0.5, seconds / 300)) as sampler:
        load = LoadRun(url, calls, connections).start()
        began = time.monotonic()
        while (left := began + seconds - time.monotonic()) > 0:
            time.sleep(min(left, 30.0))
            progress(f"{time.monotonic() - began:.0f} s: {load.count()} requests, "
                     f"{len(problems(load.outcomes))} errors")
        outcomes = load.stop()
    return outcomes, sampler.samples, began + warmup


def main(argv: list[str] | None = None) -> None:
    from bench.models import MODEL, build
    from bench.serving import GunicornSpec, start_gunicorn

    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the load (10)")
    p.add_argument("--connections", type=int, default=32, help="client connections (32)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    p.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the trend (60)")
    p.add_argument("--workdir", type=Path, default=RESULTS / "work", help="bench model cache")
    p.add_argument("--out", type=Path, default=None, help="Markdown file (bench/results/...)")
    args = p.parse_args(argv)
    models = build(args.workdir)
    calls = mixed_calls(MODEL, models.card())
    spec = GunicornSpec("service:create_app()", args.workers, args.threads,
                        env={"SURROGATE_MODEL_REPOSITORY": str(models.repository)})
    server = start_gunicorn("soak", spec, args.workdir.parent / "logs")
    try:
        outcomes, samples, since = soak(server.url, server.process.pid, calls,
                                        args.minutes * 60, args.connections, args.warmup,
                                        lambda line: print(line, flush=True))
    finally:
        server.stop()
    stamp = datetime.now(UTC)
    meta = {"title": f"{args.minutes:g} min at {args.connections} connections",
            "date": stamp.isoformat(timespec="seconds"),
            "server": f"{args.workers} gunicorn gthread workers x {args.threads} threads, "
                      f"model {MODEL} beside the demo models",
            "warm-up excluded from the memory trend": f"{args.warmup:g} s"}
    text = summary(outcomes, samples, since, meta)
    out = args.out or RESULTS / f"soak-{stamp:%Y%m%d-%H%M%S}.md"
    out.write_text(text, encoding="utf-8")
    raw = {"meta": meta, "samples": ["time_s pid rss_kib pss_kib"] + samples}
    out.with_suffix(".json").write_text(json.dumps(raw), encoding="utf-8")
    print(text + f"\nwritten to {out} (memory samples: {out.with_suffix('.json').name})")


if __name__ == "__main__":
    main()
