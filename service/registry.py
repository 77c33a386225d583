"""The loaded models of one worker, by name and version, and the repository operations on them.

Reads never lock: the name -> entry mapping is replaced as a whole (built aside, then assigned
under the write lock), so a request holds the ``OnnxModel`` it looked up for as long as it needs
it, even while a load or unload swaps the mapping. A bundle that fails to load is kept as an
UNAVAILABLE version with its reason, and never takes the service down.

Ready semantics: the registry is ready once the startup scan has finished and every bundle found
has been tried; bundles that failed, and models unloaded on purpose, do not make it unready
(they are visible in the repository index and the ``model_load_failures`` metric). Because the
scan runs inside ``create_app``, a worker that answers HTTP at all is ready.

Several workers: each gunicorn worker has its own registry, so a load or unload through the
repository extension reaches only the worker that received it. With ``settings.control_dir`` set
(gunicorn_config always sets it), that worker also publishes the action, and every worker's
``sync`` applies the actions it has not applied yet (``service.replication``): within about one
poll interval all the workers serve the same versions. A worker started later (a restart, or
``max_requests``) builds its models from the recorded actions, not from what is on disk by then:
a model unloaded on purpose stays unloaded, a loaded one gets the versions recorded at its load,
and, as gunicorn's master records the repository at start (``control.snapshot``), versions and
models added to disk since wait for a load call in every worker alike. The request path never
touches the control directory.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import onnxruntime as ort

from service import control, metrics, repository
from service.devices import CUDA, select_providers
from service.errors import (
    BundleError,
    ModelLoadFailed,
    ModelNotFound,
    ModelNotReady,
    VersionNotFound,
)
from service.replication import Replication
from service.repository import BundleRef
from service.runtime import OnnxModel
from service.settings import DeviceUnavailable, Settings

log = logging.getLogger("service.registry")

READY = "READY"
UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True)
class VersionStatus:
    """One version's state; ``model`` is set exactly when the state is READY."""

    version: int
    state: str
    reason: str = ""
    model: OnnxModel | None = None
    fingerprint: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ModelEntry:
    """All known versions of one model; ``latest`` is the highest READY one."""

    name: str
    versions: Mapping[int, VersionStatus]
    reason: str = ""
    latest: OnnxModel | None = field(init=False)
    ready_versions: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        ready = [v for v, s in sorted(self.versions.items()) if s.model is not None]
        object.__setattr__(self, "ready_versions", tuple(str(v) for v in ready))
        object.__setattr__(self, "latest", self.versions[ready[-1]].model if ready else None)

    def why_unavailable(self) -> str:
        reasons = [f"version {v}: {s.reason}" for v, s in sorted(self.versions.items())]
        return "; ".join(reasons) or self.reason


