"""The OpenAPI 3.1 description of the service's HTTP API, served at ``GET /openapi.json``.

``build_spec`` writes it as a dict; the blueprint serves it as JSON bytes built once per server
version. The test suite fuzzes the service against it (schemathesis), so every status code,
content type and body shape the service can answer is listed here, and request schemas are no
stricter than the service: what they exclude, the service refuses with a 4xx.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from flask import Blueprint, Response, current_app

from service import bundle_format
from service.codec import DATATYPES as V2_DATATYPES
from service.codec import HEADER_LENGTH
from service.settings import DOMAIN_POLICIES

bp = Blueprint("openapi", __name__)

JSON = "application/json"
BINARY = "application/octet-stream"
# What bundle directories are named; the service answers 404 for any other name.
NAME_PATTERN = f"^{bundle_format.NAME_PATTERN}$"
VERSION_PATTERN = f"^{bundle_format.VERSION_PATTERN}$"
DATATYPES = list(V2_DATATYPES)

DESCRIPTION = """\
Serves trained surrogate models (ONNX Runtime) over the V2 Open Inference Protocol (REST), with
Triton's binary tensor data and model repository extensions, and a V1 convenience API with named
inputs.

A request body is read as JSON without a Content-Type (tritonclient sends none) and under
`application/json`, `*/*+json`, `text/json`, `text/plain` and `application/x-www-form-urlencoded`
(what `curl -d` sends); a Content-Type naming another format (multipart, XML, CSV, HTML, raw
bytes without the binary header) gets 415. `Content-Encoding: gzip` or `deflate`
request bodies are accepted. Bodies over `SURROGATE_MAX_REQUEST_BYTES` (after decompression) get
413. Every error is `{"error": "<message>"}`.

Access control: when the server has `SURROGATE_API_KEY` set, every endpoint with the `bearer`
security requirement needs `Authorization: Bearer <key>` (401 otherwise); the health probes and
this description stay open, and `/metrics` is open unless `SURROGATE_METRICS_AUTH=true`.
Without a key configured, no endpoint needs one.

CORS is off unless `SURROGATE_CORS_ORIGINS` lists origins: then a matching `Origin` gets the
`Access-Control-*` headers and a preflight `OPTIONS` (with `Access-Control-Request-Method`) is
answered 204 on any path.

