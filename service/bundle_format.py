"""The model bundle format: the one contract between training and serving.

::

    <repo>/<name>/<version>/model.onnx     input "inputs" float32 [N, n_inputs], output "outputs"
                                           float32 [N, n_outputs], physical units ("std" too
                                           for ensembles)
    <repo>/<name>/<version>/jacobian.onnx  the same outputs plus "jacobian" [N, n_out, n_in]
    <repo>/<name>/<version>/model.json     the model card (also in model.onnx's metadata_props)
    <repo>/<name>/<version>/*.png          training plots
    <repo>/<name>/config.pbtxt             Triton's model config

Standard library only: training (which writes bundles), the service (which reads them), the
OpenAPI description and the command line import it alike, and a rule changed here is changed for
all of them. Every refusal is a :class:`BundleFormatError`, a ValueError naming what is wrong.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "CARD_KEY",
    "GRAPH_FILE_PATTERN",
    "INPUT_TENSOR",
    "JACOBIAN_FILE",
    "JACOBIAN_TENSOR",
    "MODEL_FILE",
    "NAME_MAX_LENGTH",
    "NAME_PATTERN",
    "OUTPUT_ELEMENT_TYPES",
    "OUTPUT_TENSOR",
    "RESERVED_FILES",
    "STD_TENSOR",
    "TRITON_CONFIG_FILE",
    "VERSION_MAX_DIGITS",
    "VERSION_PATTERN",
    "BundleFormatError",
    "check_card",
    "check_name",
    "is_valid_name",
    "latest_version",
    "parse_card",
    "parse_version",
    "names",
    "read_card",
    "training_range",
    "version_dir",
    "versions",
]

MODEL_FILE = "model.onnx"
JACOBIAN_FILE = "jacobian.onnx"
CARD_FILE = "model.json"
TRITON_CONFIG_FILE = "config.pbtxt"
# Files a bundle's own name for an extra file (a plot) may not take.
RESERVED_FILES = frozenset({MODEL_FILE, JACOBIAN_FILE, CARD_FILE})
# An extra graph named in the card's tensors.outputs: a plain file name in the version directory.
GRAPH_FILE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.onnx")

# The element types a graph output may have (the service answers them in V2 responses), each
# with its V2 datatype. The input is always float32.
OUTPUT_ELEMENT_TYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
}

INPUT_TENSOR = "inputs"
OUTPUT_TENSOR = "outputs"
STD_TENSOR = "std"
JACOBIAN_TENSOR = "jacobian"

CARD_FORMAT = "surrogate-bundle/1"
CARD_KEY = "surrogate.model_card"  # model.onnx metadata_props key holding the card

# Model names: URL-safe and unambiguous in "/v1/models/<name>:predict" (no ":" or "/"), and a
# directory name on any file system.
NAME_MAX_LENGTH = 64
NAME_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{NAME_MAX_LENGTH - 1}}}"
_NAME = re.compile(NAME_PATTERN)
# Versions: positive integers as Triton has them (int64: every 18-digit number fits), written
# without leading zeros, so "01" is not a version.
VERSION_MAX_DIGITS = 18
VERSION_PATTERN = rf"[1-9][0-9]{{0,{VERSION_MAX_DIGITS - 1}}}"


class BundleFormatError(ValueError):
    """Something is not as the bundle format has it; the message says what."""


def is_valid_name(name: object) -> bool:
    """Whether ``name`` may be a model name."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_name(name: object) -> str:
    """``name`` if it is a valid model name; BundleFormatError otherwise."""
    if not is_valid_name(name):
        raise BundleFormatError(
            f"invalid model name {name!r}: use 1-{NAME_MAX_LENGTH} characters from A-Z a-z 0-9 "
            "_ . -, starting with a letter or digit"
        )
    return name  # type: ignore[return-value]