class ModelRegistry:
    """Holds the loaded models of one worker; see the module docstring for the concurrency rule.

    Parameters
    ----------
    settings : Settings
        Repository location, threads, warm-up.
    providers : sequence of str
        ONNX Runtime execution providers for every session.
    """

    def __init__(self, settings: Settings, providers: list[str]) -> None:
        self.settings = settings
        self.root = settings.model_repository
        self.providers = providers
        self.ready = False
        self._models: Mapping[str, ModelEntry] = {}
        self._lock = threading.Lock()
        # Held across an action and its control-file update, so that ``sync`` never applies an
        # older action over a newer one of this worker.
        self._control_lock = threading.Lock()
        self.replication = Replication(settings.control_dir, settings.control_poll_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """Pick the execution providers, scan the repository and load every bundle in it."""
        providers = select_providers(settings.device, ort.get_available_providers())
        if settings.device == "auto" and CUDA not in providers:
            log.info("device auto: %s is not available, running on CPU", CUDA)
        log.info("device %s: execution providers %s", settings.device, ", ".join(providers))
        registry = cls(settings, providers)
        registry.load_all()
        return registry

    def load_all(self) -> None:
        """The startup scan: load every model in the repository, as the control directory says.

        Without a control directory, every version on disk. With one, a model's recorded action
        wins: an unloaded model stays unloaded, a loaded one gets the recorded versions. When
        the server recorded the repository at start (``control.snapshot``), models on disk
        without a record are new since then and wait for a load call, as in the other workers.
        """
        recorded, only_recorded = self.replication.recorded()
        with self._control_lock, self._lock:
            models = {}
            for name, refs in repository.scan(self.root).items():
                action = recorded.get(name)
                if action is None and only_recorded:
                    continue
                if action is not None:
                    self.replication.applied(name, action)
                if action is not None and action.action == "unload":
                    models[name] = _unloaded(name, [ref.version for ref in refs])
                else:
                    models[name] = self._build(name, refs, self._models.get(name), action)
            self._swap(models)
        self.ready = True
        ready = sum(entry.latest is not None for entry in self._models.values())
        log.info("repository %s: %d of %d models ready", self.root, ready, len(self._models))

    def get(self, name: str, version: int | str | None = None) -> OnnxModel:
        """The model to serve: ``version`` of ``name``, or its latest READY version.

        Raises
        ------
        ModelNotFound, VersionNotFound
            Unknown name, or no such version (a version that is not a positive integer included).
        ModelNotReady
            Known, but failed to load or was unloaded.
        """
        entry = self._models.get(name)
        if entry is None:
            raise ModelNotFound(f"model {name!r} not found")
        if version is None:
            if entry.latest is None:
                raise ModelNotReady(f"model {name!r} is not ready: {entry.why_unavailable()}")
            return entry.latest
        number = version if isinstance(version, int) else repository.parse_version(version)
        status = entry.versions.get(number) if number is not None else None
        if status is None:
            raise VersionNotFound(f"model {name!r} has no version {str(version)!r}")
        if status.model is None:
            raise ModelNotReady(f"version {number} of model {name!r} is not ready: {status.reason}")
        return status.model

    def entry(self, name: str) -> ModelEntry:
        entry = self._models.get(name)
        if entry is None:
            raise ModelNotFound(f"model {name!r} not found")
        return entry

    def entries(self) -> list[ModelEntry]:
        return [self._models[name] for name in sorted(self._models)]

    def load(self, name: str) -> ModelEntry:
        """Re-read ``name``'s versions from disk and swap them in, in every worker.

        Unchanged versions keep their loaded session; new or changed ones are loaded; versions
        gone from disk are dropped. A version that fails is recorded, the others keep serving.
        The action is then recorded in the control directory, if any (see the module docstring).

        Raises
        ------
        ModelNotFound
            No such model directory (an entry for it, if any, is dropped).
        ModelLoadFailed
            The model directory holds no version that loads (the failures are recorded).
        """
        with self._control_lock:
            known = name in self._models
            try:
                return self._load(name)
            finally:
                # Failures are published too (the others record them, or drop a model gone
                # from disk), except for a name never known: it changed nothing.
                entry = self._models.get(name)
                if known or entry is not None:
                    versions = entry.versions if entry is not None else ()
                    self.replication.publish(name, "load", versions)

    def unload(self, name: str) -> ModelEntry:
        """Stop serving every version of ``name``, in every worker (see the module docstring).

        In-flight requests finish on their model.
        """
        with self._control_lock:
            entry = self._unload(name)
            self.replication.publish(name, "unload")
        return entry

    def sync(self) -> list[str]:
        """Apply the control actions of other workers that this one has not applied yet.

        Returns the names of the models acted on. A failure is logged, as the worker that
        received the call has answered it already.
        """
        with self._control_lock:
            todo = self.replication.pending()
            for name, action in sorted(todo.items()):
                try:
                    if action.action == "load":
                        self._load(name, action)
                    else:
                        self._unload(name)
                except (ModelNotFound, ModelLoadFailed) as exc:
                    log.info("control action %s on model %s: %s", action, name, exc)
        return sorted(todo)

    def start_sync(self) -> threading.Thread | None:
        """Catch up with the control directory, then follow it from a daemon thread."""
        return self.replication.follow(self.sync)

    def _load(self, name: str, action: control.Action | None = None) -> ModelEntry:
        """Load ``name``'s versions on disk, only those ``action`` recorded if given."""
        with self._lock:
            refs = repository.scan_model(self.root, name)
            if refs is None:
                self._swap({n: e for n, e in self._models.items() if n != name})
                raise ModelNotFound(f"model {name!r} not found in the model repository")
            entry = self._build(name, refs, self._models.get(name), action)
            self._swap({**self._models, name: entry})
        if entry.latest is None:
            raise ModelLoadFailed(f"failed to load model {name!r}: {entry.why_unavailable()}")
        return entry

    def _unload(self, name: str) -> ModelEntry:
        with self._lock:
            entry = _unloaded(name, self.entry(name).versions)
            self._swap({**self._models, name: entry})
        log.info("model %s unloaded", name)
        return entry

    def _swap(self, models: Mapping[str, ModelEntry]) -> None:
        """Serve ``models`` from now on (under the lock); the loaded versions they no longer
        hold are retired (see ``OnnxModel.retire``)."""
        kept = {id(s.model) for e in models.values() for s in e.versions.values() if s.model}
        for entry in self._models.values():
            for status in entry.versions.values():
                if status.model is not None and id(status.model) not in kept:
                    status.model.retire()
        self._models = models

    def _build(self, name: str, refs: list[BundleRef], previous: ModelEntry | None,
               action: control.Action | None = None) -> ModelEntry:
        """The entry of ``refs`` (those ``action`` recorded, if given), reusing loaded sessions."""
        on_disk = refs
        if action is not None and action.versions is not None:
            recorded = set(action.versions)
            refs = [ref for ref in refs if ref.version in recorded]
        versions = {}
        for ref in refs:
            old = previous.versions.get(ref.version) if previous is not None else None
            versions[ref.version] = self._load_version(ref, old)
        if refs:
            reason = ""
        elif on_disk:
            reason = (f"the versions recorded when it was last loaded ({list(action.versions)}, "
                      "at a load call or the server's start) are gone from disk; load it again "
                      "to serve the versions there")
        else:
            reason = "no version directory (a positive integer) found"
        return ModelEntry(name, versions, reason)

    def _load_version(self, ref: BundleRef, old: VersionStatus | None) -> VersionStatus:
        fingerprint = _fingerprint(ref)
        if old is not None and old.model is not None and old.fingerprint == fingerprint:
            return old
        try:
            model = OnnxModel.load(ref, self.settings, self.providers)
        except DeviceUnavailable:
            raise  # a device problem is the server's, not this bundle's: fail the start
        except Exception as exc:
            if not isinstance(exc, BundleError):
                log.exception("unexpected error loading %s/%s", ref.name, ref.version)
            reason = str(exc) or type(exc).__name__
            log.warning("model %s version %s is UNAVAILABLE: %s", ref.name, ref.version, reason)
            metrics.record_load_failure(ref.name)
            return VersionStatus(ref.version, UNAVAILABLE, reason, fingerprint=fingerprint)
        log.info("model %s version %s is READY on %s", ref.name, ref.version,
                 ", ".join(model.providers))
        return VersionStatus(ref.version, READY, model=model, fingerprint=fingerprint)


def _unloaded(name: str, versions) -> ModelEntry:
    return ModelEntry(name, {v: VersionStatus(v, UNAVAILABLE, "unloaded") for v in versions},
                      reason="unloaded")


def _fingerprint(ref: BundleRef) -> tuple[int, ...] | None:
    """Identity of a bundle's files: a reload re-reads a version only when this changes."""
    try:
        stats = (os.stat(ref.onnx_path), os.stat(ref.card_path))
    except OSError:
        return None
    return tuple(x for st in stats for x in (st.st_ino, st.st_size, st.st_mtime_ns))
