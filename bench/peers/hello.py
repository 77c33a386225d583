"""Flask's "hello world" under gunicorn: the ceiling of the stack (no body parsing, no model).

Run as ``gunicorn 'bench.peers.hello:create_app()'``.
"""

from __future__ import annotations

from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.route("/", methods=["GET", "POST"])
    def hello() -> str:
        return "Hello, World!"

    @app.get("/v2/health/ready")
    def ready() -> str:
        return "ready"

    return app
