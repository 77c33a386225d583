"""The inference front end (``service.frontend``): the HTTP side of infer and predict, which
Flask never sees, answered as Flask answers its own routes."""

from __future__ import annotations

import io

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from service import create_app
from service.settings import Settings

INFER = "/v2/models/linear/infer"
PREDICT = "/v1/models/linear:predict"
BODY = {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}


@pytest.mark.parametrize("path", [INFER, PREDICT, "/v2/models/linear/versions/1/infer",
                                  "/v1/models/linear/versions/1:predict"])
def test_other_methods_are_answered_as_for_a_post_only_route(client, path):
    options = client.options(path)
    assert options.status_code == 200 and options.get_data() == b""
    assert options.headers["Allow"] == "OPTIONS, POST"
    for method in ("GET", "PUT", "DELETE", "HEAD"):
        response = client.open(path, method=method)
        assert response.status_code == 405, method
        assert response.headers["Allow"] == "OPTIONS, POST"
        assert len(response.headers["X-Request-ID"]) == 32
        if method != "HEAD":
            assert response.get_json() == {
                "error": f"method {method} not allowed at {path} (allowed: OPTIONS, POST)"}


def test_the_key_is_checked_before_the_method(repo):
    client = create_app(Settings(model_repository=repo, api_key="k1")).test_client()
    assert client.get(INFER).status_code == 401
    assert client.options(INFER).status_code == 401
    assert client.get(INFER, headers={"Authorization": "Bearer k1"}).status_code == 405
    assert client.post(INFER, json=BODY, headers={"Authorization": "Bearer k1"}).status_code == 200


def _call(app, path, body: bytes, **environ):
    built = EnvironBuilder(path=path, method="POST", content_type="application/json").get_environ()
    built.update({"wsgi.input": io.BytesIO(body), **environ})
    chunks, status, headers = run_wsgi_app(app, built)
    return int(status.split()[0]), b"".join(chunks), headers


class _Unreadable(io.RawIOBase):
    def read(self, size=-1):
        raise AssertionError("the body was read")


def test_a_declared_length_over_the_limit_is_refused_unread(repo):
    app = create_app(Settings(model_repository=repo, max_request_bytes=100))
    status, body, _ = _call(app, INFER, b"", CONTENT_LENGTH="101", **{"wsgi.input": _Unreadable()})
    assert status == 413 and b"request body exceeds 100 bytes" in body


@pytest.mark.parametrize(("environ", "status", "message"), [
    ({"CONTENT_LENGTH": "12abc"}, 400, b"Content-Length '12abc' is not a number of bytes"),
    # No length and no chunked stream: the body is empty, as werkzeug reads it.
    ({"CONTENT_LENGTH": ""}, 400, b"request body is not valid JSON"),
])
def test_a_body_of_unknown_length(app, environ, status, message):
    code, body, headers = _call(app, INFER, b'{"inputs": []}', **environ)
    assert code == status and message in body
    assert headers["Content-Type"] == "application/json"


def test_a_compressed_body_in_an_unknown_encoding_is_415(client):
    response = client.post(PREDICT, data=b"...", headers={"Content-Encoding": "br"})
    assert response.status_code == 415
    assert response.get_json() == {"error": "Content-Encoding 'br' is not supported"}


def test_request_ids_are_unique_within_a_process_and_across_a_fork():
    import os

    from service.web import new_request_id

    ids = [new_request_id("") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert new_request_id("abc-1") == "abc-1" and new_request_id("bad id\n") != "bad id\n"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, new_request_id("").encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = new_request_id("")
    assert len(child) == 32 and child[:16] != parent[:16] and child not in ids
