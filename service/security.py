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

# Endpoints (Flask endpoint names) open to anyone whatever the keys; the model browser's pages
# and scripts hold no data (they ask for the key and send it with every API call).
OPEN_ENDPOINTS = frozenset({"v2.live", "v2.ready", "v1_root.live", "openapi.spec",
                            "ui.index", "ui.model_page", "ui.static_file"})
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
        cors = Cors(origins)
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


class Cors:
    """The CORS answer for a request's ``Origin``: pure functions of the header, used by the
    Flask hooks (:func:`install_security`) and the inference front end alike."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(origins)

    def allowed(self, origin: str | None) -> str | None:
        """``origin`` if it may call, else None."""
        if origin is None:
            return None
        return origin if self.any or origin in self.origins else None

    def headers(self, origin: str | None) -> list[tuple[str, str]]:
        """The headers of any response to a request from ``origin`` (``Vary: Origin`` too)."""
        if self.allowed(origin) is None:
            return []
        return [("Access-Control-Allow-Origin", origin),
                ("Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS)]

    @staticmethod
    def is_preflight(method: str, request_method_header: str | None) -> bool:
        return method == "OPTIONS" and request_method_header is not None

    def preflight_headers(self, origin: str | None) -> list[tuple[str, str]]:
        """The further headers of the 204 that answers a preflight from ``origin``."""
        if self.allowed(origin) is None:
            return []
        return [("Access-Control-Allow-Methods", CORS_METHODS),
                ("Access-Control-Allow-Headers", CORS_REQUEST_HEADERS),
                ("Access-Control-Max-Age", CORS_MAX_AGE)]

    def preflight(self) -> Response | None:
        """Flask hook: answer a preflight (before the key check: browsers send none)."""
        if not self.is_preflight(request.method,
                                 request.headers.get("Access-Control-Request-Method")):
            return None
        return Response(status=204, headers=self.preflight_headers(request.headers.get("Origin")))

    def decorate(self, response: Response) -> Response:
        """Flask hook: the CORS headers of every response."""
        response.vary.add("Origin")
        for key, value in self.headers(request.headers.get("Origin")):
            response.headers[key] = value
        return response
