"""The control directory: the last repository action on each model, shared by all the workers.

``<dir>/<model>.json`` holds ``{"action": "load" | "unload", "seq": <int>}``. It is written to a
hidden temporary file and renamed over the old one, so a reader sees the previous action or the
new one, never a partial file. Only the latest action per model is kept: it is the state every
worker must converge to, and applying it again is harmless.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger("service.control")

ACTIONS = ("load", "unload")
SUFFIX = ".json"


def record(directory: Path, name: str, action: str) -> int:
    """Write ``action`` as the latest one on model ``name`` and return its sequence number."""
    # Wall-clock nanoseconds, so numbers from different workers never repeat; readers compare
    # them for equality only, so a clock step back cannot hide an action.
    seq = time.time_ns()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump({"action": action, "seq": seq}, file)
        os.replace(tmp, directory / f"{name}{SUFFIX}")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return seq


def read(directory: Path) -> dict[str, tuple[str, int]]:
    """The latest ``(action, seq)`` of every model with a control file; unreadable ones skipped."""
    actions = {}
    for path in directory.glob(f"*{SUFFIX}"):  # the glob skips the hidden temporary files
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            action, seq = payload["action"], payload["seq"]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring control file %s: %s", path, exc)
            continue
        if action in ACTIONS and isinstance(seq, int):
            actions[path.name.removesuffix(SUFFIX)] = (action, seq)
    return actions