def parse_version(text: str) -> int | None:
    """The version a directory name stands for, or None ("01", "0", "-1", "v2" stand for none;
    nor does a digit string too long for int64, which Python would refuse past 4300 digits)."""
    if (not text.isdecimal() or not text.isascii() or text.startswith("0")
            or len(text) > VERSION_MAX_DIGITS):
        return None
    return int(text)


def versions(model_dir: str | os.PathLike) -> list[int]:
    """The versions of a model directory, ascending (hidden staging entries are not versions)."""
    found = []
    with os.scandir(model_dir) as entries:
        for entry in entries:
            version = parse_version(entry.name)
            if version is not None and entry.is_dir():
                found.append(version)
    return sorted(found)


def latest_version(repo: str | os.PathLike, name: str) -> int | None:
    """Highest version of ``name`` in ``repo``, or None if it has none."""
    model_dir = Path(repo) / check_name(name)
    if not model_dir.is_dir():
        return None
    return max(versions(model_dir), default=None)


def version_dir(repo: str | os.PathLike, name: str, version: int | None = None) -> Path:
    """The directory of ``version`` of model ``name`` (None: the latest); BundleFormatError
    naming what is missing otherwise."""
    latest = latest_version(repo, name)
    if latest is None:
        raise BundleFormatError(f"no model {name!r} in the repository {os.fspath(repo)}")
    if version is None:
        return Path(repo) / name / str(latest)
    path = Path(repo) / name / str(version)
    if version < 1 or not path.is_dir():
        raise BundleFormatError(f"model {name!r} has no version {version} (latest is {latest})")
    return path


def parse_card(data: bytes | str) -> dict[str, Any]:
    """A card from the bytes of model.json, checked (:func:`check_card`)."""
    try:
        card = orjson.loads(data)  # a fifth of json's time: it counts with thousands of models
    except orjson.JSONDecodeError:
        try:  # json also reads NaN and Infinity, which hand-written cards may hold
            card = json.loads(data)
        except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes
            raise BundleFormatError(f"{CARD_FILE} is not valid JSON: {exc}") from None
    return check_card(card)


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The card of a version directory (or of a model.json path), checked."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleFormatError(f"{CARD_FILE} is missing in {path.parent}") from None
    except OSError as exc:
        raise BundleFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_card(data)


def check_card(card: Any) -> dict[str, Any]:
    """``card`` if it holds what every reader relies on: a JSON object of this format, with
    non-empty ``inputs`` and ``outputs`` lists of uniquely named entries. (A training-range
    bound that is missing or not a number leaves that side unbounded: :func:`training_range`.)"""
    if not isinstance(card, dict):
        raise BundleFormatError(f"{CARD_FILE} must hold a JSON object")
    if card.get("format", CARD_FORMAT) != CARD_FORMAT:
        raise BundleFormatError(f"{CARD_FILE} format {card['format']!r} is not {CARD_FORMAT!r}")
    for key in ("inputs", "outputs"):
        names(card, key)
    return card


def names(card: dict[str, Any], key: str) -> tuple[str, ...]:
    """The names of the card's ``inputs`` or ``outputs``, in order."""
    specs = card.get(key)
    if not isinstance(specs, list) or not specs:
        raise BundleFormatError(f"{CARD_FILE} {key!r} must be a non-empty list")
    found = tuple(s.get("name") if isinstance(s, dict) else None for s in specs)
    if not all(isinstance(n, str) and n for n in found) or len(set(found)) != len(found):
        raise BundleFormatError(f"{CARD_FILE} {key!r} entries need unique non-empty names")
    return found  # type: ignore[return-value]


def training_range(card: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Per input, the lowest and highest training value (-inf / inf where the card has none)."""
    def bound(spec: dict[str, Any], key: str, default: float) -> float:
        value = spec.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok and math.isfinite(value) else default

    specs = card["inputs"]
    return ([bound(s, "min", -math.inf) for s in specs],
            [bound(s, "max", math.inf) for s in specs])
