"""HTTP plumbing shared by the Flask views and the inference front end (``service.frontend``):
reading bodies, JSON responses, request ids, the access log."""

from __future__ import annotations

import itertools
import logging
import os
import re
import zlib
from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson
from flask import Flask, Response, current_app, g, request

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from service.registry import ModelRegistry
    from service.settings import Settings

access_logger = logging.getLogger("service.access")

REQUEST_ID = "X-Request-ID"
# A client's id is echoed only if it cannot forge log lines or headers.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# Content-Types an infer or predict body is read as JSON under, whatever they claim, as Triton
# reads them: none (tritonclient sends none), JSON's own, text, and the form encoding that
# `curl -d` sends by default (its body is the JSON string curl was given, not a form). Every
# other type names a format the endpoints cannot read and stays 415: multipart (an envelope
# around parts), XML, CSV, HTML, and raw bytes (application/octet-stream) unless the
# Inference-Header-Content-Length header makes the body a binary tensor request.
JSON_TYPES = frozenset({"", "application/json", "text/json", "text/plain",
                        "application/x-www-form-urlencoded"})
BINARY_TYPES = JSON_TYPES | {"application/octet-stream"}
IDENTITY_ENCODINGS = ("", "identity")
# wbits for zlib: 31 = gzip wrapper, 15 = zlib wrapper (what HTTP and tritonclient call deflate).
_ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


def app_registry() -> ModelRegistry:
    """The model registry of the application handling this request."""
    return current_app.extensions["surrogate.registry"]


def app_settings() -> Settings:
    """The settings of the application handling this request."""
    return current_app.extensions["surrogate.settings"]


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status, headers, mimetype="application/json")


def readable(mimetype: str, binary: bool) -> bool:
    """Whether an infer or predict body of this media type (lower case, without parameters) is
    read: as JSON, or as a binary tensor request when ``binary`` (see JSON_TYPES)."""
    return mimetype in (BINARY_TYPES if binary else JSON_TYPES) or mimetype.endswith("+json")


def read_body() -> bytes:
    """The body of the Flask request being handled (a repository call's JSON), read as
    :func:`read_wsgi_body` reads it."""
    body, _ = read_wsgi_body(request.environ, current_app.config["MAX_CONTENT_LENGTH"])
    return body


def read_wsgi_body(environ: dict, limit: int,
                   binary_allowed: bool = False) -> tuple[bytes, str | None]:
    """The body of a WSGI request (decompressed) and, for a binary V2 request, its JSON header
    length: at most ``limit`` bytes before and after decompression, else PayloadTooLarge.

    A missing Content-Type is read as JSON (tritonclient sends none); binary requests are told
    apart by their ``Inference-Header-Content-Length`` header, whatever their Content-Type. A
    body without Content-Length is read to its end when the server decoded a chunked stream
    (``wsgi.input_terminated``, as gunicorn and werkzeug set it), else it is empty.
    """
    header_length = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH") if binary_allowed else None
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if not readable(mimetype, binary=header_length is not None):
        raise UnsupportedMediaType(
            f"Content-Type {mimetype!r} is not supported here; send application/json"
            + (" or a binary tensor request" if binary_allowed else "")
        )
    body = _read(environ, limit)
    encoding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
    if encoding not in IDENTITY_ENCODINGS:
        body = _decompress(body, encoding, limit)
    return body, header_length


def _read(environ: dict, limit: int) -> bytes:
    length, stream = environ.get("CONTENT_LENGTH", "").strip(), environ["wsgi.input"]
    if length:
        if not length.isdigit():
            raise BadRequest(f"Content-Length {length!r:.40} is not a number of bytes")
        if int(length) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        return stream.read(int(length)) if int(length) else b""
    if not environ.get("wsgi.input_terminated"):
        return b""
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    return body


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = _ENCODINGS.get(encoding)
    if wbits is None:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported")
    decompressor = zlib.decompressobj(wbits)
    try:
        data = decompressor.decompress(body, limit)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}") from None
    # Bounded, so a small compressed body cannot expand past the request limit in memory.
    if decompressor.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds {limit} bytes")
    if not decompressor.eof:
        raise BadRequest(f"{encoding} body is truncated")
    return data


def install_request_hooks(app: Flask, access_log: bool = True) -> None:
    """Request ids (``X-Request-ID`` echoed or generated) and, optionally, an access log."""
    app.before_request(_start)
    app.after_request(_finish_and_log if access_log else _finish)


def request_id() -> str:
    return g.get("request_id", "-")


def new_request_id(incoming: str) -> str:
    """The client's ``X-Request-ID`` if it is safe to echo, else a fresh id: 32 hex digits,
    this process's random 64-bit prefix and its request count (unique without a system call
    per request; ``os.urandom`` per request cost about 1 us in process and a ``getrandom``
    call in the server)."""
    if incoming and _SAFE_ID.fullmatch(incoming):
        return incoming
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _new_id_prefix() -> None:
    """A fresh prefix and count for :func:`new_request_id` (at import, and in a forked child,
    which must not repeat its parent's ids)."""
    global _ID_PREFIX, _ID_COUNTER
    _ID_PREFIX, _ID_COUNTER = os.urandom(8).hex(), itertools.count()


_ID_PREFIX, _ID_COUNTER = "", itertools.count()
_new_id_prefix()
os.register_at_fork(after_in_child=_new_id_prefix)


def log_access(environ: dict, status: int, length: int | None, started: float, rid: str) -> None:
    """One ``service.access`` line for a finished request."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    elapsed_ms = (perf_counter() - started) * 1000
    method, path = environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-")
    access_logger.info(
        '%s "%s %s" %d %s %.2fms',
        environ.get("REMOTE_ADDR") or "-", method, path, status,
        length if length is not None else "-", elapsed_ms,
        extra={
            "request_id": rid, "method": method, "path": path, "status": status,
            "duration_ms": round(elapsed_ms, 3),
        },
    )


def _start() -> None:
    g.request_id = new_request_id(request.environ.get("HTTP_X_REQUEST_ID", ""))
    g.started = perf_counter()


def _finish(response: Response) -> Response:
    response.headers[REQUEST_ID] = request_id()
    return response


def _finish_and_log(response: Response) -> Response:
    _finish(response)
    log_access(request.environ, response.status_code, response.content_length,
               g.get("started", perf_counter()), request_id())
    return response
