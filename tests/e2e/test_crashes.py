"""Crashes and restarts under a real gunicorn: a killed worker, SIGTERM, worker recycling.

- SIGKILL to a worker under load costs only the requests it held: each failure is a connection
  error, ending after the kill, from a client whose kept-alive connection that worker held, one
  per client, and a second only if the client sent it before the worker was gone (with
  ``reuse_port`` every worker has a listening socket of its own, and the kernel may queue a
  client's new connection on the dying worker's until that socket closes, then resets it); the
  master replaces the worker, every worker answers again, and no request fails after that.
- SIGTERM to the master while requests are in flight (slow clients still sending 100k-row binary
  requests, accepted by the workers before the signal) drains them: each one gets its 200 and
  its right answer, and the master exits 0 within the graceful timeout; a client that stalls is
  cut off at that timeout, not waited for.
- Worker recycling (``SURROGATE_MAX_REQUESTS`` with jitter) under load over keep-alive
  connections loses no request: gunicorn (>= 27.0.1) answers a request that arrives on a
  kept-alive connection of a stopping worker with "Connection: close" instead of dropping it.

The clients are ``requests`` sessions without retries (``max_retries=0``, also requests'
default for a POST): urllib3 replaces a pooled connection whose close has already arrived, but
a request sent before the close arrives fails, and is counted. Measured with this recycling
test: gunicorn 27.0.0 lost 32 of 1500 requests that way, 26.2.0 lost 19, 23.0.0 lost 20
("Remote end closed connection without response", "Connection reset by peer"); 27.0.1 none.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bench.soak import Call, LoadRun, problems
from tests.bundles import make_bundle
from tests.e2e.server import from_every_worker, running_server, wait_for

THREADS = 4
CLIENTS = 8
GRACEFUL_SECONDS = 20
ROWS = 100_000
INFER = "/v2/models/linear/infer"
ONE_ROW = Call("v2-json-1", "POST", INFER, 200, 1, json.dumps(
    {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1.5]}]}
).encode(), (("Content-Type", "application/json"),))


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("crash-models"), "linear")


def _server(linear, tmp_path, **env):
    return running_server(linear.path.parents[1], tmp_path / "server.log", workers=2,
                          env={"SURROGATE_THREADS": str(THREADS), **env})


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited and been reaped by the master. A zombie is not enough: when
    SIGKILL ends a threaded worker, its main thread can be a zombie while the others still exit
    and still hold the process's files, its listening socket among them; the kernel lets the
    master reap it only once every thread is gone, and so every file closed."""
    return not Path(f"/proc/{pid}").exists()


def _busiest(served: dict[str, int]) -> int:
    pids = list(served.values())
    return max(set(pids), key=pids.count)


def test_killed_worker_costs_only_its_in_flight_requests(linear, tmp_path):
    with _server(linear, tmp_path) as server:
        before = server.workers()
        load = LoadRun(server.url, [ONE_ROW], CLIENTS).start()
        try:
            wait_for(lambda: load.count() > 500, "500 requests", server=server)
            victim = _busiest(server.served_by())
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: _gone(victim), f"worker {victim} gone", server=server)
            died = time.monotonic()
            wait_for(lambda: len(server.workers() - before) == 1 == len(before - server.workers()),
                     "a new worker in place of the killed one", server=server)
            for pid, answer in from_every_worker(server, "GET", "/v2/health/ready").items():
                assert answer.status_code == 200, (pid, answer.text)
            recovered, recovered_at = load.count(), time.monotonic()
            wait_for(lambda: load.count() > recovered + 500, "500 requests after the restart",
                     server=server)
        finally:
            outcomes = load.stop()
        served = server.served_by()

    # The clients whose kept-alive connection the victim held: their last answer before the kill
    # that the access log shows came from it (the kill may beat the log line of the very last).
    last = {}
    for outcome in outcomes:
        if outcome.end < killed and outcome.request_id in served:
            last[outcome.client] = served[outcome.request_id]
    held = {client for client, pid in last.items() if pid == victim}
    failed = problems(outcomes)
    assert held, last
    lost: dict[int, list] = {}
    for outcome in sorted(failed, key=lambda o: o.start):
        lost.setdefault(outcome.client, []).append(outcome)
    for client, outcomes_lost in lost.items():  # the second and later: queued on the victim
        assert all(o.start < died for o in outcomes_lost[1:]), (client, outcomes_lost, died)
    for outcome in failed:
        assert outcome.status is None, outcome  # a connection error, never an HTTP error
        assert outcome.client in held, (outcome, held)
        # Sent before the client could see the connection reset: the loopback packets that tell
        # it may trail the worker's death a little on a busy machine.
        assert killed < outcome.end and outcome.start < recovered_at, (outcome, killed, died)
    assert sum(o.start > recovered_at for o in outcomes) > 500


