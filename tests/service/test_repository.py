"""The repository extension (index, load, unload) and the disk layout rules."""

from __future__ import annotations

import shutil
import threading

import pytest

from service import control
from service.errors import ModelNotFound, ModelNotReady
from service.registry import ModelRegistry
from service.repository import parse_version
from service.views_v2 import index_rows
from tests.bundles import make_bundle
from tests.v2 import json_request

ROW = json_request([1.0, 1.0], [1, 2])


def infer_linear(client, version: str | None = None):
    path = "/v2/models/linear" + (f"/versions/{version}" if version else "") + "/infer"
    return client.post(path, json=ROW)


def index(client, **body):
    response = client.post("/v2/repository/index", json=body or None)
    assert response.status_code == 200
    return {(row["name"], row["version"]): (row["state"], row["reason"]) for row in response.json}


def test_index_lists_every_version_with_state(client):
    assert index(client) == {("linear", "1"): ("READY", ""), ("wide", "1"): ("READY", "")}


def test_new_version_is_listed_then_swapped_in_by_load(client, repo):
    make_bundle(repo, "linear", version=2, weights=([[10.0], [10.0]], [0.0]))
    assert index(client)[("linear", "2")] == ("UNAVAILABLE", "not loaded")
    assert infer_linear(client).json["model_version"] == "1"

    response = client.post("/v2/repository/models/linear/load")
    assert response.status_code == 200
    assert response.json == {
        "name": "linear",
        "versions": [
            {"version": "1", "state": "READY", "reason": ""},
            {"version": "2", "state": "READY", "reason": ""},
        ],
    }
    latest = infer_linear(client).json
    assert (latest["model_version"], latest["outputs"][0]["data"]) == ("2", [20.0])
    assert infer_linear(client, "1").json["outputs"][0]["data"] == [3.0]
    assert client.get("/v2/models/linear").json["versions"] == ["1", "2"]


def test_broken_new_version_leaves_the_old_one_serving(client, repo):
    broken = make_bundle(repo, "linear", version=2)
    (broken.path / "model.onnx").write_bytes(b"not an onnx file")

    response = client.post("/v2/repository/models/linear/load")
    assert response.status_code == 200
    state, reason = index(client)[("linear", "2")]
    assert state == "UNAVAILABLE" and "sha256" in reason
    assert infer_linear(client).json["model_version"] == "1"
    failed = infer_linear(client, "2")
    assert failed.status_code == 503 and "sha256" in failed.json["error"]


def test_load_keeps_unchanged_versions_loaded(app, client):
    registry = app.extensions["surrogate.registry"]
    before = registry.get("linear", 1)
    client.post("/v2/repository/models/linear/load")
    assert registry.get("linear", 1) is before


def test_load_drops_versions_removed_from_disk(client, repo):
    make_bundle(repo, "linear", version=2)
    client.post("/v2/repository/models/linear/load")
    shutil.rmtree(repo / "linear" / "2")
    client.post("/v2/repository/models/linear/load")
    assert client.get("/v2/models/linear").json["versions"] == ["1"]


def test_unload_then_load(client):
    response = client.post("/v2/repository/models/linear/unload")
    assert response.status_code == 200
    unloaded = {"version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
    assert response.json["versions"] == [unloaded]
    assert infer_linear(client).status_code == 503
    assert client.get("/v2/models/linear/ready").status_code == 503
    assert client.get("/v2/health/ready").status_code == 200
    assert index(client, ready=True) == {("wide", "1"): ("READY", "")}

    assert client.post("/v2/repository/models/linear/load").status_code == 200
    assert infer_linear(client).status_code == 200


def test_in_flight_model_survives_unload(app, client):
    import numpy as np

    model = app.extensions["surrogate.registry"].get("linear")
    client.post("/v2/repository/models/linear/unload")
    assert model.run(np.ones((1, 2), dtype=np.float32))[0].tolist() == [[3.0]]


def test_new_model_directory_is_indexed_and_loadable(client, repo):
    make_bundle(repo, "fresh", n_inputs=1)
    assert index(client)[("fresh", "1")] == ("UNAVAILABLE", "not loaded")
    assert client.post("/v2/models/fresh/infer", json=json_request([1], [1, 1])).status_code == 404
    assert client.post("/v2/repository/models/fresh/load").status_code == 200
    assert client.post("/v2/models/fresh/infer", json=json_request([1], [1, 1])).status_code == 200


def test_load_of_a_model_gone_from_disk_forgets_it(client, repo):
    shutil.rmtree(repo / "wide")
    assert client.post("/v2/repository/models/wide/load").status_code == 404
    assert client.get("/v2/models/wide").status_code == 404
    assert ("wide", "1") not in index(client)


def test_load_failure_of_every_version_is_400_and_recorded(client, repo):
    (repo / "linear" / "1" / "model.json").write_text("{")
    response = client.post("/v2/repository/models/linear/load")
    assert response.status_code == 400
    assert "version 1: model.json is not valid JSON" in response.json["error"]
    assert index(client)[("linear", "1")][0] == "UNAVAILABLE"


def test_layout_rules(tmp_path):
    from service.repository import scan

    root = tmp_path / "models"
    make_bundle(root, "good", version=3)
    for ignored in ("good/.tmp-4", "good/01", "good/0", "good/latest", ".hidden/1", "bad name/1"):
        (root / ignored).mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "README.md").write_text("not a model")
    found = {name: [ref.version for ref in refs] for name, refs in scan(root).items()}
    assert found == {"good": [3], "empty": []}


