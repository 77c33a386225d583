"""The inference hot path as plain WSGI, in front of the Flask app.

A prediction request spends most of its web-stack time in Flask itself: the request context,
URL routing, the request and response objects, the hooks. For the two inference endpoints,
``POST /v2/models/<m>[/versions/<v>]/infer`` and ``POST /v1/models/<m>[/versions/<v>]:predict``,
this middleware does the same work directly on the WSGI environ, with the same handlers
(``views_v2.handle_infer``, ``views_v1.handle_predict``), the same registry, metrics, API-key
check, request ids, access log and error shape, and answers without entering Flask.

Anything it does not handle exactly as the Flask views would is passed on to Flask untouched:
other paths and methods, a body without ``Content-Length`` or over the size limit, compressed
bodies, a Content-Type the endpoint cannot read (Flask answers those 413 and 415), and every
request when CORS is configured.
"""

from __future__ import annotations

import re
from functools import lru_cache
from http import HTTPStatus
from time import perf_counter

from flask import Flask

from service.codec import JSON_TYPE
from service.errors import ServiceError, error_body, log_internal_error
from service.metrics import RequestTimer
from service.security import KeyCheck
from service.views_v1 import handle_predict
from service.views_v2 import handle_infer
from service.web import (
    IDENTITY_ENCODINGS,
    REQUEST_ID,
    log_access,
    new_request_id,
    readable,
)

# As Flask's default converter routes them: a segment is anything but "/".
_V2 = re.compile(r"/v2/models/([^/]+?)(?:/versions/([^/]+))?/infer")
_V1 = re.compile(r"/v1/models/([^/]+?)(?:/versions/([^/]+?))?:predict")
_STATUS = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class FastPath:
    """WSGI middleware: ``app.wsgi_app = FastPath(app)``; see the module docstring."""

    def __init__(self, app: Flask) -> None:
        settings = app.extensions["surrogate.settings"]
        self.next = app.wsgi_app
        self.registry = app.extensions["surrogate.registry"]
        self.policy = settings.domain_policy
        self.limit = settings.max_request_bytes
        self.access_log = settings.access_log
        self.check_key = KeyCheck(settings.api_keys) if settings.api_keys else None
        self.enabled = not settings.cors_origin_list

    def __call__(self, environ, start_response):
        route = self._route(environ) if self.enabled else None
        if route is None:
            return self.next(environ, start_response)
        return self._serve(environ, start_response, *route)

    def _route(self, environ) -> tuple[str, str, str | None, int] | None:
        """(protocol, model, version, body length) of a request this path serves, else None."""
        if environ.get("REQUEST_METHOD") != "POST":
            return None
        target = _match(environ.get("PATH_INFO", ""))
        length = environ.get("CONTENT_LENGTH", "")
        if target is None or not length.isdigit() or int(length) > self.limit:
            return None
        encoding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
        if encoding not in IDENTITY_ENCODINGS:
            return None
        mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        protocol, name, version = target
        binary = protocol == "v2" and "HTTP_INFERENCE_HEADER_CONTENT_LENGTH" in environ
        if not readable(mimetype, binary):
            return None
        return protocol, name, version, int(length)

    def _serve(self, environ, start_response, protocol, name, version, length):
        started = perf_counter()
        rid = new_request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        headers: dict[str, str] | None = None
        content_type = JSON_TYPE
        try:
            if self.check_key is not None:
                self.check_key(environ.get("HTTP_AUTHORIZATION", ""))
            with RequestTimer(protocol) as timer:
                body = environ["wsgi.input"].read(length) if length else b""
                model = self.registry.get(name, version)
                timer.bind(model)
                if protocol == "v2":
                    header_length = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
                    payload, headers, content_type, timer.rows = handle_infer(
                        model, body, header_length, self.policy
                    )
                else:
                    payload, timer.rows = handle_predict(model, body, self.policy)
            status = 200
        except ServiceError as exc:
            payload, status, headers = error_body(str(exc)), exc.status, exc.headers
        except Exception:
            payload, status = error_body(log_internal_error(rid)), 500
        response_headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(payload))),
            (REQUEST_ID, rid),
            *(headers or {}).items(),
        ]
        start_response(_STATUS[status], response_headers)
        if self.access_log:
            log_access(environ, status, len(payload), started, rid)
        return [payload]


@lru_cache(maxsize=1024)
def _match(path: str) -> tuple[str, str, str | None] | None:
    """(protocol, model, version) of an inference path, else None; clients repeat their paths."""
    if not path.isascii():  # WSGI carries the path's bytes as latin-1; Flask reads UTF-8
        path = path.encode("latin-1").decode("utf-8", "replace")
    if path.startswith("/v2/"):
        protocol, match = "v2", _V2.fullmatch(path)
    elif path.startswith("/v1/"):
        protocol, match = "v1", _V1.fullmatch(path)
    else:
        return None
    return None if match is None else (protocol, match.group(1), match.group(2))
