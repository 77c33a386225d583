"""HTTP plumbing shared by the views: reading bodies, JSON responses, request ids, access log."""

from __future__ import annotations

import logging
import os
import re
import zlib
from time import perf_counter
from typing import Any

import orjson
from flask import Flask, Response, current_app, g, request

from service.codec import HEADER_LENGTH
from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

access_logger = logging.getLogger("service.access")

REQUEST_ID = "X-Request-ID"
# A client's id is echoed only if it cannot forge log lines or headers.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_JSON_TYPES = frozenset({"", "application/json"})
_BINARY_TYPES = frozenset({"", "application/json", "application/octet-stream"})
# wbits for zlib: 31 = gzip wrapper, 15 = zlib wrapper (what HTTP and tritonclient call deflate).
_ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status, headers, mimetype="application/json")


def read_body(binary_allowed: bool = False) -> tuple[bytes, str | None]:
    """The request body (decompressed) and, for a binary V2 request, its JSON header length.

    A missing Content-Type is read as JSON (tritonclient sends none); binary requests are told
    apart by their ``Inference-Header-Content-Length`` header, whatever their Content-Type.
    """
    header_length = request.headers.get(HEADER_LENGTH) if binary_allowed else None
    accepted = _JSON_TYPES if header_length is None else _BINARY_TYPES
    if request.mimetype not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type {request.mimetype!r} is not supported here; send application/json"
            + (" or a binary tensor request" if binary_allowed else "")
        )
    body = request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    # A chunked body has no Content-Length: werkzeug stops reading at the limit without a 413.
    if request.content_length is None and len(body) >= limit and request.input_stream.read(1):
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        body = _decompress(body, encoding, limit)
    return body, header_length


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


def _start() -> None:
    # From the WSGI environ (no Headers lookup), and os.urandom instead of uuid4: ~6 us less.
    incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
    g.request_id = incoming if incoming and _SAFE_ID.fullmatch(incoming) else os.urandom(16).hex()
    g.started = perf_counter()


def _finish(response: Response) -> Response:
    response.headers[REQUEST_ID] = request_id()
    return response


def _finish_and_log(response: Response) -> Response:
    _finish(response)
    if access_logger.isEnabledFor(logging.INFO):
        elapsed_ms = (perf_counter() - g.get("started", perf_counter())) * 1000
        access_logger.info(
            '%s "%s %s" %d %s %.2fms',
            request.remote_addr or "-", request.method, request.path, response.status_code,
            response.content_length if response.content_length is not None else "-",
            elapsed_ms,
            extra={
                "request_id": request_id(), "method": request.method, "path": request.path,
                "status": response.status_code, "duration_ms": round(elapsed_ms, 3),
            },
        )
    return response
