"""The data plane (``service.dataplane.DataPlane``): the inference use case behind both
protocols, with the real registry, codecs and ONNX Runtime sessions."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from service import metrics
from service.codec import V2
from service.codec_v1 import V1
from service.dataplane import DataPlane, check_finite
from service.errors import (
    BadRequest,
    ModelNotFound,
    OutOfDomain,
    ServiceError,
    UnsupportedMediaType,
)
from service.registry import ModelRegistry
from service.settings import ConfigurationError


@pytest.fixture
def plane(settings):
    return DataPlane(ModelRegistry.from_settings(settings), "warn")


def body_of(payload) -> tuple[bytes, None]:
    return orjson.dumps(payload), None


def test_both_protocols_answer_the_same_prediction(plane, bundles):
    x = [[0.5, 0.25], [1.0, 2.0]]
    v2 = plane.infer(V2, "linear", None, lambda: body_of({"inputs": [
        {"name": "inputs", "shape": [2, 2], "datatype": "FP32", "data": x}]}))
    v1 = plane.infer(V1, "linear", "1", lambda: body_of({"instances": x}))
    expected = bundles["linear"].predict(x).ravel()
    assert v2.content_type == v1.content_type == "application/json" and v2.headers is None
    np.testing.assert_allclose(orjson.loads(v2.payload)["outputs"][0]["data"], expected,
                               rtol=1e-6)
    # list instances get list predictions, one value per output
    predictions = orjson.loads(v1.payload)["predictions"]
    np.testing.assert_allclose(np.ravel(predictions), expected, rtol=1e-6)


def test_the_domain_policy_is_the_data_planes_to_check(plane, settings):
    bad = {"instances": [[0.5, 0.25]], "parameters": {"domain_policy": "clip"}}
    with pytest.raises(BadRequest, match="'domain_policy' must be one of warn, reject, ignore"):
        plane.infer(V1, "linear", None, lambda: body_of(bad))
    far = {"instances": [[1e6, 0.25]], "parameters": {"domain_policy": "reject"}}
    with pytest.raises(OutOfDomain, match="outside the training range"):
        plane.infer(V1, "linear", None, lambda: body_of(far))
    strict = DataPlane(ModelRegistry.from_settings(settings), "reject")
    with pytest.raises(OutOfDomain):
        strict.infer(V1, "linear", None, lambda: body_of({"instances": [[1e6, 0.25]]}))
    # A default that is not a policy is the server's misconfiguration, not a bad request.
    with pytest.raises(ConfigurationError, match="domain_policy must be one of") as refused:
        DataPlane(strict.registry, "sometimes")
    assert not isinstance(refused.value, ServiceError) and refused.value.field == "domain_policy"


def test_the_body_is_read_before_the_model_is_looked_up(plane):
    def refuse():
        raise UnsupportedMediaType("Content-Type 'text/csv' is not supported here")

    with pytest.raises(UnsupportedMediaType):
        plane.infer(V2, "no-such-model", None, refuse)
    with pytest.raises(ModelNotFound):
        plane.infer(V2, "no-such-model", None, lambda: body_of({}))


def test_a_request_is_counted_once_with_its_rows(plane):
    from prometheus_client import REGISTRY

    def rows() -> float:
        metrics.flush()  # requests are recorded in the background
        value = REGISTRY.get_sample_value("surrogate_rows_predicted_total",
                                          {"model": "wide", "version": "1"})
        return value or 0.0

    before = rows()
    plane.infer(V1, "wide", None, lambda: body_of({"instances": [[1, 2, 3]] * 5}))
    with pytest.raises(BadRequest):
        plane.infer(V1, "wide", None, lambda: body_of({"instances": [[1, 2]]}))
    assert rows() - before == 5


@pytest.mark.parametrize("rows", [1, 6, 1000])
def test_a_nan_or_inf_anywhere_in_an_output_is_named_by_its_row(rows):
    """Small outputs are checked in Python, large ones in numpy: the same answer."""
    check_finite("y", np.full((rows, 2), np.finfo(np.float32).max, dtype=np.float32))
    for bad in (np.nan, np.inf, -np.inf):
        array = np.zeros((rows, 2), dtype=np.float32)
        array[rows - 1, 1] = bad
        with pytest.raises(BadRequest, match=f"row {rows - 1}: output 'y' is not finite"):
            check_finite("y", array)
