"""Serving trained surrogate models over the V2 inference protocol.

``gunicorn 'service:create_app()'`` runs it. Importing this package does no work: Flask, ONNX
Runtime and the model repository are touched only when ``create_app`` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.settings import Settings

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["Settings", "create_app"]


def create_app(settings: Settings | None = None) -> Flask:
    """Build the application; see ``service.app.create_app``."""
    from service.app import create_app as _create_app

    return _create_app(settings)
