"""Service settings: one frozen dataclass, read from ``SURROGATE_*`` environment variables.

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
batch_delay_ms        SURROGATE_BATCH_DELAY_MS        0         Dynamic batching: how long a request
                                                                may wait for others to the same
                                                                model to run as one ORT call; 0 off.
batch_max_rows        SURROGATE_BATCH_MAX_ROWS        1024      Largest batch the batcher forms.
chunk_rows            SURROGATE_CHUNK_ROWS            4096      Larger requests run in chunks of
                                                                this many rows (bounds memory, and
                                                                cache-sized chunks run faster).
====================  ==============================  ========  ====================================

The thread defaults are 1 because gunicorn runs several workers per machine and ORT's default (all
cores per session) oversubscribes it; the surrogates are small MLPs that gain little from threads.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "SURROGATE_"
DEVICES = ("cpu", "cuda", "auto")
DOMAIN_POLICIES = ("warn", "reject", "ignore")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment; see the module docstring."""

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
    batch_delay_ms: float = 0.0
    batch_max_rows: int = 1024
    chunk_rows: int = 4096

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_repository", Path(self.model_repository))
        object.__setattr__(self, "device", str(self.device).lower())
        object.__setattr__(self, "log_level", str(self.log_level).upper())
        # An empty SURROGATE_CONTROL_DIR means unset, like gunicorn_config reads it.
        control_dir = Path(self.control_dir) if self.control_dir else None
        object.__setattr__(self, "control_dir", control_dir)
        object.__setattr__(self, "domain_policy", str(self.domain_policy).lower())
        if self.domain_policy not in DOMAIN_POLICIES:
            raise ValueError(
                f"domain_policy must be one of {', '.join(DOMAIN_POLICIES)}, "
                f"got {self.domain_policy!r}"
            )
        if self.api_key and not self.api_keys:
            raise ValueError("api_key holds no key (only commas or spaces)")
        for name in ("batch_max_rows", "chunk_rows"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.batch_delay_ms < 0:
            raise ValueError(f"batch_delay_ms must be >= 0, got {self.batch_delay_ms}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for field in ("intra_op_threads", "inter_op_threads"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
        if self.max_request_bytes <= 0:
            raise ValueError(f"max_request_bytes must be > 0, got {self.max_request_bytes}")
        if self.control_poll_seconds <= 0:
            raise ValueError(f"control_poll_seconds must be > 0, got {self.control_poll_seconds}")
        if not isinstance(logging.getLevelName(self.log_level), int):
            raise ValueError(f"log_level {self.log_level!r} is not a logging level")

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
        ValueError
            A variable does not parse or is out of range; the message names the variable.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            key = PREFIX + field.name.upper()
            if key in environ:
                try:
                    values[field.name] = _parse(field.default, environ[key].strip())
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"invalid {PREFIX}* setting: {exc}") from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (validated like the original)."""
        return dataclasses.replace(self, **changes)


def _parse(default: Any, text: str) -> Any:
    """Parse ``text`` into the type of the field's default."""
    if isinstance(default, bool):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"expected a boolean (true/false/1/0/yes/no/on/off), got {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    if isinstance(default, Path):
        if not text:
            raise ValueError("expected a directory, got an empty string")
        return Path(text)
    return text
