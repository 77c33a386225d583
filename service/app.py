"""The application factory: ``gunicorn 'service:create_app()'``.

Each gunicorn worker calls it after the fork, so every worker owns its ONNX Runtime sessions,
and, when ``SURROGATE_CONTROL_DIR`` is set (gunicorn_config sets it), its own thread that applies
the repository loads and unloads made through the other workers (see ``registry``). Without it,
e.g. under Flask's test client, a load or unload acts on this process only.
"""

from __future__ import annotations

from importlib import metadata

from flask import Flask, Response, request

from service import metrics, openapi, views_v1, views_v2
from service.errors import register_error_handlers
from service.frontend import InferenceFrontEnd
from service.logs import configure_logging
from service.registry import ModelRegistry
from service.security import install_security
from service.settings import Settings
from service.ui import install_ui
from service.web import install_request_hooks


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app: load every model of the repository and register the APIs.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to ``Settings.from_env()``.

    Raises
    ------
    service.settings.ConfigurationError
        A setting does not parse, the repository directory is missing (``RepositoryNotFound``)
        or the device is unavailable (``DeviceUnavailable``).
        Bundles that fail to load do not raise; they are listed as UNAVAILABLE.
    """
    settings = settings or Settings.from_env()
    configure_logging(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.extensions["surrogate.settings"] = settings
    app.extensions["surrogate.version"] = _version()
    registry = ModelRegistry.from_settings(settings)
    # Here, after the fork: a thread started in the gunicorn master would not exist in workers.
    registry.start_sync()
    app.extensions["surrogate.registry"] = registry
    install_request_hooks(app, settings.access_log)
    install_security(app, settings)
    register_error_handlers(app)
    app.register_blueprint(views_v2.bp)
    app.register_blueprint(views_v1.bp)
    app.register_blueprint(views_v1.root)
    app.register_blueprint(openapi.bp)
    if settings.ui:
        install_ui(app)
    # Inference (V2 infer, V1 predict) is answered in front of Flask (see service.frontend).
    app.wsgi_app = InferenceFrontEnd(app)  # type: ignore[method-assign]
    app.add_url_rule("/metrics", "metrics", _metrics)
    return app


def _metrics() -> Response:
    body, content_type = metrics.exposition(request.headers.get("Accept"))
    return Response(body, 200, content_type=content_type)


def _version() -> str:
    try:
        return metadata.version("surrogate-serving")
    except metadata.PackageNotFoundError:
        return "0+unknown"
