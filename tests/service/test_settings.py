"""``Settings``: defaults, environment parsing, validation, replace."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings


def test_defaults():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.model_repository == Path("models")
    assert (settings.device, settings.intra_op_threads, settings.inter_op_threads) == ("cpu", 1, 1)
    assert settings.warmup and not settings.json_logs and settings.access_log
    assert settings.max_request_bytes == 64 * 1024 * 1024


def test_from_env_reads_every_field():
    environ = {
        "SURROGATE_MODEL_REPOSITORY": "/srv/models",
        "SURROGATE_DEVICE": "AUTO",
        "SURROGATE_INTRA_OP_THREADS": "4",
        "SURROGATE_INTER_OP_THREADS": "2",
        "SURROGATE_WARMUP": "off",
        "SURROGATE_JSON_LOGS": "yes",
        "SURROGATE_MAX_REQUEST_BYTES": "1024",
        "SURROGATE_LOG_LEVEL": "debug",
        "SURROGATE_ACCESS_LOG": "0",
        "UNRELATED": "ignored",
    }
    assert Settings.from_env(environ) == Settings(
        model_repository=Path("/srv/models"),
        device="auto",
        intra_op_threads=4,
        inter_op_threads=2,
        warmup=False,
        json_logs=True,
        max_request_bytes=1024,
        log_level="DEBUG",
        access_log=False,
    )


def test_control_settings():
    assert Settings().control_dir is None and Settings().control_poll_seconds == 0.5
    environ = {"SURROGATE_CONTROL_DIR": "/run/ctl", "SURROGATE_CONTROL_POLL_SECONDS": "0.25"}
    settings = Settings.from_env(environ)
    assert (settings.control_dir, settings.control_poll_seconds) == (Path("/run/ctl"), 0.25)
    assert Settings.from_env({"SURROGATE_CONTROL_DIR": ""}).control_dir is None
    with pytest.raises(ValueError, match="control_poll_seconds must be > 0"):
        Settings.from_env({"SURROGATE_CONTROL_POLL_SECONDS": "0"})
    with pytest.raises(ValueError, match="expected a number"):
        Settings.from_env({"SURROGATE_CONTROL_POLL_SECONDS": "often"})


def test_from_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("SURROGATE_INTRA_OP_THREADS", "3")
    assert Settings.from_env().intra_op_threads == 3


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SURROGATE_DEVICE", "tpu", "device must be one of cpu, cuda, auto"),
        ("SURROGATE_INTRA_OP_THREADS", "many", "SURROGATE_INTRA_OP_THREADS: expected an integer"),
        ("SURROGATE_INTER_OP_THREADS", "-1", "inter_op_threads must be >= 0"),
        ("SURROGATE_WARMUP", "maybe", "SURROGATE_WARMUP: expected a boolean"),
        ("SURROGATE_MAX_REQUEST_BYTES", "0", "max_request_bytes must be > 0"),
        ("SURROGATE_LOG_LEVEL", "LOUD", "is not a logging level"),
        ("SURROGATE_MODEL_REPOSITORY", "", "expected a directory"),
    ],
)
def test_invalid_values_name_the_problem(variable, value, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env({variable: value})


def test_replace_validates_and_keeps_the_original():
    settings = Settings()
    changed = settings.replace(model_repository="elsewhere", intra_op_threads=0)
    assert changed.model_repository == Path("elsewhere") and changed.intra_op_threads == 0
    assert settings.model_repository == Path("models")
    with pytest.raises(ValueError):
        settings.replace(device="gpu")


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().device = "cuda"  # type: ignore[misc]


def test_trust_security_and_batching_settings():
    settings = Settings.from_env({
        "SURROGATE_DOMAIN_POLICY": "Reject",
        "SURROGATE_API_KEY": " first-key, second-key ,",
        "SURROGATE_METRICS_AUTH": "true",
        "SURROGATE_REPOSITORY_CONTROL": "off",
        "SURROGATE_CORS_ORIGINS": "https://a.example, https://b.example",
        "SURROGATE_BATCH_DELAY_MS": "2.5",
        "SURROGATE_BATCH_MAX_ROWS": "256",
        "SURROGATE_CHUNK_ROWS": "1000",
    })
    assert settings.domain_policy == "reject"
    assert settings.api_keys == (b"first-key", b"second-key")
    assert settings.metrics_auth and not settings.repository_control
    assert settings.cors_origin_list == ("https://a.example", "https://b.example")
    batching = (settings.batch_delay_ms, settings.batch_max_rows, settings.chunk_rows)
    assert batching == (2.5, 256, 1000)
    assert "first-key" not in repr(settings)  # keys never reach a log line


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SURROGATE_DOMAIN_POLICY", "clip", "domain_policy must be one of warn, reject, ignore"),
        ("SURROGATE_API_KEY", " , ", "api_key holds no key"),
        ("SURROGATE_BATCH_DELAY_MS", "-1", "batch_delay_ms must be >= 0"),
        ("SURROGATE_BATCH_MAX_ROWS", "0", "batch_max_rows must be > 0"),
        ("SURROGATE_CHUNK_ROWS", "0", "chunk_rows must be > 0"),
    ],
)
def test_trust_security_and_batching_settings_are_checked(variable, value, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env({variable: value})
