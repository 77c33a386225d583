"""Service settings: frozen dataclasses read from ``SURROGATE_*`` environment variables, parsed
and validated here once. :class:`Settings` is what the application reads; :class:`ServerSettings`
is what gunicorn reads (``service.gunicorn_config``) and ``surrogate serve`` checks before it starts
gunicorn. Every refusal is a :class:`ConfigurationError` naming the variable or field.

:class:`Settings`:

====================  ==============================  ========  ====================================
Field                 Environment variable            Default   Meaning
====================  ==============================  ========  ====================================
model_repository      SURROGATE_MODEL_REPOSITORY      models    Directory holding
                                                                ``<name>/<version>/`` bundles (must
                                                                exist).
device                SURROGATE_DEVICE                cpu       ``cpu``, ``cuda`` (fail at startup
                                                                if ONNX Runtime has no CUDA
                                                                provider) or ``auto`` (CUDA when
                                                                available).
intra_op_threads      SURROGATE_INTRA_OP_THREADS      1         ONNX Runtime threads inside one
                                                                operator; 0 lets ORT use every core.
inter_op_threads      SURROGATE_INTER_OP_THREADS      1         ONNX Runtime threads across
                                                                operators.
warmup                SURROGATE_WARMUP                true      Run each model once at load.
json_logs             SURROGATE_JSON_LOGS             false     One JSON object per log line.
max_request_bytes     SURROGATE_MAX_REQUEST_BYTES     67108864  Largest request body accepted (after
                                                                decompression); larger gets 413.
log_level             SURROGATE_LOG_LEVEL             INFO      Level of the ``service`` loggers.
access_log            SURROGATE_ACCESS_LOG            true      One ``service.access`` line per
                                                                request (turn off when the server
                                                                logs them).
control_dir           SURROGATE_CONTROL_DIR           unset     Directory shared by the workers of
                                                                one server, so that a repository
                                                                load or unload made on one worker
                                                                reaches them all (see ``registry``);
                                                                gunicorn_config makes one. Unset: no
                                                                sync.
control_poll_seconds  SURROGATE_CONTROL_POLL_SECONDS  0.5       How often each worker reads it.
domain_policy         SURROGATE_DOMAIN_POLICY         warn      What to do with rows outside a
                                                                model's training range: ``warn``
                                                                (predict and list them), ``reject``
                                                                (422) or ``ignore``; a request may
                                                                override it.
api_key               SURROGATE_API_KEY               unset     One or several comma-separated
                                                                keys; when set, model and repository
                                                                endpoints need ``Authorization:
                                                                Bearer <key>``. Health stays open.
metrics_auth          SURROGATE_METRICS_AUTH          false     Whether ``/metrics`` needs a key.
repository_control    SURROGATE_REPOSITORY_CONTROL    true      Allow repository load and unload.
cors_origins          SURROGATE_CORS_ORIGINS          unset     Comma-separated origins allowed by
                                                                CORS (``*`` for any); unset: no
                                                                CORS headers (browsers refuse).
ui                    SURROGATE_UI                    true      The model browser at ``/ui/`` (and
                                                                ``/`` redirecting browsers there).
batch_delay_ms        SURROGATE_BATCH_DELAY_MS        0         Dynamic batching: how long a request
                                                                may wait for others to the same
                                                                model to run as one ORT call; 0 off.
batch_max_rows        SURROGATE_BATCH_MAX_ROWS        1024      Largest batch the batcher forms.
chunk_rows            SURROGATE_CHUNK_ROWS            4096      Larger requests run in chunks of
                                                                this many rows (bounds memory, and
                                                                cache-sized chunks run faster).
graph_optimization    SURROGATE_GRAPH_OPTIMIZATION    basic     ONNX Runtime's graph optimization
                                                                level at load: ``disable``,
                                                                ``basic``, ``extended`` or ``all``.
====================  ==============================  ========  ====================================

``basic`` because the bundles' graphs are already fused (Gemm layers): ``extended`` and ``all``
made a 4-32-32-2 model's session 0.3 ms slower to create (1.05 against 0.71 ms; 0.6 s per worker
for 2000 models) and ran no faster, single rows or 1000 (8-64-64-2 model and its Jacobian graph,
within 1%). Hand-made graphs with unfused layers may gain from ``all``.

The thread defaults are 1 because gunicorn runs several workers per machine and ORT's default (all
cores per session) oversubscribes it; the surrogates are small MLPs that gain little from threads.

:class:`ServerSettings` (see ``service.gunicorn_config`` for why these defaults):

==================  ==============================  ===========  ===================================
Field               Environment variable            Default      Meaning
==================  ==============================  ===========  ===================================
bind                SURROGATE_BIND                  see meaning  Listen address; else
                                                                 ``0.0.0.0:$PORT`` when ``PORT`` is
                                                                 set (KServe, Cloud Run, Heroku...);
                                                                 else ``127.0.0.1:8000``.
workers             SURROGATE_WORKERS               see meaning  Worker processes; else
                                                                 ``WEB_CONCURRENCY``; else the
                                                                 usable CPU count clamped to 2..4.
threads             SURROGATE_THREADS               4            Request threads per worker.
timeout             SURROGATE_TIMEOUT               30           Seconds before a silent worker is
                                                                 killed.
graceful_timeout    SURROGATE_GRACEFUL_TIMEOUT      25           Seconds a stopping worker has to
                                                                 finish its in-flight requests
                                                                 (below Kubernetes' 30 s grace).
keepalive           SURROGATE_KEEPALIVE             5            Seconds an idle keep-alive
                                                                 connection stays open.
max_requests        SURROGATE_MAX_REQUESTS          0            Recycle a worker after this many
                                                                 requests (0 = never).
max_requests_jitter SURROGATE_MAX_REQUESTS_JITTER   see meaning  Up to this many more, drawn per
                                                                 worker (``max_requests // 10``).
reuse_port          SURROGATE_REUSE_PORT            see meaning  One listening socket per worker
                                                                 (the kernel spreads connections);
                                                                 on unless max_requests recycles
                                                                 workers.
log_level           SURROGATE_LOG_LEVEL             info         Gunicorn's log level (the same
                                                                 variable as the service's).
==================  ==============================  ===========  ===================================
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEVICES",
    "DOMAIN_POLICIES",
    "GRAPH_OPTIMIZATIONS",
    "ConfigurationError",
    "DeviceUnavailable",
    "RepositoryNotFound",
    "ServerSettings",
    "Settings",
]

PREFIX = "SURROGATE_"
DEVICES = ("cpu", "cuda", "auto")
DOMAIN_POLICIES = ("warn", "reject", "ignore")
GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigurationError(ValueError):
    """The service cannot start as configured: a setting that does not parse or is out of range,
    a missing repository, a device without its provider. Not an HTTP error: it stops a start
    (a ValueError, as bad settings always were). ``field`` names the setting when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DeviceUnavailable(ConfigurationError):
    """The requested device has no execution provider in this onnxruntime build."""