def test_model_without_versions_is_listed_unavailable(client, repo):
    (repo / "empty").mkdir()
    assert index(client)[("empty", "")] == ("UNAVAILABLE", "no version directory")


@pytest.mark.parametrize(
    ("text", "version"),
    [("1", 1), ("12", 12), ("0", None), ("01", None), ("-1", None), ("v2", None), ("١", None)],
)
def test_parse_version(text, version):
    assert parse_version(text) == version


def test_inference_never_fails_while_versions_are_rewritten_and_reloaded(app, repo):
    statuses: list[int] = []

    def infer():
        client = app.test_client()
        statuses.extend(infer_linear(client).status_code for _ in range(60))

    def reload():
        client = app.test_client()
        for k in range(8):
            # Rewritten in place (not atomically): a load may catch it half-written, which
            # must only make version 2 UNAVAILABLE, never break requests served by version 1.
            make_bundle(repo, "linear", version=2, weights=([[k], [k]], [0.0]))
            client.post("/v2/repository/models/linear/load")
            client.post("/v2/repository/index")

    threads = [threading.Thread(target=infer) for _ in range(4)]
    threads.append(threading.Thread(target=reload))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 240


def test_load_and_unload_reach_a_registry_sharing_the_control_dir(settings, repo, tmp_path):
    # Two registries stand for two gunicorn workers; ``sync`` is what each worker's thread runs.
    shared = settings.replace(control_dir=tmp_path / "control")
    shared.control_dir.mkdir()
    first, second = ModelRegistry.from_settings(shared), ModelRegistry.from_settings(shared)
    make_bundle(repo, "linear", version=2, weights=([[10.0], [10.0]], [0.0]))

    assert first.load("linear").ready_versions == ("1", "2")
    assert second.entry("linear").ready_versions == ("1",)
    assert first.sync() == []  # its own action is not applied twice
    assert second.sync() == ["linear"]
    assert second.entry("linear").ready_versions == ("1", "2")
    assert second.sync() == []

    second.unload("linear")
    assert first.sync() == ["linear"]
    with pytest.raises(ModelNotReady):
        first.get("linear")


def test_a_new_registry_catches_up_and_unknown_names_are_not_recorded(settings, tmp_path):
    # A poll interval the test never reaches: the threads started here stay asleep.
    shared = settings.replace(control_dir=tmp_path / "control", control_poll_seconds=3600)
    worker = ModelRegistry.from_settings(shared)
    worker.start_sync()
    worker.unload("wide")
    with pytest.raises(ModelNotFound):
        worker.load("nosuchmodel")
    assert sorted(path.name for path in shared.control_dir.iterdir()) == ["wide.json"]

    restarted = ModelRegistry.from_settings(shared)
    assert restarted.start_sync() is not None  # applies the recorded unload before serving
    with pytest.raises(ModelNotReady):
        restarted.get("wide")


def test_a_restarted_worker_serves_what_its_siblings_serve_not_what_is_new_on_disk(
    settings, repo, tmp_path
):
    shared = settings.replace(control_dir=tmp_path / "control", control_poll_seconds=3600)
    shared.control_dir.mkdir()
    assert control.snapshot(shared.control_dir, repo) == {"linear": (1,), "wide": (1,)}
    first = ModelRegistry.from_settings(shared)
    first.unload("wide")
    make_bundle(repo, "linear", version=2, weights=([[10.0], [10.0]], [0.0]))
    make_bundle(repo, "fresh", version=1)

    restarted = ModelRegistry.from_settings(shared)  # after a crash or a recycle
    assert restarted.entry("linear").ready_versions == ("1",)
    with pytest.raises(ModelNotReady):
        restarted.get("wide")
    with pytest.raises(ModelNotFound):
        restarted.get("fresh")
    assert restarted.sync() == []  # what it read at start counts as applied
    rows = {(r["name"], r["version"]): r["reason"] for r in index_rows(restarted)}
    assert rows[("linear", "2")] == rows[("fresh", "1")] == "not loaded"

    first.load("linear")
    first.load("fresh")
    assert restarted.sync() == ["fresh", "linear"]
    assert restarted.entry("linear").ready_versions == ("1", "2")
    assert restarted.get("fresh").version == 1
    later = ModelRegistry.from_settings(shared)
    assert later.entry("linear").ready_versions == ("1", "2")
    assert later.get("fresh").version == 1


def test_a_recorded_version_gone_from_disk_is_reported_not_replaced(settings, repo, tmp_path):
    shared = settings.replace(control_dir=tmp_path / "control")
    shared.control_dir.mkdir()
    control.snapshot(shared.control_dir, repo)
    shutil.rmtree(repo / "linear" / "1")
    make_bundle(repo, "linear", version=2)

    restarted = ModelRegistry.from_settings(shared)
    with pytest.raises(ModelNotReady, match=r"when it was last loaded \(\[1\], .*\) are gone"):
        restarted.get("linear")
    restarted.load("linear")
    assert restarted.entry("linear").ready_versions == ("2",)


def test_control_files_that_do_not_parse_are_skipped(tmp_path):
    seq = control.record(tmp_path, "good", "load", [2, 1])
    (tmp_path / "bad.json").write_text('{"action": "load", "seq": 1, "versions": ["1"]}')
    (tmp_path / "worse.json").write_text("[]")
    assert control.read(tmp_path) == {"good": control.Action("load", seq, (1, 2))}
    assert not control.has_snapshot(tmp_path)


def test_control_dir_is_off_when_unset(settings):
    registry = ModelRegistry.from_settings(settings)
    assert registry.start_sync() is None and registry.sync() == []