def _slow_request(port: int, body: bytes, header_length: int) -> socket.socket:
    """A connection that has sent the request head and half of ``body``."""
    head = (f"POST {INFER} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n"
            f"Inference-Header-Content-Length: {header_length}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(head + body[: len(body) // 2])
    return sock


def _accepted(port: int, socks: list[socket.socket]) -> bool:
    """Whether a worker has accepted each of these connections: the server side of a connection
    still in the listen queue has no file yet (inode 0 in /proc/net/tcp)."""
    clients = {sock.getsockname()[1] for sock in socks}
    accepted = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if int(local.split(":")[1], 16) == port and state == "01" and inode != "0":
            accepted.add(int(remote.split(":")[1], 16))
    return clients <= accepted


def _finish(sock: socket.socket, rest: bytes, pieces: int = 20) -> tuple[int, dict, bytes]:
    """Send ``rest`` the way a slow client does, then read the whole response."""
    for k in range(pieces):
        sock.sendall(rest[k * len(rest) // pieces:(k + 1) * len(rest) // pieces])
        time.sleep(0.05)
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    sock.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def test_sigterm_drains_in_flight_requests(linear, tmp_path):
    x = np.random.default_rng(0).random((ROWS, 2), dtype=np.float32)
    header = json.dumps({"inputs": [{"name": "inputs", "shape": [ROWS, 2], "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "outputs", "parameters": {"binary_data": True}}]})
    body = header.encode() + x.tobytes()
    env = {"SURROGATE_GRACEFUL_TIMEOUT": str(GRACEFUL_SECONDS)}
    with _server(linear, tmp_path, **env) as server:
        port = int(server.address.split(":")[1])
        socks = [_slow_request(port, body, len(header)) for _ in range(CLIENTS)]
        wait_for(lambda: _accepted(port, socks), "every connection accepted", server=server)
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: "Handling signal: term" in server.log(), "the master's SIGTERM",
                 server=server)
        # No answer can leave before its whole body is in: every one is served after SIGTERM.
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(_finish, socks, [body[len(body) // 2:]] * CLIENTS))
        assert server.process.wait(timeout=GRACEFUL_SECONDS + 5) == 0, server.log()
        log = server.log()

    expected = linear.predict(x).ravel()
    for status, headers, payload in answers:
        assert status == 200, payload[:300]
        length = int(headers["inference-header-content-length"])
        np.testing.assert_allclose(np.frombuffer(payload[length:], dtype="<f4"), expected,
                                   rtol=1e-6)
    assert "SIGKILL" not in log and "Traceback" not in log, log


def test_graceful_timeout_cuts_off_a_stalled_client(linear, tmp_path):
    graceful = 2
    with _server(linear, tmp_path, SURROGATE_GRACEFUL_TIMEOUT=str(graceful)) as server:
        port = int(server.address.split(":")[1])
        stalled = _slow_request(port, b"{" + b" " * 10_000, 5000)
        wait_for(lambda: _accepted(port, [stalled]), "the connection accepted", server=server)
        server.process.send_signal(signal.SIGTERM)
        # The master waits the graceful timeout for the worker holding the stalled request,
        # then kills it and exits 0: the stalled client gets no answer.
        assert server.process.wait(timeout=graceful + 10) == 0, server.log()
        try:
            assert stalled.recv(1) == b""
        except ConnectionResetError:
            pass
        stalled.close()


def test_worker_recycling_under_load_loses_no_request(linear, tmp_path):
    env = {"SURROGATE_MAX_REQUESTS": "100", "SURROGATE_MAX_REQUESTS_JITTER": "50"}
    with _server(linear, tmp_path, **env) as server:
        first = server.workers()
        with LoadRun(server.url, [ONE_ROW], CLIENTS) as load:
            # Each worker recycles after 100 to 150 requests: 1000 requests go through at least
            # 7 worker processes.
            wait_for(lambda: load.count() >= 1000, "1000 requests", server=server)
        outcomes = load.stop()
        served = server.served_by()
        log = server.log()

    assert problems(outcomes) == [], problems(outcomes)[:5]
    pids = {served[o.request_id] for o in outcomes if o.request_id in served}
    assert len(pids - first) >= 4, (pids, first)
    assert log.count("Autorestarting worker after current request") >= 4, log
