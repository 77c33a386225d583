"""Our service and the bare peer's request handling in the same gunicorn workers, for
``python -m bench.paired``: paths under ``/bare/`` are answered by ``bench.peers.bare``, every
other path by the service. Run as ``gunicorn 'bench.peers.paired:create_app()'`` with
``SURROGATE_MODEL_REPOSITORY`` naming the repository and ``BENCH_ONNX`` the same model's file.
"""

from __future__ import annotations

from bench.peers import bare

PREFIX = "/bare/"


def create_app():
    from service import create_app as create_service

    ours, peer = create_service(), bare.create_app()

    def app(environ, start_response):
        if environ.get("PATH_INFO", "").startswith(PREFIX):
            return peer(environ, start_response)
        return ours(environ, start_response)

    return app
