"""Our service with dynamic batching wired in from outside, to measure it before it is wired.

Run as ``gunicorn 'bench.peers.batched:create_app()'`` with ``SURROGATE_BATCH_DELAY_MS`` and
``SURROGATE_BATCH_MAX_ROWS`` set: every model loaded at start runs through a
``service.batching.Batcher`` (models loaded later through the repository API do not).
"""

from __future__ import annotations

from flask import Flask

from service import create_app as create_service
from service.batching import Batcher
from service.settings import Settings


def create_app() -> Flask:
    settings = Settings.from_env()
    app = create_service(settings)
    for entry in app.extensions["surrogate.registry"].entries():
        for status in entry.versions.values():
            if status.model is not None and settings.batch_delay_ms > 0:
                batcher = Batcher(status.model.run, settings.batch_delay_ms / 1000,
                                  settings.batch_max_rows)
                status.model.run = batcher.submit  # the instance attribute shadows the method
    return app
