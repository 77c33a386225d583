"""Load generators: wrk (Debian's ``wrk`` package, driven by ``bench/post.lua``) or, when wrk is
missing, a bounded Python generator (threads with keep-alive ``http.client`` connections).

Both send one fixed POST body over ``connections`` keep-alive connections for ``seconds`` and
count every socket error, timeout and non-2xx answer as a failure.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

LUA = Path(__file__).with_name("post.lua")
TIMEOUT_S = 10
# The Python generator holds the GIL: beyond this many connections it measures itself.
PYTHON_MAX_CONNECTIONS = 64


@dataclass(frozen=True)
class Load:
    """One request, sent again and again: ``url``, ``body`` and extra headers."""

    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    failures: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return max(self.requests - self.failures, 0) / self.seconds if self.seconds else 0.0


def generator() -> str:
    """``"wrk"`` when the wrk binary is on PATH, else ``"python"``."""
    return "wrk" if shutil.which("wrk") else "python"


def drive(load: Load, connections: int, seconds: float, tool: str | None = None) -> Result:
    """Send ``load`` over ``connections`` connections for ``seconds``."""
    if (tool or generator()) == "wrk":
        return _wrk(load, connections, seconds)
    return _python(load, connections, seconds)


def _wrk(load: Load, connections: int, seconds: float) -> Result:
    with tempfile.NamedTemporaryFile(suffix=".body") as body:
        body.write(load.body)
        body.flush()
        # One wrk thread: on a small machine every core the generator takes is one the server
        # under test loses, and one thread sends far more than these servers answer.
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                   f"--timeout={TIMEOUT_S}s", "-s", str(LUA), load.url, "--", body.name,
                   *(f"{name}: {value}" for name, value in load.headers)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    stats = json.loads(line.removeprefix("BENCH_JSON "))
    failures = sum(stats[k] for k in ("connect", "read", "write", "status", "timeout"))
    return Result(stats["requests"], stats["duration_us"] / 1e6, failures,
                  stats["p50_us"] / 1e3, stats["p99_us"] / 1e3)


def _python(load: Load, connections: int, seconds: float) -> Result:
    connections = min(connections, PYTHON_MAX_CONNECTIONS)
    parts = urlsplit(load.url)
    headers = dict(load.headers)
    stop = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures = [0] * connections

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                conn.request("POST", parts.path, load.body, headers)
                response = conn.getresponse()
                response.read()
                ok = 200 <= response.status < 300
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
            latencies[i].append(time.perf_counter() - started)
            failures[i] += not ok
        conn.close()

    begun = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - begun
    every = np.concatenate([np.asarray(x) for x in latencies]) if any(latencies) else np.zeros(1)
    p50, p99 = np.percentile(every, [50, 99]) * 1e3
    return Result(len(every), elapsed, sum(failures), float(p50), float(p99))
