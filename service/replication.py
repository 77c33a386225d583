"""Cross-worker replication of repository actions: what one worker publishes to the shared
control directory (``service.control``), what it has applied from it, and the thread that
follows it.

Each gunicorn worker has its own registry; a load or unload through the repository extension
reaches only the worker that received it. That worker publishes the action, and every worker's
follower thread, polling every ``control_poll_seconds``, hands the registry the actions it has
not applied yet: within about one poll interval all the workers serve the same versions.
Without a control directory (Flask's test client, one process) nothing is replicated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from service import control

log = logging.getLogger("service.registry")

__all__ = ["Replication"]


class Replication:
    """One worker's view of the control directory ``directory`` (None: no replication).

    Not thread-safe on its own: the registry calls it under its control lock, so that an
    action and its publication are never interleaved with a sync.
    """

    def __init__(self, directory: Path | None, poll_seconds: float) -> None:
        self.directory, self.poll_seconds = directory, poll_seconds
        self._applied: dict[str, int] = {}  # the seq of the last action applied, per model

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def recorded(self) -> tuple[dict[str, control.Action], bool]:
        """The actions recorded so far, and whether the repository was recorded at start (then
        a model on disk without a record is new and waits for a load call)."""
        if self.directory is None:
            return {}, False
        return control.read(self.directory), control.has_snapshot(self.directory)

    def applied(self, name: str, action: control.Action) -> None:
        """Note that ``action`` on ``name`` has been applied (or tried) here."""
        self._applied[name] = action.seq

    def publish(self, name: str, action: str, versions: Iterable[int] | None = None) -> None:
        """Record ``action`` (done here already) for the other workers."""
        if self.directory is not None:
            self._applied[name] = control.record(self.directory, name, action, versions)

    def pending(self) -> dict[str, control.Action]:
        """The other workers' actions not applied here yet, by model; each is noted applied."""
        if self.directory is None:
            return {}
        todo = {name: action for name, action in control.read(self.directory).items()
                if self._applied.get(name) != action.seq}
        for name, action in todo.items():
            self.applied(name, action)
        return todo

    def follow(self, sync: Callable[[], object]) -> threading.Thread | None:
        """Call ``sync`` now, then every poll interval from a daemon thread (None: disabled)."""
        if self.directory is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        sync()
        thread = threading.Thread(target=self._forever, args=(sync,), name="registry-sync",
                                  daemon=True)
        thread.start()
        return thread

    def _forever(self, sync: Callable[[], object]) -> None:
        while True:
            time.sleep(self.poll_seconds)
            try:
                sync()
            except Exception:
                # One bad poll (a disk error...) must not stop the worker following the others.
                log.exception("control directory sync failed")