class RepositoryNotFound(ConfigurationError):
    """The model repository directory does not exist."""


class _FromEnv:
    """``from_env`` and ``replace`` for the settings dataclasses below."""

    # Whether a variable set to the empty string counts as unset (else it is parsed).
    _empty_is_unset = False

    @classmethod
    def _env_values(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        """The fields set by ``SURROGATE_<FIELD>`` in ``environ``, parsed to the field's type."""
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            key = PREFIX + field.name.upper()
            if key not in environ or (cls._empty_is_unset and not environ[key].strip()):
                continue
            values[field.name] = _parse_variable(key, hints[field.name], environ[key])
        return values

    @classmethod
    def _build(cls, values: dict[str, Any]):
        """The settings from parsed ``values``; a refusal names the variable it came from."""
        try:
            return cls(**values)
        except ConfigurationError as exc:
            where = PREFIX + exc.field.upper() if exc.field in values else f"{PREFIX}*"
            raise ConfigurationError(f"invalid {where} setting: {exc}", exc.field) from None

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied (validated like the original)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class Settings(_FromEnv):
    """Everything the application reads from its environment; see the module docstring."""

    model_repository: Path = Path("models")
    device: str = "cpu"
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    warmup: bool = True
    json_logs: bool = False
    max_request_bytes: int = 64 * 1024 * 1024
    log_level: str = "INFO"
    access_log: bool = True
    control_dir: Path | None = None
    control_poll_seconds: float = 0.5
    domain_policy: str = "warn"
    api_key: str = dataclasses.field(default="", repr=False)
    metrics_auth: bool = False
    repository_control: bool = True
    cors_origins: str = ""
    ui: bool = True
    batch_delay_ms: float = 0.0
    batch_max_rows: int = 1024
    chunk_rows: int = 4096
    graph_optimization: str = "basic"

    def __post_init__(self) -> None:
        _set(self, "model_repository", Path(self.model_repository))
        _set(self, "device", str(self.device).lower())
        _set(self, "log_level", str(self.log_level).upper())
        # An empty SURROGATE_CONTROL_DIR means unset, like gunicorn_config reads it.
        _set(self, "control_dir", Path(self.control_dir) if self.control_dir else None)
        _set(self, "domain_policy", str(self.domain_policy).lower())
        _one_of(self, "domain_policy", DOMAIN_POLICIES)
        _set(self, "graph_optimization", str(self.graph_optimization).lower())
        _one_of(self, "graph_optimization", GRAPH_OPTIMIZATIONS)
        if self.api_key and not self.api_keys:
            raise ConfigurationError("api_key holds no key (only commas or spaces)", "api_key")
        _at_least(self, 1, "batch_max_rows", "chunk_rows", "max_request_bytes")
        _at_least(self, 0, "batch_delay_ms", "intra_op_threads", "inter_op_threads")
        _one_of(self, "device", DEVICES)
        if self.control_poll_seconds <= 0:
            raise ConfigurationError(
                f"control_poll_seconds must be > 0, got {self.control_poll_seconds}",
                "control_poll_seconds")
        _logging_level(self)

    @property
    def api_keys(self) -> tuple[bytes, ...]:
        """The accepted API keys, as bytes for constant-time comparison; empty: no auth."""
        return tuple(key.strip().encode() for key in self.api_key.split(",") if key.strip())

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.cors_origins.split(",") if o.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``SURROGATE_<FIELD>`` variables; unset ones keep their default.

        Parameters
        ----------
        environ : mapping, optional
            Where to read the variables; ``os.environ`` when omitted.

        Raises
        ------
        ConfigurationError
            A variable does not parse or is out of range; the message names the variable.
        """
        return cls._build(cls._env_values(os.environ if environ is None else environ))


# Python's names for a level that gunicorn spells otherwise (gunicorn knows debug, info, warning,
# error and critical; SURROGATE_LOG_LEVEL sets both).
_GUNICORN_LEVELS = {"warn": "warning", "fatal": "critical", "notset": "debug"}


@dataclass(frozen=True)
class ServerSettings(_FromEnv):
    """How gunicorn runs the service; see the module docstring. ``None`` fields take the
    defaults the table describes (resolved in :meth:`from_env`, or from the CPUs). A variable
    set to the empty string is unset, as gunicorn's own settings have it."""

    _empty_is_unset = True

    bind: str = "127.0.0.1:8000"
    workers: int | None = None
    threads: int = 4
    timeout: int = 30
    graceful_timeout: int = 25
    keepalive: int = 5
    max_requests: int = 0
    max_requests_jitter: int | None = None
    reuse_port: bool | None = None
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not str(self.bind).strip():
            raise ConfigurationError("bind must be HOST:PORT, got an empty string", "bind")
        if self.workers is None:
            _set(self, "workers", default_workers())
        if self.max_requests_jitter is None:
            _set(self, "max_requests_jitter", max(0, self.max_requests) // 10)
        if self.reuse_port is None:  # a recycled worker would reset what waits on its socket
            _set(self, "reuse_port", self.max_requests == 0)
        level = _logging_level(self).lower()
        _set(self, "log_level", _GUNICORN_LEVELS.get(level, level))
        _at_least(self, 1, "workers", "threads", "timeout", "graceful_timeout")
        _at_least(self, 0, "keepalive", "max_requests", "max_requests_jitter")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Build the server's settings from ``SURROGATE_<FIELD>``, then ``PORT`` (for the bind
        address) and ``WEB_CONCURRENCY`` (for the workers), as platforms set them.

        Raises
        ------
        ConfigurationError
            A variable does not parse or is out of range; the message names the variable.
        """
        environ = os.environ if environ is None else environ
        values = cls._env_values(environ)
        if "bind" not in values and environ.get("PORT", "").strip():
            port = _parse_variable("PORT", int, environ["PORT"])
            if not 0 < port < 65536:
                raise ConfigurationError(f"PORT must be a port number (1..65535), got {port}")
            values["bind"] = f"0.0.0.0:{port}"
        if "workers" not in values and environ.get("WEB_CONCURRENCY", "").strip():
            workers = _parse_variable("WEB_CONCURRENCY", int, environ["WEB_CONCURRENCY"])
            if workers < 1:
                raise ConfigurationError(f"WEB_CONCURRENCY must be >= 1, got {workers}")
            values["workers"] = workers
        return cls._build(values)


def default_workers() -> int:
    """One process per usable core (affinity honours taskset and cpusets), at least 2 so that
    one worker keeps serving while another restarts, at most 4 because beyond that a deployment
    scales better with more replicas than with more copies of every model in one pod."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(2, min(cpus or 1, 4))


def _set(settings: Any, name: str, value: Any) -> None:
    object.__setattr__(settings, name, value)


def _logging_level(settings: Any) -> str:
    """The settings' ``log_level``, upper case, if it names a Python logging level."""
    level = str(settings.log_level).upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ConfigurationError(f"log_level {settings.log_level!r} is not a logging level",
                                 "log_level")
    return level


def _at_least(settings: Any, minimum: int, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        if value < minimum:
            bound = f"> {minimum - 1}" if minimum and isinstance(value, int) else f">= {minimum}"
            raise ConfigurationError(f"{name} must be {bound}, got {value}", name)


def _one_of(settings: Any, name: str, choices: tuple[str, ...]) -> None:
    if getattr(settings, name) not in choices:
        raise ConfigurationError(
            f"{name} must be one of {', '.join(choices)}, got {getattr(settings, name)!r}", name)


def _parse_variable(key: str, kind: Any, raw: str) -> Any:
    try:
        return _parse(kind, raw.strip())
    except ConfigurationError as exc:
        raise ConfigurationError(f"{key}: {exc}") from None


def _parse(kind: Any, text: str) -> Any:
    """Parse ``text`` into ``kind``, a field's type (``X | None`` parses as ``X``, and an empty
    text as None: unset)."""
    if isinstance(kind, types.UnionType):
        if not text:
            return None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigurationError(
            f"expected a boolean (true/false/1/0/yes/no/on/off), got {text!r}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise ConfigurationError(f"expected {noun}, got {text!r}") from None
    if kind is Path:
        if not text:
            raise ConfigurationError("expected a directory, got an empty string")
        return Path(text)
    return text
