"""Hostile requests against a real gunicorn server, written byte for byte on a socket.

What only a real server shows: a 413 sent before a huge declared body arrives, paths that no
client library would send (raw ``..``, NUL, non-ASCII, 10k-character lines), chunked bodies, and
the workers' memory when a request declares a huge shape. Every request gets a 4xx with
``{"error": ...}``: those the app sees, and those gunicorn refuses itself (request line or headers
too large, raw NUL or non-ASCII bytes in the request line, a bad Content-Length), with gunicorn's
status codes. Either way the server stays ready, keeps its workers and logs no traceback.
"""

from __future__ import annotations

import http.client
import json
import socket

import numpy as np
import psutil
import pytest

from tests.bundles import make_bundle
from tests.e2e.server import Server, running_server

LIMIT = 4096
HOST = b"Host: test\r\n"
INFER = b"/v2/models/linear/infer"
PREDICT = b"/v1/models/linear:predict"
VALID_INFER = json.dumps({"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32",
                                      "data": [0.5, 1.5]}]}).encode()
# Worker memory growth allowed over the hostile-shape requests: far below what allocating any
# of their declared shapes would take (gigabytes to exabytes).
RSS_GROWTH_BYTES = 32 * 1024 * 1024


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("hostile-models")
    make_bundle(repo, "linear")
    log = tmp_path_factory.mktemp("hostile-server") / "server.log"
    env = {"SURROGATE_MAX_REQUEST_BYTES": str(LIMIT)}
    with running_server(repo, log, workers=2, env=env) as server:
        workers = _workers(server)
        yield server
        assert _workers(server) == workers, server.log()
        assert "Traceback" not in server.log(), server.log()


def _workers(server: Server) -> set[int]:
    return {child.pid for child in psutil.Process(server.process.pid).children()}


def _exchange(server: Server, request: bytes) -> http.client.HTTPResponse:
    """Send ``request`` as is on a new connection and read one response (30 s at most)."""
    host, port = server.address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(request)
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.body = response.read()
    sock.close()
    return response


def _post(path: bytes, body: bytes, headers: bytes = b"") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body)
    return b"POST " + path + b" HTTP/1.1\r\n" + HOST + length + headers + b"\r\n" + body


def _get(path: bytes, headers: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\n" + HOST + headers + b"\r\n"


def _binary(header_length: bytes, size: int = 8, data: bytes = b"\0" * 8) -> bytes:
    header = json.dumps({"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32",
                                     "parameters": {"binary_data_size": size}}]}).encode()
    length = str(len(header)).encode() if header_length == b"auto" else header_length
    return _post(INFER, header + data, b"Inference-Header-Content-Length: " + length + b"\r\n")


def _tensor(shape, data=(1.0, 2.0)) -> bytes:
    return json.dumps({"inputs": [{"name": "inputs", "shape": shape, "datatype": "FP32",
                                   "data": list(data)}]}).encode()


def _assert_ready(server: Server) -> None:
    response = _exchange(server, _post(INFER, VALID_INFER))
    assert response.status == 200, response.body
    assert json.loads(response.body)["outputs"][0]["data"] == [3.5]


