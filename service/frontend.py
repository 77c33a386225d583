"""The inference front end: the one code that answers ``POST /v2/models/<m>[/versions/<v>]/infer``
(V2) and ``POST /v1/models/<m>[/versions/<v>]:predict`` (V1), as plain WSGI in front of Flask.

It speaks HTTP only: it routes the path, checks the API key, answers CORS, gives the request its
id, hands the data plane (``service.dataplane``) the protocol's codec and a reader of the body
(``service.web.read_wsgi_body``: sized, chunked or compressed bodies, every Content-Type rule),
and writes the answer, the error shape and the access line. Flask, which serves every other
path, never sees these: its request context, routing, request objects and hooks would cost more
than the prediction (``python -m bench``). Other methods on these paths are answered as Flask
answers a route that takes POST only: ``OPTIONS`` 200 with ``Allow``, anything else 405.
"""

from __future__ import annotations

import re
from functools import lru_cache
from http import HTTPStatus
from time import perf_counter

from flask import Flask

from service.codec import V2
from service.codec_v1 import V1
from service.dataplane import Codec, DataPlane
from service.errors import error_body, error_reply, not_allowed
from service.security import Cors, KeyCheck
from service.web import REQUEST_ID, log_access, new_request_id, read_wsgi_body

__all__ = ["ROUTES", "InferenceFrontEnd"]

# The routes served here, as the OpenAPI description writes them.
ROUTES = (
    ("/v2/models/{name}/infer", "POST"),
    ("/v2/models/{name}/versions/{version}/infer", "POST"),
    ("/v1/models/{name}:predict", "POST"),
    ("/v1/models/{name}/versions/{version}:predict", "POST"),
)
ALLOWED = ("OPTIONS", "POST")
# As Flask's default converter routes them: a segment is anything but "/".
_V2 = re.compile(r"/v2/models/([^/]+?)(?:/versions/([^/]+))?/infer")
_V1 = re.compile(r"/v1/models/([^/]+?)(?:/versions/([^/]+?))?:predict")
_STATUS = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
_JSON, _HTML = "application/json", "text/html; charset=utf-8"


class InferenceFrontEnd:
    """WSGI middleware: ``app.wsgi_app = InferenceFrontEnd(app)``; see the module docstring."""

    def __init__(self, app: Flask) -> None:
        settings = app.extensions["surrogate.settings"]
        self.next = app.wsgi_app
        self.dataplane = DataPlane(app.extensions["surrogate.registry"], settings.domain_policy)
        self.limit = settings.max_request_bytes
        self.access_log = settings.access_log
        self.check_key = KeyCheck(settings.api_keys) if settings.api_keys else None
        self.cors = Cors(settings.cors_origin_list) if settings.cors_origin_list else None

    def __call__(self, environ, start_response):
        route = _match(environ.get("PATH_INFO", ""))
        if route is None:
            return self.next(environ, start_response)
        started = perf_counter()
        rid = new_request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        status, payload, content_type, headers = self._answer(environ, rid, *route)
        response_headers = [("Content-Type", content_type), ("Content-Length", str(len(payload))),
                            (REQUEST_ID, rid), *headers]
        if self.cors is not None:
            response_headers += [("Vary", "Origin"), *self.cors.headers(environ.get("HTTP_ORIGIN"))]
        start_response(_STATUS[status], response_headers)
        if self.access_log:
            log_access(environ, status, len(payload), started, rid)
        return [payload]

    def _answer(self, environ, rid: str, codec: Codec, name: str, version: str | None, path: str):
        """(status, body, content type, extra headers) for one request on an inference path."""
        method = environ.get("REQUEST_METHOD", "")
        preflight = self.cors is not None and self.cors.is_preflight(
            method, environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"))
        if preflight:  # before the key check: browsers send preflights without credentials
            return 204, b"", _HTML, self.cors.preflight_headers(
                environ.get("HTTP_ORIGIN"))
        try:
            if self.check_key is not None:
                self.check_key(environ.get("HTTP_AUTHORIZATION", ""))
            if method != "POST":  # as Flask answers a route that takes POST only
                allow = [("Allow", ", ".join(ALLOWED))]
                if method == "OPTIONS":
                    return 200, b"", _HTML, allow
                return 405, error_body(not_allowed(method, path, ALLOWED)), _JSON, allow
            reply = self.dataplane.infer(
                codec, name, version,
                lambda: read_wsgi_body(environ, self.limit, binary_allowed=codec is V2))
        except Exception as exc:
            status, body, headers = error_reply(exc, rid)
            return status, body, _JSON, list(headers.items())
        return 200, reply.payload, reply.content_type, list((reply.headers or {}).items())


@lru_cache(maxsize=1024)
def _match(path: str) -> tuple[Codec, str, str | None, str] | None:
    """(codec, model, version, decoded path) of an inference path, else None; clients repeat
    their paths."""
    if not path.isascii():  # WSGI carries the path's bytes as latin-1; Flask reads UTF-8
        path = path.encode("latin-1").decode("utf-8", "replace")
    if path.startswith("/v2/"):
        codec, match = V2, _V2.fullmatch(path)
    elif path.startswith("/v1/"):
        codec, match = V1, _V1.fullmatch(path)
    else:
        return None
    return None if match is None else (codec, match.group(1), match.group(2), path)

