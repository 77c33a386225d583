"""Reads the model repository from disk: ``<root>/<name>/<version>/model.onnx + model.json``.

Only directory layout is checked here; whether a bundle actually loads is the runtime's business.
Hidden entries (a writer's temporary ``.tmp`` directory) and version directories whose name is
not a canonical positive integer are ignored, as are model directories whose name could not be
addressed in a URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from service.bundle_format import CARD_FILE, MODEL_FILE, is_valid_name, parse_version
from service.settings import RepositoryNotFound

log = logging.getLogger("service.repository")

__all__ = ["BundleRef", "check_root", "is_valid_name", "parse_version", "scan", "scan_model"]


@dataclass(frozen=True)
class BundleRef:
    """Where one version of one model lives on disk."""

    name: str
    version: int
    path: Path

    @property
    def onnx_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def card_path(self) -> Path:
        return self.path / CARD_FILE


def check_root(root: Path) -> Path:
    """Fail fast when the repository directory is missing: a typo must not look like 0 models."""
    if not root.is_dir():
        raise RepositoryNotFound(f"model repository {str(root)!r} is not a directory")
    return root


def scan(root: Path) -> dict[str, list[BundleRef]]:
    """Every model directory under ``root`` with its versions, ascending.

    A model directory without any version directory is listed with an empty list, so that the
    registry can report it as unavailable rather than silently skip it.
    """
    check_root(root)
    models: dict[str, list[BundleRef]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if not is_valid_name(entry.name):
            log.warning("ignoring model directory %r: not a valid model name", entry.name)
            continue
        models[entry.name] = scan_model(root, entry.name) or []
    return models


def scan_model(root: Path, name: str) -> list[BundleRef] | None:
    """The versions of one model, ascending; None when the model directory does not exist."""
    model_dir = check_root(root) / name
    if not is_valid_name(name) or not model_dir.is_dir():
        return None
    refs = []
    for entry in model_dir.iterdir():
        version = parse_version(entry.name)
        if version is not None and entry.is_dir():
            refs.append(BundleRef(name, version, entry))
    return sorted(refs, key=lambda ref: ref.version)
