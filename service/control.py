"""The control directory: which versions of each model the workers serve, shared by all of them.

``<dir>/<model>.json`` holds the last repository action on that model:
``{"action": "load", "seq": <int>, "versions": [1, 2, ...]}`` (the versions found on disk when
it was loaded, which every worker serves) or ``{"action": "unload", "seq": <int>}``. It is
written to a hidden temporary file and renamed over the old one, so a reader sees the previous
action or the new one, never a partial file. Only the latest action per model is kept: it is the
state every worker must converge to, and applying it again is harmless.

Under gunicorn the master records the repository as the server starts (:func:`snapshot`): a
load of every model with the versions then on disk, and a marker file saying so. A worker
started later (after a crash or a ``max_requests`` recycle) builds its models from these
records instead of from whatever is on disk by then, so it serves the same versions as its
siblings; a version or model added to disk since is served after a load call, by all of them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from service import repository

log = logging.getLogger("service.control")

ACTIONS = ("load", "unload")
SUFFIX = ".json"
# Not a ``*.json`` name, so never read as a model's record.
SNAPSHOT_MARKER = "repository.snapshot"


@dataclass(frozen=True)
class Action:
    """One model's last action; ``versions`` is what a load serves (None: all on disk)."""

    action: str
    seq: int
    versions: tuple[int, ...] | None = None


def record(directory: Path, name: str, action: str, versions: Iterable[int] | None = None) -> int:
    """Write ``action`` as the latest one on model ``name`` and return its sequence number."""
    # Wall-clock nanoseconds, so numbers from different workers never repeat; readers compare
    # them for equality only, so a clock step back cannot hide an action.
    seq = time.time_ns()
    payload = {"action": action, "seq": seq}
    if versions is not None:
        payload["versions"] = sorted(versions)
    _write_atomically(directory, f"{name}{SUFFIX}", json.dumps(payload))
    return seq


def read(directory: Path) -> dict[str, Action]:
    """The latest action of every model with a control file; unreadable ones skipped."""
    actions = {}
    for path in directory.glob(f"*{SUFFIX}"):  # the glob skips the hidden temporary files
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            action, seq = payload["action"], payload["seq"]
            versions = payload.get("versions")
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring control file %s: %s", path, exc)
            continue
        if versions is not None and not (
            isinstance(versions, list) and all(type(v) is int for v in versions)
        ):
            log.warning("ignoring control file %s: 'versions' is not a list of integers", path)
            continue
        if action in ACTIONS and isinstance(seq, int):
            actions[path.name.removesuffix(SUFFIX)] = Action(
                action, seq, None if versions is None else tuple(versions)
            )
    return actions


def snapshot(directory: Path, root: Path) -> dict[str, tuple[int, ...]]:
    """Record every model of the repository at ``root`` as loaded with its versions on disk now.

    The marker is written last: a worker that sees it sees every record. Returns the recorded
    versions by model.
    """
    (directory / SNAPSHOT_MARKER).unlink(missing_ok=True)
    recorded = {}
    for name, refs in repository.scan(root).items():
        recorded[name] = tuple(ref.version for ref in refs)
        record(directory, name, "load", recorded[name])
    _write_atomically(directory, SNAPSHOT_MARKER, f"{root}\n")
    return recorded


def has_snapshot(directory: Path) -> bool:
    """Whether the repository was recorded at start: models without a record are then new."""
    return (directory / SNAPSHOT_MARKER).is_file()


def _write_atomically(directory: Path, name: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
