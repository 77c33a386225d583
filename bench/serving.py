"""Start and stop the systems under test, and read their workers' memory.

Every gunicorn-served system (ours and the Flask peers) runs under the same settings module,
``service.gunicorn_config``, with the same worker class, worker and thread counts, so the table
compares applications, not server configurations. Access lines go to /dev/null for all of them
(the formatting cost stays, the disk does not fill up); gunicorn's error log goes to a file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

START_SECONDS = 120.0
STOP_SECONDS = 30.0
GUNICORN_CONFIG = "python:service.gunicorn_config"
# The worker class `surrogate serve` runs (gthread, with the service's JSON refusals and its
# socket opened once the models are loaded).
OURS_WORKER = "service.gunicorn_worker.JsonErrorWorker"
# What a BLAS or OpenMP library reads to size its thread pool: one per worker thread, fair to
# the scikit-learn peer (more only measures oversubscription of the two cores).
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS", "BLIS_NUM_THREADS")}


@dataclass(frozen=True)
class GunicornSpec:
    """How to run one gunicorn server: app, worker count, worker class, threads."""

    app: str
    workers: int = 2
    threads: int = 4
    worker_class: str = "gthread"
    env: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen
    log_path: Path
    # Whether the master serves requests itself (MLServer parses HTTP there; gunicorn does not).
    master_serves: bool = False

    def worker_pids(self) -> list[int]:
        """The processes that serve: the master's children (and the master if it serves)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            children = [int(p) for p in path.read_text().split()]
        except OSError:
            children = []
        master = [self.process.pid] if self.master_serves or not children else []
        return master + sorted(children)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it outlives ``STOP_SECONDS``."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(name: str, spec: GunicornSpec, log_dir: Path) -> Server:
    """Run ``spec`` under gunicorn with the service's settings module; wait until it answers."""
    port = free_port()
    env = _clean_env() | ONE_THREAD | {
        "SURROGATE_BIND": f"127.0.0.1:{port}",
        "SURROGATE_WORKERS": str(spec.workers),
        "SURROGATE_THREADS": str(spec.threads),
        "SURROGATE_LOG_LEVEL": "warning",
    } | spec.env
    command = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG,
               "--worker-class", spec.worker_class, *spec.extra_args, spec.app]
    return start(name, command, env, f"http://127.0.0.1:{port}", log_dir)


def start(name: str, command: list[str], env: dict[str, str], url: str, log_dir: Path,
          ready_path: str = "/v2/health/ready") -> Server:
    """Run ``command`` in its own process group until ``url + ready_path`` answers 200."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log,
                                   start_new_session=True, cwd=Path(__file__).parents[1])
    server = Server(name, url, process, log_path)
    try:
        _wait_ready(server, url + ready_path)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: Server, ready_url: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n"
                               f"{server.log()}")
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or not ready
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} not ready after {START_SECONDS} s:\n{server.log()}")


def _clean_env() -> dict[str, str]:
    scrubbed = ("PORT", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS", "PROMETHEUS_MULTIPROC_DIR",
                "SURROGATE_CONTROL_DIR")
    root = str(Path(__file__).parents[1])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SURROGATE_") and k not in scrubbed}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of ``pid`` in MB, from /proc/<pid>/smaps_rollup; NaN when unreadable."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key] = int(rest.split()[0]) / 1024
    except OSError:
        return float("nan"), float("nan")
    return values.get("Rss", float("nan")), values.get("Pss", float("nan"))
