"""The service's HTTP errors and the one mapping of every failure to an HTTP response.

:class:`ServiceError` and its subclasses are answers to a request, each with its status. Load
and configuration problems are not: :class:`BundleError` (a bundle that does not load, recorded
as its version's reason) and ``service.settings.ConfigurationError`` (the server cannot start as
configured) are raised where they happen and only the mapping below, should one reach a request
(a repository load on a server whose device or directory went away), answers them as a 500 that
names the problem. Every failure, including werkzeug's routing 404/405 and 413, is answered
with the V2 protocol's error shape ``{"error": "..."}``. Anything unexpected is logged with its
request id and answered as a 500 in the same shape, without internals.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

import orjson

from service.settings import ConfigurationError

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("service.errors")


class ServiceError(Exception):
    """Base of every error the service raises on purpose; ``status`` is its HTTP status and
    ``headers`` go with it."""

    status: ClassVar[int] = 500
    headers: ClassVar[dict[str, str]] = {}


class BadRequest(ServiceError):
    """The request is malformed or does not fit the model."""

    status = 400


class Unauthorized(ServiceError):
    """No valid API key (``Authorization: Bearer <key>``) on a protected endpoint."""

    status = 401
    headers = {"WWW-Authenticate": 'Bearer realm="surrogate-serving"'}


class Forbidden(ServiceError):
    """The action is disabled on this server."""

    status = 403


class OutOfDomain(ServiceError):
    """A row lies outside the model's training range and the domain policy is ``reject``."""

    status = 422


class NotFound(ServiceError):
    status = 404


class ModelNotFound(NotFound):
    """No model of that name in the registry (or, for load, on disk)."""


class VersionNotFound(NotFound):
    """The model exists but not that version."""


class ModelNotReady(ServiceError):
    """The model or version is known but unavailable (failed to load, or unloaded)."""

    status = 503


class ModelLoadFailed(ServiceError):
    """An explicit load request found no version that loads (Triton answers this with 400)."""

    status = 400


class PayloadTooLarge(ServiceError):
    status = 413


class UnsupportedMediaType(ServiceError):
    status = 415


class BundleError(Exception):
    """A bundle on disk is unusable; recorded as the reason of an UNAVAILABLE version. A load
    error, not an HTTP one."""


def error_body(message: str) -> bytes:
    """The protocol's error shape, ``{"error": message}``, as JSON bytes."""
    return orjson.dumps({"error": message})


def log_internal_error(request_id: str) -> str:
    """Log the exception being handled with its request id; the message the client gets."""
    log.exception("unhandled error in request %s", request_id, extra={"request_id": request_id})
    return f"internal server error (request id {request_id})"


def not_allowed(method: str, path: str, allowed) -> str:
    """The message of a 405."""
    return f"method {method} not allowed at {path} (allowed: {', '.join(allowed)})"


def error_reply(exc: Exception, request_id: str) -> tuple[int, bytes, dict[str, str]]:
    """The status, error body and extra headers that answer ``exc`` (anything but werkzeug's
    routing errors): a ServiceError its own; a load or configuration problem a 500 naming it;
    anything else a 500 without internals, logged with its request id."""
    if isinstance(exc, ServiceError):
        return exc.status, error_body(str(exc)), exc.headers
    if isinstance(exc, BundleError | ConfigurationError):
        return 500, error_body(str(exc)), {}
    return 500, error_body(log_internal_error(request_id)), {}


def register_error_handlers(app: Flask) -> None:
    """Map every exception raised while handling a request to a JSON error response."""
    # Imported here because the Flask-free layers (repository, runtime, registry) import this
    # module for the hierarchy alone.
    from flask import Response, g, request
    from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

    def respond(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
        return Response(error_body(message), status, headers, mimetype="application/json")

    def http_exception(exc: HTTPException) -> Response:
        if isinstance(exc, NotFound):
            message = f"no endpoint at {request.path}"
        elif isinstance(exc, MethodNotAllowed):
            message = not_allowed(request.method, request.path, exc.valid_methods or ())
        elif isinstance(exc, RequestEntityTooLarge):
            message = f"request body exceeds {app.config['MAX_CONTENT_LENGTH']} bytes"
        else:
            message = exc.description or exc.name
        # 405 must keep its Allow header.
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        return respond(message, exc.code or 500, headers)

    def other(exc: Exception) -> Response:
        status, body, headers = error_reply(exc, g.get("request_id", "-"))
        return Response(body, status, headers, mimetype="application/json")

    app.register_error_handler(HTTPException, http_exception)
    app.register_error_handler(Exception, other)