# name: (raw request, status, a fragment of the JSON error)
APP_CASES = {
    "deeply-nested-json": (_post(INFER, b"[" * 2000 + b"]" * 2000), 400, "depth limit"),
    "v1-deeply-nested-json": (
        _post(PREDICT, b'{"instances": ' + b"[" * 1500 + b"]" * 1500 + b"}"), 400, "depth limit"
    ),
    "nan-literal": (_post(INFER, _tensor([1, 2]).replace(b"1.0", b"NaN")), 400, "valid JSON"),
    "infinity-literal": (_post(PREDICT, b'{"instances": [[Infinity, 1]]}'), 400, "valid JSON"),
    "negative-dim": (_post(INFER, _tensor([-1, 2])), 400, "two non-negative integers"),
    "zero-width": (_post(INFER, _tensor([1, 0], [])), 400, "2 input columns"),
    "huge-shape-small-data": (_post(INFER, _tensor([10**15, 2])), 400, "values, got 2"),
    "binary-header-length-garbage": (_binary(b"ten"), 400, "'ten' must be an integer"),
    "binary-header-length-past-body": (_binary(b"99999"), 400, "'99999' must be"),
    "binary-size-vs-body": (_binary(b"auto", size=8, data=b"\0" * 4), 400, "4 bytes were sent"),
    "binary-huge-size": (_binary(b"auto", size=8 * 10**12), 400, "8 bytes were sent"),
    "csv": (_post(INFER, VALID_INFER, b"Content-Type: text/csv\r\n"), 415, "text/csv"),
    "xml": (_post(PREDICT, b"<x/>", b"Content-Type: application/xml\r\n"), 415, "'application"),
    "too-large": (_post(INFER, b" " * (LIMIT + 1)), 413, f"exceeds {LIMIT} bytes"),
    "traversal-encoded": (
        _post(b"/v2/models/..%2F..%2Fetc%2Fpasswd/infer", VALID_INFER), 404, "no endpoint"
    ),
    "traversal-raw": (_post(b"/v2/models/../../etc/passwd/infer", VALID_INFER), 404, "no endp"),
    "traversal-dot-dot-name": (_post(b"/v2/models/%2e%2e/infer", VALID_INFER), 404, "'..' not"),
    "load-traversal": (_post(b"/v2/repository/models/..%2F..%2Ftmp/load", b""), 404, "no endp"),
    "load-dot-dot": (_post(b"/v2/repository/models/%2E%2E/load", b""), 404, "not found in the"),
    "unload-traversal": (_post(b"/v2/repository/models/..%2Flinear/unload", b""), 404, "no endp"),
    "v1-traversal": (_post(b"/v1/models/..%2Flinear:predict", b"{}"), 404, "no endpoint"),
    "name-nul-encoded": (_post(b"/v2/models/linear%00/infer", VALID_INFER), 404, "not found"),
    "version-nul-encoded": (_get(b"/v2/models/linear/versions/1%00"), 404, "no version"),
    "version-traversal": (_get(b"/v2/models/linear/versions/..%2F1/ready"), 404, "no endpoint"),
    "version-4000-digits": (_get(b"/v2/models/linear/versions/" + b"9" * 4000), 404, "no vers"),
    "name-unicode-encoded": (_get(b"/v2/models/mod%C3%A8le/ready"), 404, "'mod\u00e8le' not"),
    "name-4000-chars": (_get(b"/v2/models/" + b"a" * 4000 + b"/ready"), 404, "not found"),
    # over gunicorn's default request-line limit (4094), within the service's (8190)
    "name-5000-chars": (_get(b"/v2/models/" + b"a" * 5000 + b"/ready"), 404, "not found"),
}

# Refused by gunicorn before the app, answered in the service's shape by its worker class:
# (raw request, status, a fragment of the error message)
SERVER_CASES = {
    "name-10k-chars": (_get(b"/v2/models/" + b"a" * 10_000 + b"/ready"), 414, "URI Too Long"),
    "version-10k-digits": (_get(b"/v2/models/linear/versions/" + b"9" * 10_000), 414, "8190"),
    "name-raw-nul": (_get(b"/v2/models/a\0b/ready"), 400, "Bad Request"),
    "name-raw-unicode": (_get("/v2/models/mod\u00e8le/ready".encode()), 400, "Bad Request"),
    "header-10k": (_get(b"/v2/health/ready", b"X-Big: " + b"a" * 10_000 + b"\r\n"), 431,
                   "Header Fields Too Large"),
    "negative-content-length": (
        b"POST /v2/models/linear/infer HTTP/1.1\r\n" + HOST + b"Content-Length: -5\r\n\r\n", 400,
        "Invalid HTTP Header: 'CONTENT-LENGTH'",
    ),
}


@pytest.mark.parametrize(("request_bytes", "status", "message"), APP_CASES.values(),
                         ids=APP_CASES)
def test_hostile_request_gets_a_json_4xx(hostile_server, request_bytes, status, message):
    response = _exchange(hostile_server, request_bytes)
    assert response.status == status, response.body
    assert response.getheader("Content-Type") == "application/json"
    payload = json.loads(response.body)
    assert list(payload) == ["error"] and message in payload["error"], payload
    _assert_ready(hostile_server)


