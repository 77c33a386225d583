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
        ("SURROGATE_GRAPH_OPTIMIZATION", "max",
         "graph_optimization must be one of disable, basic, extended, all"),
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


def test_server_settings_defaults_follow_the_platform():
    from service.settings import ServerSettings, default_workers

    settings = ServerSettings.from_env({})
    assert settings == ServerSettings()
    assert settings.bind == "127.0.0.1:8000" and settings.workers == default_workers()
    assert 2 <= settings.workers <= 4
    assert (settings.threads, settings.timeout, settings.graceful_timeout) == (4, 30, 25)
    assert (settings.max_requests, settings.max_requests_jitter) == (0, 0)
    platform = ServerSettings.from_env({"PORT": "9123", "WEB_CONCURRENCY": "3"})
    assert (platform.bind, platform.workers) == ("0.0.0.0:9123", 3)
    # SURROGATE_* wins over the platform's variables; an empty one counts as unset.
    ours = ServerSettings.from_env({"PORT": "9123", "SURROGATE_BIND": "127.0.0.1:9124",
                                    "WEB_CONCURRENCY": "3", "SURROGATE_WORKERS": "5",
                                    "SURROGATE_THREADS": ""})
    assert (ours.bind, ours.workers, ours.threads) == ("127.0.0.1:9124", 5, 4)


def test_connections_are_spread_unless_workers_are_recycled():
    from service.settings import ServerSettings

    assert ServerSettings.from_env({}).reuse_port is True
    # A recycled worker would reset the connections queued on its own socket.
    recycled = ServerSettings.from_env({"SURROGATE_MAX_REQUESTS": "1000"})
    assert recycled.reuse_port is False and recycled.max_requests_jitter == 100
    both = ServerSettings.from_env({"SURROGATE_MAX_REQUESTS": "1000",
                                    "SURROGATE_REUSE_PORT": "true"})
    assert both.reuse_port is True  # said explicitly, it is kept
    assert ServerSettings.from_env({"SURROGATE_REUSE_PORT": "false"}).reuse_port is False


def test_server_settings_read_every_field():
    from service.settings import ServerSettings

    settings = ServerSettings.from_env({
        "SURROGATE_THREADS": "2", "SURROGATE_TIMEOUT": "60", "SURROGATE_GRACEFUL_TIMEOUT": "10",
        "SURROGATE_KEEPALIVE": "75", "SURROGATE_MAX_REQUESTS": "500",
        "SURROGATE_REUSE_PORT": "yes", "SURROGATE_LOG_LEVEL": "WARN",
    })
    assert settings == ServerSettings(threads=2, timeout=60, graceful_timeout=10, keepalive=75,
                                      max_requests=500, max_requests_jitter=50, reuse_port=True,
                                      log_level="warning")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SURROGATE_WORKERS": "0"}, "invalid SURROGATE_WORKERS setting: workers must be > 0"),
        ({"SURROGATE_THREADS": "many"}, "SURROGATE_THREADS: expected an integer, got 'many'"),
        ({"SURROGATE_KEEPALIVE": "-1"}, "SURROGATE_KEEPALIVE setting: keepalive must be >= 0"),
        ({"SURROGATE_REUSE_PORT": "maybe"}, "SURROGATE_REUSE_PORT: expected a boolean"),
        ({"SURROGATE_LOG_LEVEL": "loud"}, "log_level 'loud' is not a logging level"),
        ({"PORT": "http"}, "PORT: expected an integer"),
        ({"PORT": "70000"}, "PORT must be a port number"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY must be >= 1"),
    ],
)
def test_server_settings_name_the_variable(environ, message):
    from service.settings import ConfigurationError, ServerSettings

    with pytest.raises(ConfigurationError, match=message):
        ServerSettings.from_env(environ)


def test_configuration_errors_are_not_http_errors():
    from service.errors import BundleError, ServiceError
    from service.settings import ConfigurationError, DeviceUnavailable, RepositoryNotFound

    for error in (ConfigurationError, DeviceUnavailable, RepositoryNotFound, BundleError):
        assert not issubclass(error, ServiceError)
    with pytest.raises(ConfigurationError, match="SURROGATE_DEVICE"):
        Settings.from_env({"SURROGATE_DEVICE": "tpu"})
