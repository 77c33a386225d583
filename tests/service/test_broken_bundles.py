"""A broken bundle is listed with its reason while every other model keeps serving."""

from __future__ import annotations

import pytest

from service import Settings, create_app
from tests.bundles import make_bundle
from tests.v2 import json_request


def corrupt_onnx(path):
    (path / "model.onnx").write_bytes(b"\x08\x01garbage")


def bad_json(path):
    (path / "model.json").write_text('{"inputs": [')


def missing_card(path):
    (path / "model.json").unlink()


def missing_onnx(path):
    (path / "model.onnx").unlink()


BROKEN = {
    "corrupt-onnx": (corrupt_onnx, {"onnx": {"sha256": None}}, "onnxruntime cannot load"),
    "sha-mismatch": (None, {"onnx": {"sha256": "0" * 64}}, "sha256 of model.onnx"),
    "bad-json": (bad_json, {}, "model.json is not valid JSON"),
    "missing-card": (missing_card, {}, "model.json is missing"),
    "missing-onnx": (missing_onnx, {}, "model.onnx is missing"),
    "card-has-fewer-inputs": (None, {"inputs": [{"name": "x0"}]}, "the card's 1 inputs"),
    "card-has-more-outputs": (
        None, {"outputs": [{"name": "a"}, {"name": "b"}]}, "the card's 2 outputs"
    ),
    "card-input-tensor-renamed": (None, {"tensors": {"input": "x"}}, "expected ['x']"),
    "card-lists-missing-output": (
        None, {"tensors": {"outputs": [{"name": "std"}]}}, "card lists outputs ['std']"
    ),
    "duplicate-input-names": (
        None, {"inputs": [{"name": "a"}, {"name": "a"}]}, "unique non-empty names"
    ),
    "unknown-format": (None, {"format": "surrogate-bundle/9"}, "is not 'surrogate-bundle/1'"),
    "card-not-an-object": (lambda p: (p / "model.json").write_text("[]"), {}, "JSON object"),
}


@pytest.mark.parametrize(("damage", "overrides", "reason"), BROKEN.values(), ids=BROKEN)
def test_broken_bundle_is_unavailable_with_reason(repo, damage, overrides, reason):
    broken = make_bundle(repo, "broken", card_overrides=overrides)
    if damage is not None:
        damage(broken.path)
    client = create_app(Settings(model_repository=repo)).test_client()

    rows = client.post("/v2/repository/index").json
    (row,) = [r for r in rows if r["name"] == "broken"]
    assert row["state"] == "UNAVAILABLE"
    assert reason in row["reason"]
    assert client.get("/v2/health/ready").status_code == 200
    row_request = json_request([1, 2], [1, 2])
    response = client.post("/v2/models/broken/infer", json=row_request)
    assert response.status_code == 503 and reason in response.json["error"]
    assert client.post("/v2/models/linear/infer", json=row_request).status_code == 200
    v1 = {m["name"]: m for m in client.get("/v1/models").json["models"]}
    assert v1["broken"]["state"] == "UNAVAILABLE" and reason in v1["broken"]["reason"]
