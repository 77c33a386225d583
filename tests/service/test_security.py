"""Access control (API keys), repository control and CORS, through Flask's test client.

tests/e2e/test_security.py repeats the essentials against a real gunicorn server.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import service
from service import create_app
from service.settings import Settings

KEYS = "first-secret-key,second-secret-key"
PROTECTED = [
    ("GET", "/v2"),
    ("GET", "/v2/models/linear"),
    ("GET", "/v2/models/linear/ready"),
    ("POST", "/v2/models/linear/infer"),
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/linear/load"),
    ("POST", "/v2/repository/models/linear/unload"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/linear"),
    ("POST", "/v1/models/linear:predict"),
    ("GET", "/no/such/endpoint"),  # anonymous clients learn nothing, not even a 404
]
OPEN = ["/v2/health/live", "/v2/health/ready", "/metrics"]
INFER = {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32", "data": [1, 1]}]}


def _client(repo, **settings):
    return create_app(Settings(model_repository=repo, **settings)).test_client()


@pytest.fixture
def locked(repo):
    return _client(repo, api_key=KEYS)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "this endpoint needs 'Authorization: Bearer <API key>'"),
        ("Bearer", "this endpoint needs 'Authorization: Bearer <API key>'"),
        ("Basic Zmlyc3Qtc2VjcmV0LWtleQ==", "this endpoint needs 'Authorization: Bearer"),
        ("Bearer first-secret-ke", "invalid API key"),
        ("Bearer first-secret-key,second-secret-key", "invalid API key"),
    ],
    ids=["none", "empty", "basic", "prefix", "both-keys"],
)
def test_protected_endpoints_need_a_valid_key(locked, method, path, authorization, message):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = locked.open(path, method=method, headers=headers)
    assert response.status_code == 401
    assert message in response.get_json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("key", ["first-secret-key", "second-secret-key"])
def test_every_configured_key_is_accepted(locked, key):
    headers = {"Authorization": f"bearer {key}"}  # the scheme is case-insensitive
    assert locked.get("/v2/models/linear", headers=headers).status_code == 200
    assert locked.post("/v2/models/linear/infer", json=INFER, headers=headers).status_code == 200
    assert locked.get("/no/such/endpoint", headers=headers).status_code == 404


@pytest.mark.parametrize("path", OPEN)
def test_probes_and_metrics_stay_open(locked, path):
    assert locked.get(path).status_code == 200


def test_metrics_can_need_a_key_too(repo):
    client = _client(repo, api_key=KEYS, metrics_auth=True)
    assert client.get("/metrics").status_code == 401
    headers = {"Authorization": "Bearer second-secret-key"}
    assert client.get("/metrics", headers=headers).status_code == 200
    assert client.get("/v2/health/ready").status_code == 200


def test_without_keys_nothing_needs_one(client):
    assert client.post("/v2/models/linear/infer", json=INFER).status_code == 200


@pytest.mark.parametrize("action", ["load", "unload"])
def test_repository_control_can_be_disabled(repo, action):
    client = _client(repo, repository_control=False)
    response = client.post(f"/v2/repository/models/linear/{action}")
    assert response.status_code == 403
    assert "SURROGATE_REPOSITORY_CONTROL=false" in response.get_json()["error"]
    assert client.post("/v2/models/linear/infer", json=INFER).status_code == 200
    assert client.post("/v2/repository/index").status_code == 200


# --- CORS --------------------------------------------------------------------------------------

PREFLIGHT = {
    "Origin": "https://app.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type, authorization",
}


def test_cors_is_off_by_default(client):
    response = client.post(
        "/v2/models/linear/infer", json=INFER, headers={"Origin": "https://app.example"}
    )
    assert response.status_code == 200
    assert not [h for h in response.headers.keys() if h.lower().startswith("access-control")]
    preflight = client.options("/v2/models/linear/infer", headers=PREFLIGHT)
    assert "Access-Control-Allow-Origin" not in preflight.headers


@pytest.mark.parametrize("origins", ["https://app.example,https://other.example", "*"])
def test_cors_allows_the_configured_origins(repo, origins):
    client = _client(repo, cors_origins=origins, api_key=KEYS)
    preflight = client.options("/v2/models/linear/infer", headers=PREFLIGHT)  # no key needed
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    response = client.post(
        "/v2/models/linear/infer", json=INFER,
        headers={"Origin": "https://app.example", "Authorization": "Bearer first-secret-key"},
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Inference-Header-Content-Length" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]


def test_cors_refuses_other_origins(repo):
    client = _client(repo, cors_origins="https://app.example")
    headers = {**PREFLIGHT, "Origin": "https://evil.example"}
    preflight = client.options("/v2/models/linear/infer", headers=headers)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    response = client.get("/v2/models/linear", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


# --- no code-executing formats -----------------------------------------------------------------

CODE_EXECUTING = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal",
                  "torch", "sklearn", "scipy", "training"}


def test_the_service_never_imports_a_code_executing_loader():
    """The service reads only model.onnx (protobuf) and model.json (JSON): no pickle, ever."""
    for path in Path(service.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            roots = {name.split(".")[0] for name in names}
            assert not roots & CODE_EXECUTING, f"{path.name} imports {roots & CODE_EXECUTING}"
        assert "allow_pickle" not in path.read_text(encoding="utf-8"), path.name


def test_a_pickle_beside_a_model_is_never_read(repo):
    (repo / "linear" / "1" / "model.pkl").write_bytes(b"\x80\x04not really a pickle")
    (repo / "sneaky" / "1").mkdir(parents=True)
    (repo / "sneaky" / "1" / "model.pkl").write_bytes(b"\x80\x04")
    client = _client(repo)
    index = {row["name"]: row for row in client.post("/v2/repository/index").get_json()}
    assert index["linear"]["state"] == "READY"
    assert index["sneaky"]["state"] == "UNAVAILABLE"
    assert "model.json is missing" in index["sneaky"]["reason"]
