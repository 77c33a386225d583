"""Run ``surrogate serve`` as a real gunicorn server for end-to-end tests.

``running_server`` starts one on a free loopback port, waits until ``/v2/health/ready`` answers
200 (polling against a deadline, failing at once if the process dies) and stops it with SIGTERM,
which must end it with exit code 0 within ``STOP_SECONDS``. ``wait_for`` polls any other
condition against a deadline; ``Server.workers`` and ``Server.served_by`` say which worker
processes exist and which one answered a request (from the access log).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

SURROGATE = Path(sys.executable).with_name("surrogate")
# Imports and model loading in every worker; generous for a loaded CI machine, never waited out
# when the server is healthy.
START_SECONDS = 60.0
STOP_SECONDS = 30.0
# Inherited variables that would change the server under test, e.g. a PROMETHEUS_MULTIPROC_DIR
# shared by two servers would mix their counters.
# The end of gunicorn's access line (service.gunicorn_config.access_log_format).
ACCESS_LINE = re.compile(r" rid=(\S+) pid=<(\d+)>$", re.MULTILINE)
SCRUBBED = ("PORT", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS", "PROMETHEUS_MULTIPROC_DIR",
            "prometheus_multiproc_dir")


@dataclass(frozen=True)
class Server:
    """A running server: its base URL, its ``host:port`` (tritonclient's form) and its log."""

    url: str
    address: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def workers(self) -> set[int]:
        """The pids of the gunicorn master's worker processes (its children), from /proc."""
        master = self.process.pid
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text()
        except OSError:
            return set()
        return {int(pid) for pid in children.split()}

    def served_by(self) -> dict[str, int]:
        """The worker pid that logged each answered request, by its X-Request-ID."""
        return {rid: int(pid) for rid, pid in ACCESS_LINE.findall(self.log())}


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without SURROGATE_* and SCRUBBED variables, plus overrides."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("SURROGATE_") and key not in SCRUBBED}
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(repo: Path, log_path: Path, *, workers: int = 2,
                   env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run ``surrogate serve`` on ``repo`` until the block ends; see the module docstring."""
    port = free_port()
    command = [str(SURROGATE), "serve", "--repo", str(repo), "--bind", f"127.0.0.1:{port}",
               "--workers", str(workers)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=clean_env(**(env or {})))
    server = Server(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", process, log_path)
    try:
        _wait_until_ready(server)
        yield server
    finally:
        _stop(server)


def wait_for(condition: Callable[[], object], what: str, seconds: float = START_SECONDS,
             server: Server | None = None):
    """Poll ``condition`` until it returns something true (returned); fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    pytest.fail(f"{what}: not after {seconds} s" + (f"\n{server.log()}" if server else ""))


def from_every_worker(server: Server, method: str, path: str,
                      **kwargs) -> dict[int, requests.Response]:
    """One answer from each worker to the same request, sent on fresh connections until every
    worker has logged one (the kernel hands each connection to whichever worker accepts first).
    """
    workers, answers, pending = server.workers(), {}, {}
    headers = kwargs.pop("headers", {})

    def ask() -> bool:
        request_id = uuid.uuid4().hex
        pending[request_id] = requests.request(
            method, server.url + path, timeout=30, **kwargs,
            headers={**headers, "X-Request-ID": request_id, "Connection": "close"})
        for request_id, pid in server.served_by().items():
            if request_id in pending:
                answers[pid] = pending.pop(request_id)
        return workers <= answers.keys()

    wait_for(ask, f"an answer to {method} {path} from each of the workers {workers}",
             server=server)
    return {pid: answers[pid] for pid in workers}


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"server exited with {server.process.returncode} before it was ready:\n"
                        f"{server.log()}")
        try:
            if requests.get(f"{server.url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or a worker still booting on a busy machine
        time.sleep(0.05)
    pytest.fail(f"server not ready after {START_SECONDS} s:\n{server.log()}")


def _stop(server: Server) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL if it does not end in time."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        pytest.fail(f"server ignored SIGTERM for {STOP_SECONDS} s:\n{server.log()}")
    assert code == 0, f"server exited with {code} after SIGTERM:\n{server.log()}"
