"""Bounded, reproducible schemathesis runs of one operation of the service's OpenAPI description.

Shared by the in-process fuzz tests (WSGI) and the end-to-end ones (real gunicorn over loopback).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.bundles import make_bundle

FUZZ_KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {FUZZ_KEY}"}
# The model the aimed half of the cases names; the description's examples name it too.
TARGET = {"name": "linear", "version": "1"}


def operation_labels() -> list[str]:
    """``"METHOD /path"`` of every operation the description lists."""
    from service.openapi import build_spec

    return [f"{method.upper()} {path}" for path, item in build_spec("0")["paths"].items()
            for method in item if method != "parameters"]


def fuzz_repository(root: Path) -> Path:
    """A repository with ``linear`` (std and jacobian outputs) and a ``broken`` model."""
    make_bundle(root, "linear", extra_outputs=("std",), jacobian=True)
    broken = root / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.onnx").write_bytes(b"not onnx")
    (broken / "model.json").write_text("{}", encoding="utf-8")
    return root


def no_server_error(ctx, response, case) -> None:
    """No 5xx, except the documented 503 of a model that is not ready (``broken``, unloaded)."""
    if response.status_code >= 500 and response.status_code != 503:
        raise AssertionError(f"server error {response.status_code}: {response.text[:200]}")


def _checks() -> list:
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [no_server_error, status_code_conformance, content_type_conformance,
            response_headers_conformance, response_schema_conformance, negative_data_rejection]


# In the training range [0, 2], any finite float32, or one near float32's limit (the outputs
# overflow).
VALUE = st.one_of(st.floats(0, 2), st.floats(allow_nan=False, allow_infinity=False, width=32),
                  st.floats(1e38, 3e38))


def _values(n: int):
    return st.lists(VALUE, min_size=n, max_size=n)


def _options(**members):
    """Objects holding any subset of ``members`` (name -> strategy)."""
    return st.fixed_dictionaries({}, optional=members)


POLICIES = st.sampled_from(["warn", "reject", "ignore"])
OUTPUT = st.fixed_dictionaries(
    {"name": st.sampled_from(["outputs", "std", "jacobian"])},
    optional={"parameters": _options(binary_data=st.booleans())},
)
INFER_BODY = st.integers(0, 4).flatmap(lambda rows: st.fixed_dictionaries(
    {"inputs": st.tuples(st.fixed_dictionaries({
        "name": st.just("inputs"), "shape": st.just([rows, 2]),
        "datatype": st.sampled_from(["FP32", "FP64"]), "data": _values(2 * rows),
    })).map(list)},
    optional={"id": st.text(max_size=8),
              "parameters": _options(binary_data_output=st.booleans(), domain_policy=POLICIES),
              "outputs": st.lists(OUTPUT, max_size=3, unique_by=lambda o: o["name"])},
))
INSTANCE = st.one_of(_values(2), st.fixed_dictionaries({"x0": VALUE, "x1": VALUE}))
PREDICT_BODY = st.fixed_dictionaries(
    {"instances": st.lists(INSTANCE, max_size=4)},
    optional={"parameters": _options(return_std=st.booleans(), return_jacobian=st.booleans(),
                                      domain_policy=POLICIES)},
)
# Requests the target model accepts, bar its range checks: they reach the model and the encoder.
WELL_FORMED = {"infer": INFER_BODY, ":predict": PREDICT_BODY}


def _well_formed(operation):
    names = _target(operation)
    return [
        bodies.flatmap(lambda body: operation.as_strategy(
            path_parameters=names, body=body, media_type="application/json"))
        for suffix, bodies in WELL_FORMED.items() if operation.label.endswith(suffix)
    ]


def _target(operation) -> dict[str, str]:
    return {k: v for k, v in TARGET.items()
            if any(p.name == k for p in operation.path_parameters)}


def _strategy(operation, aimed: bool):
    from schemathesis import GenerationMode

    names = _target(operation)
    fixed = {"path_parameters": names} if aimed and names else {}
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, **fixed),
        operation.as_strategy(GenerationMode.NEGATIVE, **fixed),
    )


def fuzz_operation(schema, label: str, max_examples: int, base_url: str | None = None) -> int:
    """Send ``max_examples`` generated requests (at most) to ``label``; the number sent.

    Half the cases keep the path parameters at ``TARGET``, so bodies reach the model's codec
    instead of stopping at a 404. Raises on the first failed check, with the request to replay.
    """
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    checks = _checks()
    aim = "repository" not in label
    strategy = st.one_of(_strategy(operation, False), _strategy(operation, aim),
                         *operation.get_strategies_from_examples(), *_well_formed(operation))
    sent = []

    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case=strategy)
    def run(case) -> None:
        response = case.call(base_url=base_url, headers=AUTH)
        sent.append(response.status_code)
        case.validate_response(response, checks=checks, headers=AUTH)

    run()
    return len(sent)
