"""``GET /openapi.json``: a valid OpenAPI 3.1 document that describes every route the app has."""

from __future__ import annotations

import re

import jsonschema
import pytest

from service import openapi
from service.openapi import build_spec
from tests.v2 import json_request

KEY = "test-key"
PATH_PARAMETERS = {"name": "linear", "version": "1", "file": "app.js", "plot": "parity.png"}
BODIES = {"/v2/models/{name}/infer": json_request([1.0, 2.0], [1, 2]),
          "/v1/models/{name}:predict": {"instances": [[1.0, 2.0]]}}


def _with_openapi(app):
    if "openapi" not in app.blueprints:
        app.register_blueprint(openapi.bp)
    return app


@pytest.fixture
def app(settings):
    from service import create_app

    return _with_openapi(create_app(settings))


@pytest.fixture
def keyed_client(settings):
    from service import create_app

    return _with_openapi(create_app(settings.replace(api_key=f"other,{KEY}"))).test_client()


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method.upper(), operation


OPERATIONS = list(_operations(build_spec("0")))
OPERATION_IDS = [f"{method} {path}" for path, method, _ in OPERATIONS]


def test_spec_is_valid_openapi_with_valid_schemas():
    import schemathesis

    spec = build_spec("1.2.3")
    schemathesis.openapi.from_dict(spec).validate()
    for schema in spec["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    assert spec["openapi"].startswith("3.1") and spec["info"]["version"] == "1.2.3"


def test_validation_catches_a_broken_spec():
    import schemathesis

    spec = build_spec("1")
    spec["paths"]["/v2"]["get"]["responses"] = "none"
    with pytest.raises(Exception, match="responses"):
        schemathesis.openapi.from_dict(spec).validate()


def test_served_spec_has_the_server_version_and_is_built_once(client, app):
    first = client.get("/openapi.json")
    assert first.status_code == 200 and first.mimetype == "application/json"
    assert first.get_json() == build_spec(app.extensions["surrogate.version"])
    hits = openapi.spec_bytes.cache_info().hits
    assert client.get("/openapi.json").get_data() == first.get_data()
    assert openapi.spec_bytes.cache_info().hits == hits + 1


def test_every_route_of_the_app_is_described(app):
    spec = build_spec("0")
    described = {(path, method) for path, method, _ in _operations(spec)}
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules() if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    # Inference is answered in front of Flask (service.frontend), which lists its own routes.
    from service.frontend import ROUTES

    assert routes | set(ROUTES) == described


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=OPERATION_IDS)
def test_described_security_is_what_the_server_enforces(keyed_client, path, method, operation):
    url = path.format(**PATH_PARAMETERS)
    body = BODIES.get(path.replace("/versions/{version}", ""))
    anonymous = keyed_client.open(url, method=method, json=body)
    keyed = keyed_client.open(url, method=method, json=body,
                              headers={"Authorization": f"Bearer {KEY}"})
    required = operation["security"] == [{"bearer": []}]
    assert (anonymous.status_code == 401) is required, anonymous.get_data()
    if required:
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        assert "401" in operation["responses"]
    assert keyed.status_code in {int(code) for code in operation["responses"]}, keyed.get_data()


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=OPERATION_IDS)
def test_every_error_response_has_the_error_shape(path, method, operation):
    spec = build_spec("0")
    for code, response in operation["responses"].items():
        if code.startswith("4"):
            assert response == {"$ref": f"#/components/responses/{openapi.ERROR_CODES[code]}"}
            resolved = spec["components"]["responses"][openapi.ERROR_CODES[code]]
            assert resolved["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"}
