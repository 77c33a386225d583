"""Fuzz every operation of ``/openapi.json`` in-process (WSGI) with schemathesis.

Each operation gets schema-valid and schema-violating requests, half of them aimed at a real
model, checked for: no 5xx, a documented status code, content type and body, and 4xx for what the
description excludes. The run is bounded and derandomized, so CI replays the same cases.
"""

from __future__ import annotations

import copy as copy_module
import functools

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.openapi import build_spec
from tests.fuzzing import (
    AUTH,
    FUZZ_KEY,
    INFER_BODY,
    PREDICT_BODY,
    fuzz_operation,
    fuzz_repository,
    operation_labels,
)

MAX_EXAMPLES = 60


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    from service import create_app, openapi
    from service.settings import Settings

    repo = fuzz_repository(tmp_path_factory.mktemp("fuzz-models"))
    app = create_app(Settings(model_repository=repo, api_key=FUZZ_KEY, access_log=False,
                              max_request_bytes=64 * 1024))
    if "openapi" not in app.blueprints:
        app.register_blueprint(openapi.bp)
    return app


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    import schemathesis

    return schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)


@pytest.fixture(scope="module")
def counts():
    counts: dict[str, int] = {}
    yield counts
    print(f"\nschemathesis WSGI fuzz: {sum(counts.values())} cases over {len(counts)} operations")


@pytest.mark.parametrize("label", operation_labels())
def test_operation_survives_fuzzing(api_schema, fuzz_app, counts, label):
    counts[label] = fuzz_operation(api_schema, label, MAX_EXAMPLES)
    assert counts[label] > 0
    client = fuzz_app.test_client()
    assert client.get("/v2/health/ready").status_code == 200
    # The fuzzer may have unloaded the target model: load it back, and it must predict.
    assert client.post("/v2/repository/models/linear/load", headers=AUTH).status_code == 200
    response = client.post("/v1/models/linear:predict", headers=AUTH,
                           json={"instances": [[0.5, 1.5]]})
    assert response.get_json() == {"predictions": [[3.5]]}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=3),
    max_leaves=4,
)


def _locations(node, path=()):
    """Every path to a member or item of ``node``, deepest first, the root (``()``) last."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, child in items:
        yield from _locations(child, (*path, key))
    yield path


def _mutate(body, path, value, delete):
    if not path:
        return value
    copy = copy_module.deepcopy(body)
    parent = functools.reduce(lambda node, key: node[key], path[:-1], copy)
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copy


@st.composite
def mutated(draw, bodies):
    """A well-formed body with one member or item replaced by any JSON value, or deleted."""
    body = draw(bodies)
    path = draw(st.sampled_from(list(_locations(body))))
    return _mutate(body, path, draw(JSON_VALUES), delete=bool(path) and draw(st.booleans()))


@pytest.mark.parametrize(("path", "schema_name", "bodies"), [
    ("/v2/models/linear/infer", "InferRequest", INFER_BODY),
    ("/v1/models/linear:predict", "PredictRequest", PREDICT_BODY),
], ids=["v2-infer", "v1-predict"])
def test_near_valid_bodies_outside_the_description_get_a_4xx(fuzz_app, path, schema_name,
                                                              bodies):
    """Schemathesis' negative bodies are random, so rarely one mistake away from a valid one:
    here each body is one mutation away from a request the model takes."""
    spec = build_spec("0")
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    )
    client = fuzz_app.test_client()

    @settings(max_examples=300, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(body=mutated(bodies))
    def run(body):
        response = client.post(path, json=body, headers=AUTH)
        assert response.status_code < 500, response.get_data()
        if not validator.is_valid(body):
            assert 400 <= response.status_code < 500, (body, response.get_data())
        if response.status_code >= 400:
            assert list(response.get_json()) == ["error"]

    run()