Binary tensor data (Triton's extension): the body is a JSON header of
`Inference-Header-Content-Length` bytes followed by the raw little-endian tensor bytes; the input
gives their size in `parameters.binary_data_size` instead of `data`. The Content-Type may be
any of those read as JSON, or `application/octet-stream`. Outputs come back binary when
`parameters.binary_data_output` (all outputs) or an output's `parameters.binary_data` is true:
the response is then `application/octet-stream` with the same layout and header.
"""


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> dict[str, str]:
    return _ref("schemas", name)


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return _json(_schema("Error"), description, **extra)


ERROR_RESPONSES = {
    "BadRequest": _error("Malformed request, or one that does not fit the model."),
    "Unauthorized": _error(
        "No valid API key (only when the server has SURROGATE_API_KEY set).",
        headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
    ),
    "Forbidden": _error("Repository load and unload are disabled (SURROGATE_REPOSITORY_CONTROL)."),
    "NotFound": _error("No such model or version (or no endpoint at that path)."),
    "PayloadTooLarge": _error("Body over SURROGATE_MAX_REQUEST_BYTES (after decompression)."),
    "UnsupportedMediaType": _error("Explicit Content-Type or Content-Encoding it cannot read."),
    "OutOfDomain": _error("A row is outside the training range and domain_policy is reject."),
    "NotReady": _error("The model or version is known but not ready (failed to load, unloaded)."),
}

NUMBERS = {"type": "array", "items": {"type": "number"}}
NAMED_VALUES = {"type": "object", "additionalProperties": {"type": "number"}}
# The values of one V1 answer: rows (by name or as lists), or columns by name.
ROW_VALUES = {"type": "array", "items": {"anyOf": [NAMED_VALUES, NUMBERS]}}
VALUES = {"anyOf": [ROW_VALUES, {"type": "object", "additionalProperties": NUMBERS}]}
STRINGS = {"type": "array", "items": {"type": "string"}}
DOMAIN_REPORT = {
    "out_of_domain_rows": {"type": "integer", "minimum": 1,
                           "description": "Rows outside the training range (exact count)."},
    "out_of_domain": {
        "type": "array", "maxItems": 100,
        "description": "The first 100 of them, with the inputs at fault.",
        "items": {"type": "object", "required": ["row", "inputs"], "properties": {
            "row": {"type": "integer", "minimum": 0}, "inputs": STRINGS,
        }},
    },
}
TENSOR_META = {
    "type": "object", "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"}, "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
# Optional request members may also be null, which the service reads as absent.
POLICY = {"enum": [*DOMAIN_POLICIES, None],
          "description": "Overrides SURROGATE_DOMAIN_POLICY for this request."}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {"type": "string"}},
    },
    "ServerMetadata": {
        "type": "object", "required": ["name", "version", "extensions"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                       "extensions": STRINGS},
    },
    "ModelMetadata": {
        "type": "object", "required": ["name", "platform", "versions", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"}, "platform": {"type": "string"},
            "versions": STRINGS,
            "inputs": {"type": "array", "items": TENSOR_META},
            "outputs": {"type": "array", "items": TENSOR_META,
                        "description": "Every output, std and jacobian included."},
            "parameters": {"type": "object", "properties": {
                "inputs": STRINGS, "outputs": STRINGS,
                "domain": {
                    "type": "object", "description": "Training range [min, max] of each input.",
                    "additionalProperties": {
                        "type": "array", "minItems": 2, "maxItems": 2,
                        "items": {"type": ["number", "null"]},
                    },
                },
            }},
        },
    },
    "InferRequest": {
        "type": "object", "required": ["inputs"],
        "properties": {
            "id": {"type": ["string", "null"]},
            "parameters": _nullable({"type": "object", "properties": {
                "binary_data_output": {"type": "boolean"}, "domain_policy": POLICY,
            }}),
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1,
                       "items": _schema("InferInput")},
            "outputs": _nullable({"type": "array", "items": {
                "type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "description": "outputs, std or jacobian."},
                    "parameters": _nullable({"type": "object", "properties": {
                        "binary_data": {"type": "boolean"}}}),
                },
            }}),
        },
    },
    "InferInput": {
        "type": "object", "required": ["name", "shape", "datatype"],
        "description": "The model's one input tensor, [rows, inputs]; `data` (row-major, flat "
                       "or nested) or, in a binary request, parameters.binary_data_size.",
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "minItems": 2, "maxItems": 2,
                      "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": DATATYPES},
            "data": {"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "array"}]}},
            "parameters": _nullable({"type": "object", "properties": {
                "binary_data_size": {"type": ["integer", "null"], "minimum": 0},
            }}),
        },
    },
    "InferResponse": {
        "type": "object", "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "id": {"type": "string"}, "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "outputs": {"type": "array", "items": {**TENSOR_META, "properties": {
                **TENSOR_META["properties"], "data": NUMBERS,
                "parameters": {"type": "object", "properties": {
                    "binary_data_size": {"type": "integer", "minimum": 0}}},
            }}},
            "parameters": {"type": "object", "properties": DOMAIN_REPORT},
        },
    },
    "IndexEntry": {
        "type": "object", "required": ["name", "version", "state", "reason"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                       "state": {"type": "string", "enum": ["READY", "UNAVAILABLE"]},
                       "reason": {"type": "string"}},
    },
    "RepositoryModel": {
        "type": "object", "required": ["name", "versions"],
        "properties": {"name": {"type": "string"}, "versions": {"type": "array", "items": {
            "type": "object", "required": ["version", "state", "reason"],
            "properties": {"version": {"type": "string"}, "state": {"type": "string"},
                           "reason": {"type": "string"}},
        }}},
    },
    "V1Models": {
        "type": "object", "required": ["models"],
        "properties": {"models": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "state", "versions", "latest", "inputs", "outputs", "reason"],
            "properties": {
                "name": {"type": "string"}, "state": {"type": "string"}, "versions": STRINGS,
                "latest": {"type": ["string", "null"]}, "inputs": STRINGS, "outputs": STRINGS,
                "reason": {"type": "string"},
            },
        }}},
    },
    "ModelCard": {
        "type": "object", "required": ["name", "ready", "inputs", "outputs"],
        "description": "KServe V1 model readiness (``name``, ``ready``) and the bundle's "
                       "model.json: inputs with units and training range, outputs, training "
                       "settings and metrics.",
        "properties": {"name": {"type": "string"}, "ready": {"const": True},
                       "inputs": {"type": "array"}, "outputs": {"type": "array"}},
    },
    "PredictRequest": {
        "type": "object",
        "description": "Rows under ``instances`` (answered under ``predictions``) or columns or "
                       "tensor rows under ``inputs`` (answered under ``outputs``), one of the "
                       "two; each answer keeps the request's layout.",
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
        "properties": {
            "instances": {"type": "array", "items": {"anyOf": [
                {**NAMED_VALUES, "description": "Every input of the model by name."},
                {**NUMBERS, "description": "The inputs in the model card's order."},
            ]}},
            "inputs": {"anyOf": [
                {"type": "object", "additionalProperties": NUMBERS,
                 "description": "One list per input, all of one length."},
                {"type": "array", "items": NUMBERS,
                 "description": "Rows of the inputs in the model card's order."},
            ]},
            "parameters": _nullable({
                "type": "object", "additionalProperties": False, "properties": {
                    "return_std": {"type": "boolean"}, "return_jacobian": {"type": "boolean"},
                    "domain_policy": POLICY,
                }}),
        },
    },
    "PredictResponse": {
        "type": "object",
        "description": "``predictions`` for ``instances``, ``outputs`` for ``inputs``; "
                       "``std`` laid out as they are; ``jacobian`` per row "
                       "{output: {input: d}} or [[d output / d input]], by columns "
                       "{output: {input: [d, ...]}}.",
        "properties": {
            "predictions": ROW_VALUES,
            "outputs": VALUES,
            "std": VALUES,
            "jacobian": {"anyOf": [
                {"type": "array", "items": {"anyOf": [
                    {"type": "object", "additionalProperties": NAMED_VALUES},
                    {"type": "array", "items": NUMBERS}]}},
                {"type": "object", "additionalProperties": {
                    "type": "object", "additionalProperties": NUMBERS}},
            ]},
            **DOMAIN_REPORT,
        },
    },
}

EXAMPLE_INFER = {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32",
                             "data": [0.5, 1.5]}]}
EXAMPLE_PREDICT = {"instances": [{"x0": 0.5, "x1": 1.5}, [1.0, 1.0]]}
PARAMETERS = {
    "name": {"name": "name", "in": "path", "required": True, "example": "linear",
             "description": "Model name. Bundle directories are named as the pattern says; "
                            "any other name is answered 404.",
             "schema": {"type": "string", "pattern": NAME_PATTERN}},
    "version": {"name": "version", "in": "path", "required": True, "example": "1",
                "description": "Model version, a positive integer; anything else is a 404.",
                "schema": {"type": "string", "pattern": VERSION_PATTERN}},
    "headerLength": {"name": HEADER_LENGTH, "in": "header", "required": False,
                     "description": "Binary requests only: length of the JSON header.",
                     "schema": {"type": "integer", "minimum": 1}},
}
BEARER = [{"bearer": []}]
OPEN: list[dict[str, list]] = []


ERROR_CODES = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound",
                "413": "PayloadTooLarge", "415": "UnsupportedMediaType", "422": "OutOfDomain",
                "503": "NotReady"}
BODY_ERRORS = ("400", "401", "413", "415")


def _operation(summary: str, responses: dict[str, Any], *, errors: tuple[str, ...] = (),
               body: dict[str, Any] | None = None, security: list | None = None,
               parameters: tuple[str, ...] = (), tag: str = "v2") -> dict[str, Any]:
    for code in errors:
        responses[code] = _ref("responses", ERROR_CODES[code])
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if body is not None:
        operation["requestBody"] = body
    operation["security"] = BEARER if security is None else security
    if parameters:
        operation["parameters"] = [_ref("parameters", p) for p in parameters]
    return operation


def _optional_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": False, "description": "Optional; an empty body counts as {}.",
            "content": {JSON: {"schema": schema}}}


def _per_model(prefix: str, suffix: str, method: str, operation: dict) -> dict[str, Any]:
    """``operation`` at ``<prefix>/{name}<suffix>`` and at its ``/versions/{version}`` form."""
    name, version = _ref("parameters", "name"), _ref("parameters", "version")
    return {
        f"{prefix}/{{name}}{suffix}": {"parameters": [name], method: operation},
        f"{prefix}/{{name}}/versions/{{version}}{suffix}": {"parameters": [name, version],
                                                          method: operation},
    }


def _health_paths() -> dict[str, Any]:
    def state(key: str, value: bool) -> dict[str, Any]:
        return {"type": "object", "required": [key], "properties": {key: {"const": value}}}

    not_ready = state("ready", False)
    not_ready["required"].append("error")
    not_ready["properties"]["error"] = {"type": "string"}
    return {
        "/v2/health/live": {"get": _operation("Liveness", {
            "200": _json(state("live", True), "The process answers.")}, security=OPEN)},
        "/v2/health/ready": {"get": _operation("Readiness", {
            "200": _json(state("ready", True), "Every bundle has been tried."),
            "503": _json(not_ready, "The startup scan has not finished."),
        }, security=OPEN)},
        "/": {"get": _operation("Liveness (KServe V1)", {
            "200": _json({"type": "object", "required": ["status"],
                          "properties": {"status": {"const": "alive"}}}, "The process answers."),
        }, security=OPEN, tag="v1")},
    }


def _model_paths() -> dict[str, Any]:
    model_ready = _json({"type": "object", "required": ["name", "ready"], "properties": {
        "name": {"type": "string"}, "ready": {"type": "boolean"}, "error": {"type": "string"}}},
        "Whether the model (version) can serve.")
    infer = _operation(
        "Run the model", {"200": {
            "description": "The outputs, JSON or (when asked) binary.",
            "headers": {HEADER_LENGTH: {"schema": {"type": "integer"},
                                        "description": "Binary responses: JSON header length."}},
            "content": {JSON: {"schema": _schema("InferResponse")},
                        BINARY: {"schema": {"type": "string", "format": "binary"}}},
        }},
        errors=(*BODY_ERRORS, "404", "422", "503"), parameters=("headerLength",),
        body={"required": True, "content": {
            JSON: {"schema": _schema("InferRequest"), "example": EXAMPLE_INFER},
            BINARY: {"schema": {"type": "string", "format": "binary"}},
        }},
    )
    predict = _operation(
        "Predict named instances", {"200": _json(_schema("PredictResponse"), "Predictions")},
        errors=(*BODY_ERRORS, "404", "422", "503"), tag="v1",
        body={"required": True, "content": {
            JSON: {"schema": _schema("PredictRequest"), "example": EXAMPLE_PREDICT}}},
    )
    return {
        **_per_model("/v2/models", "", "get", _operation(
            "Model metadata", {"200": _json(_schema("ModelMetadata"), "Metadata")},
            errors=("401", "404", "503"))),
        **_per_model("/v2/models", "/ready", "get", _operation(
            "Model readiness", {"200": model_ready, "503": model_ready}, errors=("401", "404"))),
        **_per_model("/v2/models", "/infer", "post", infer),
        "/v1/models": {"get": _operation("Models with their inputs and outputs", {
            "200": _json(_schema("V1Models"), "Every model")}, errors=("401",), tag="v1")},
        **_per_model("/v1/models", "", "get", _operation(
            "Model readiness and card", {"200": _json(_schema("ModelCard"), "model.json")},
            errors=("401", "404", "503"), tag="v1")),
        **_per_model("/v1/models", ":predict", "post", predict),
    }


def _repository_paths() -> dict[str, Any]:
    name = [_ref("parameters", "name")]
    changed = {"200": _json(_schema("RepositoryModel"), "The model's versions now.")}
    errors = (*BODY_ERRORS, "403", "404")
    load_body = _optional_body({"type": "object", "properties": {"parameters": {
        "type": "object", "description": "config and file: overrides are refused (400)."}}})
    return {
        "/v2/repository/index": {"post": _operation(
            "Every model version on disk or loaded, with its state",
            {"200": _json({"type": "array", "items": _schema("IndexEntry")}, "The index")},
            errors=BODY_ERRORS, body=_optional_body({"type": "object", "properties": {
                "ready": {"type": "boolean", "description": "Only READY versions."}}}))},
        "/v2/repository/models/{name}/load": {"parameters": name, "post": _operation(
            "(Re)load a model's versions from disk, in every worker", changed,
            errors=errors, body=load_body)},
        "/v2/repository/models/{name}/unload": {"parameters": name, "post": _operation(
            "Stop serving a model, in every worker", dict(changed), errors=errors,
            body=_optional_body({"type": "object"}))},
    }


def _ops_paths() -> dict[str, Any]:
    text = {"schema": {"type": "string"}}
    return {
        "/v2": {"get": _operation("Server metadata", {
            "200": _json(_schema("ServerMetadata"), "Name, version, extensions")},
            errors=("401",))},
        "/metrics": {"get": _operation("Prometheus metrics", {"200": {
            "description": "Text exposition (OpenMetrics if the Accept header asks).",
            "content": {"text/plain": text, "application/openmetrics-text": text},
        }}, errors=("401",), security=[{}, *BEARER], tag="ops")},
        "/openapi.json": {"get": _operation("This description", {
            "200": _json({"type": "object"}, "OpenAPI 3.1")}, security=OPEN, tag="ops")},
    }


def _ui_paths() -> dict[str, Any]:
    """The model browser (service.ui; absent with SURROGATE_UI=false): its pages and files hold
    no model data and are open; the plots are model data."""
    html = {"200": {"description": "The page (its script reads the data from the API).",
                    "content": {"text/html": {"schema": {"type": "string"}}}}}
    static = {"name": "file", "in": "path", "required": True, "example": "app.js",
              "schema": {"type": "string", "enum": ["app.js", "style.css"]}}
    plot = {"name": "plot", "in": "path", "required": True, "example": "parity.png",
            "schema": {"type": "string", "enum": ["convergence.png", "parity.png"]}}
    return {
        "/ui/": {"get": _operation("The model browser: every model", html, security=OPEN,
                                   tag="ui")},
        "/ui/models/{name}": {"parameters": [_ref("parameters", "name")], "get": _operation(
            "The model browser: one model", dict(html), errors=("404",), security=OPEN,
            tag="ui")},
        "/ui/static/{file}": {"parameters": [static], "get": _operation(
            "The browser's script and style", {"200": {"description": "The file.", "content": {
                "text/javascript": {"schema": {"type": "string"}},
                "text/css": {"schema": {"type": "string"}}}}},
            errors=("404",), security=OPEN, tag="ui")},
        "/ui/plots/{name}/{version}/{plot}": {
            "parameters": [_ref("parameters", "name"), _ref("parameters", "version"), plot],
            "get": _operation("A plot of the model's bundle", {"200": {
                "description": "The PNG written at training.",
                "content": {"image/png": {"schema": {"type": "string",
                                                     "contentEncoding": "binary"}}}}},
                errors=("401", "404", "503"), tag="ui")},
    }


def build_spec(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the service, for server version ``version``."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "surrogate-serving", "version": version, "description": DESCRIPTION,
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "tags": [{"name": "v2", "description": "V2 Open Inference Protocol"},
                 {"name": "v1", "description": "V1 convenience API, named inputs"},
                 {"name": "ops", "description": "Operations"},
                 {"name": "ui", "description": "The model browser (SURROGATE_UI)"}],
        "paths": {**_ops_paths(), **_health_paths(), **_model_paths(), **_repository_paths(),
                  **_ui_paths()},
        "components": {
            "schemas": SCHEMAS,
            "responses": ERROR_RESPONSES,
            "parameters": PARAMETERS,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "An API key from SURROGATE_API_KEY; enforced only when it is set.",
            }},
        },
    }


@lru_cache(maxsize=4)
def spec_bytes(version: str) -> bytes:
    """``build_spec(version)`` as JSON, built once per version."""
    return orjson.dumps(build_spec(version))


@bp.get("/openapi.json")
def spec() -> Response:
    return Response(spec_bytes(current_app.extensions["surrogate.version"]), 200,
                    mimetype="application/json")