@pytest.mark.parametrize(("request_bytes", "status", "message"), SERVER_CASES.values(),
                         ids=SERVER_CASES)
def test_request_gunicorn_refuses_gets_a_json_4xx(hostile_server, request_bytes, status, message):
    response = _exchange(hostile_server, request_bytes)
    assert response.status == status, response.body
    assert response.getheader("Content-Type") == "application/json"
    payload = json.loads(response.body)
    assert list(payload) == ["error"] and message in payload["error"], payload
    _assert_ready(hostile_server)


@pytest.mark.parametrize("path", [INFER, PREDICT, b"/v2/repository/models/linear/load"])
def test_huge_declared_body_is_refused_before_it_is_sent(hostile_server, path):
    # 1 GB declared, one byte sent: the 413 must come without the rest (else the read blocks
    # until the 30 s socket timeout and the test fails).
    request = b"POST " + path + b" HTTP/1.1\r\n" + HOST + b"Content-Length: 1000000000\r\n\r\n{"
    response = _exchange(hostile_server, request)
    assert response.status == 413
    assert json.loads(response.body) == {"error": f"request body exceeds {LIMIT} bytes"}
    _assert_ready(hostile_server)


def test_chunked_body_over_the_limit_gets_413(hostile_server):
    body = json.dumps({"instances": [[0.5, 1.5]] * 500}).encode()
    assert len(body) > LIMIT
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                      for i in range(0, len(body), 1000))
    request = (b"POST " + PREDICT + b" HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
               + chunks + b"0\r\n\r\n")
    response = _exchange(hostile_server, request)
    assert response.status == 413, response.body
    _assert_ready(hostile_server)


def test_chunked_body_within_the_limit_is_read(hostile_server):
    body = json.dumps({"instances": [[0.5, 1.5]]}).encode()
    request = (b"POST " + PREDICT + b" HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    response = _exchange(hostile_server, request)
    assert response.status == 200, response.body
    assert json.loads(response.body) == {"predictions": [[3.5]]}


@pytest.mark.parametrize("content_type", [b"", b"Content-Type: application/json\r\n",
                                          b"Content-Type: application/json; charset=utf-8\r\n"],
                         ids=["missing", "json", "json-charset"])
def test_json_body_is_read_with_or_without_content_type(hostile_server, content_type):
    response = _exchange(hostile_server, _post(INFER, VALID_INFER, content_type))
    assert response.status == 200, response.body


def test_huge_declared_shapes_allocate_nothing(hostile_server):
    requests = [
        _post(INFER, _tensor([10**9, 2])),
        _post(INFER, _tensor([2**62, 2**62])),
        _post(INFER, _tensor([10**6, 10**6])),
        _binary(b"auto", size=8 * 10**9),
        _binary(b"auto", size=2**63),
        _post(PREDICT, b'{"instances": [' + b"[1, 2]," * 400 + b"[1, 2]]}"),
    ]
    for request in requests:  # warm-up: whatever the first hostile requests allocate for good
        _exchange(hostile_server, request)
    before = _rss(hostile_server)
    for _ in range(25):
        for request in requests:
            assert _exchange(hostile_server, request).status in (200, 400)
    growth = _rss(hostile_server) - before
    assert growth < RSS_GROWTH_BYTES, f"workers grew by {growth / 2**20:.1f} MiB"
    _assert_ready(hostile_server)


def _rss(server: Server) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in _workers(server))


def test_binary_huge_shape_is_checked_against_the_body(hostile_server):
    header = json.dumps({"inputs": [{"name": "inputs", "shape": [10**12, 2], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 8}}]}).encode()
    body = header + np.ones(2, "<f4").tobytes()
    request = _post(INFER, body, b"Inference-Header-Content-Length: %d\r\n" % len(header))
    response = _exchange(hostile_server, request)
    assert response.status == 400
    assert "needs 8000000000000 bytes, 8 bytes were sent" in json.loads(response.body)["error"]
