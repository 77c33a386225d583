"""The V1 convenience API for people and scripts: model cards and named-input predictions.

``POST /v1/models/<m>:predict`` takes ``{"instances": [{"<input>": value, ...}, ...]}`` and answers
``{"predictions": [{"<output>": value, ...}, ...]}``; lists of instances, and the columnar
``{"inputs": ...}``, are answered in their own layout (see ``service.codec_v1``). Predictions
are answered by ``service.frontend``; the views here serve the cards and the model list.
"""

from __future__ import annotations

from flask import Blueprint, Response

from service.web import app_registry, json_response

bp = Blueprint("v1", __name__, url_prefix="/v1")
# KServe's V1 liveness probe is the server root.
root = Blueprint("v1_root", __name__)


@root.get("/")
def live() -> Response:
    """KServe V1 liveness: ``{"status": "alive"}`` while the process answers."""
    return json_response({"status": "alive"})


@bp.get("/models")
def list_models() -> Response:
    models = []
    for entry in app_registry().entries():
        latest = entry.latest
        models.append({
            "name": entry.name,
            "state": "READY" if latest is not None else "UNAVAILABLE",
            "versions": entry.ready_versions,
            "latest": str(latest.version) if latest is not None else None,
            "inputs": latest.feature_names if latest is not None else [],
            "outputs": latest.target_names if latest is not None else [],
            "reason": entry.why_unavailable() if latest is None else "",
        })
    return json_response({"models": models})


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_card(name: str, version: str | None = None) -> Response:
    """KServe V1 model readiness, and the model card: the card's keys (``name`` among them) and
    ``"ready": true``; a model that is not ready answers 503 as KServe does."""
    model = app_registry().get(name, version)
    return Response(model.card_json[:-1] + b',"ready":true}', 200, mimetype="application/json")
