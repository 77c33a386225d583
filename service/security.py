"""Access control and CORS, as request hooks.

API keys (``SURROGATE_API_KEY``, one or several): every endpoint needs ``Authorization: Bearer
<key>`` except the health probes, the OpenAPI description and, unless ``SURROGATE_METRICS_AUTH``
is on, ``/metrics``. Unknown paths need a key too, so an anonymous client learns nothing from a
404. Keys are compared in constant time, against every configured key.

CORS (``SURROGATE_CORS_ORIGINS``) is off by default: no ``Access-Control-*`` header is sent, so
browsers refuse cross-origin calls. With origins configured, a matching ``Origin`` gets them and a
preflight ``OPTIONS`` is answered 204 before authentication (browsers send preflights without
credentials).
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, request

from service.errors import Unauthorized
from service.settings import Settings

# Endpoints (Flask endpoint names) open to anyone whatever the keys.
OPEN_ENDPOINTS = frozenset({"v2.live", "v2.ready", "v1_root.live", "openapi.spec"})
CORS_METHODS = "GET, POST, OPTIONS"
CORS_REQUEST_HEADERS = (
    "Authorization, Content-Type, Content-Encoding, Inference-Header-Content-Length, X-Request-ID"
)
CORS_EXPOSED_HEADERS = "Inference-Header-Content-Length, X-Request-ID"
CORS_MAX_AGE = "600"


def install_security(app: Flask, settings: Settings) -> None:
    """Register the CORS and API-key hooks ``settings`` ask for (none by default)."""
    origins = settings.cors_origin_list
    if origins:
        cors = _Cors(origins)
        app.before_request(cors.preflight)
        app.after_request(cors.decorate)
    if settings.api_keys:
        open_endpoints = OPEN_ENDPOINTS if settings.metrics_auth else OPEN_ENDPOINTS | {"metrics"}
        check = KeyCheck(settings.api_keys)

        def hook() -> None:
            if request.endpoint not in open_endpoints:
                check(request.headers.get("Authorization", ""))

        app.before_request(hook)


class KeyCheck:
    """``check(authorization_header)`` raises Unauthorized unless it carries a valid key."""

    def __init__(self, keys: tuple[bytes, ...]) -> None:
        self.keys = keys

    def __call__(self, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("this endpoint needs 'Authorization: Bearer <API key>'")
        if not self.valid(token.strip().encode()):
            raise Unauthorized("invalid API key")

    def valid(self, token: bytes) -> bool:
        # Every key is compared, so the time taken does not tell which key came close.
        matches = [hmac.compare_digest(token, key) for key in self.keys]
        return any(matches)


class _Cors:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(origins)

    def allowed(self) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        return origin if self.any or origin in self.origins else None

    def preflight(self) -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        # Answered here, before the key check; decorate() adds the allow headers (or not).
        response = Response(status=204)
        if self.allowed() is not None:
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_REQUEST_HEADERS
            response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
        return response

    def decorate(self, response: Response) -> Response:
        origin = self.allowed()
        response.vary.add("Origin")
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
        return response
