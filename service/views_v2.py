"""V2 Open Inference Protocol (REST) views, with Triton's repository extension.

The views only translate HTTP: they read the body, delegate to the registry, and wrap the result
in a response. Errors are raised and mapped in ``errors``. Inference itself
(``/v2/models/<name>[/versions/<version>]/infer``) is answered by ``service.frontend``.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from service import codec, repository
from service.errors import BadRequest, Forbidden, ModelNotReady
from service.registry import READY, UNAVAILABLE, ModelEntry, ModelRegistry
from service.web import app_registry, app_settings, json_response, read_body

bp = Blueprint("v2", __name__, url_prefix="/v2")

SERVER_NAME = "surrogate-serving"
EXTENSIONS = ("binary_tensor_data", "model_repository")


@bp.get("")
def server_metadata() -> Response:
    version = current_app.extensions["surrogate.version"]
    return json_response({"name": SERVER_NAME, "version": version, "extensions": EXTENSIONS})


@bp.get("/health/live")
def live() -> Response:
    return json_response({"live": True})


@bp.get("/health/ready")
def ready() -> Response:
    """200 once the startup scan has tried every bundle; see ``registry`` for the semantics."""
    if app_registry().ready:
        return json_response({"ready": True})
    return json_response({"ready": False, "error": "model repository not loaded yet"}, 503)


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Response:
    registry = app_registry()
    model = registry.get(name, version)
    versions = registry.entry(name).ready_versions
    return json_response({**codec.model_metadata(model), "versions": versions})


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Response:
    try:
        app_registry().get(name, version)
    except ModelNotReady as exc:
        return json_response({"name": name, "ready": False, "error": str(exc)}, exc.status)
    return json_response({"name": name, "ready": True})


@bp.post("/repository/index")
def repository_index() -> Response:
    ready_only = _optional_object().get("ready", False)
    if not isinstance(ready_only, bool):
        raise BadRequest("'ready' must be true or false")
    return json_response(index_rows(app_registry(), ready_only=ready_only))


def index_rows(registry: ModelRegistry, ready_only: bool = False) -> list[dict[str, str]]:
    """Every model version in the registry or on disk, as the repository extension lists it:
    ``{"name", "version", "state", "reason"}`` rows, versions on disk that were never loaded
    included (``not loaded``)."""
    on_disk = repository.scan(registry.root)
    models = {entry.name: entry for entry in registry.entries()}
    rows = []
    for name in sorted(set(on_disk) | set(models)):
        entry = models.get(name)
        known = entry.versions if entry is not None else {}
        new = [ref.version for ref in on_disk.get(name, []) if ref.version not in known]
        if entry is not None and (known or not new):
            rows.extend(entry_rows(entry))
        rows.extend(_row(name, str(v), UNAVAILABLE, "not loaded") for v in new)
        if entry is None and not new:
            rows.append(_row(name, "", UNAVAILABLE, "no version directory"))
    return [row for row in rows if row["state"] == READY or not ready_only]


def entry_rows(entry: ModelEntry) -> list[dict[str, str]]:
    """The repository-index rows of one model: one per version (one in all if none)."""
    if not entry.versions:
        return [_row(entry.name, "", UNAVAILABLE, entry.reason)]
    return [_row(entry.name, str(v), s.state, s.reason) for v, s in sorted(entry.versions.items())]


def _row(name: str, version: str, state: str, reason: str) -> dict[str, str]:
    return {"name": name, "version": version, "state": state, "reason": reason}


@bp.post("/repository/models/<name>/load")
def load(name: str) -> Response:
    _check_repository_control()
    parameters = _optional_object().get("parameters")
    parameters = {} if parameters is None else parameters
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be a JSON object")
    overrides = [key for key in parameters if key == "config" or key.startswith("file:")]
    if overrides:
        raise BadRequest(f"load parameters {overrides} are not supported; models load from disk")
    return _entry_response(app_registry().load(name))


@bp.post("/repository/models/<name>/unload")
def unload(name: str) -> Response:
    _check_repository_control()
    _optional_object()
    return _entry_response(app_registry().unload(name))


def _check_repository_control() -> None:
    if not app_settings().repository_control:
        raise Forbidden(
            "repository load and unload are disabled on this server "
            "(SURROGATE_REPOSITORY_CONTROL=false)"
        )


def _optional_object() -> dict:
    """The JSON object body of a repository request; an empty body counts as ``{}``."""
    body = read_body()
    if not body.strip():
        return {}
    payload = codec.loads(body)
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    return payload


def _entry_response(entry: ModelEntry) -> Response:
    versions = [{k: row[k] for k in ("version", "state", "reason")} for row in entry_rows(entry)]
    return json_response({"name": entry.name, "versions": versions})
