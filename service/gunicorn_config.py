"""Gunicorn settings and hooks for the service, read from the environment.

Run with ``gunicorn -c python:service.gunicorn_config 'service:create_app()'`` (what
``surrogate serve`` does) or, in containers, ``gunicorn -c deploy/gunicorn.conf.py ...``.
Flags given to gunicorn on its command line still override these values.

The settings are ``service.settings.ServerSettings`` (its docs table lists every variable:
``SURROGATE_BIND`` or ``PORT``, ``SURROGATE_WORKERS`` or ``WEB_CONCURRENCY``, threads, timeouts,
keep-alive, recycling, ``SURROGATE_REUSE_PORT``, the log level), parsed and validated there, the
same object ``surrogate serve`` checks before it starts gunicorn. The hooks below also read:

========================================  ==========================================================
Environment variable                      Meaning (default)
========================================  ==========================================================
``PROMETHEUS_MULTIPROC_DIR``              Shared directory for per-worker metric files; a fresh
                                          temporary directory (removed at exit) when unset.
``SURROGATE_CONTROL_DIR``                 Shared directory through which a repository load or
                                          unload reaches every worker, and where the master
                                          records the repository at start (see
                                          ``service.registry``); a fresh temporary directory
                                          (removed at exit) when unset.
========================================  ==========================================================

Why ``gthread``: the requests are short, CPU-bound ONNX Runtime calls, and several processes
(not threads) are what scale them, because JSON decoding holds the GIL. A few threads per
worker still pay off: ONNX Runtime releases the GIL while it runs, so one thread can infer
while another parses; a slow client or a large binary upload no longer stalls the worker, so
health probes keep being answered; and unlike ``sync`` workers, ``gthread`` keeps HTTP
connections alive, which matters when an optimiser or tritonclient sends thousands of small
requests. gevent buys nothing here: ONNX Runtime calls would block its event loop.

Stopping and recycling, as tests/e2e/test_crashes.py checks them: SIGTERM to the master stops
the accepting and lets every accepted request finish (up to the graceful timeout, after which a
stalled client is cut off) before it exits 0. A worker killed outright (SIGKILL, the OOM killer)
loses the requests on the connections it held, in flight or queued behind its threads, at most
one per client connection; the master starts a new one. A recycled worker (``max_requests``)
loses nothing, even over keep-alive: since gunicorn 27.0.1 a stopping gthread worker keeps its
idle kept-alive connections for up to 2 s and answers a request arriving on one with
"Connection: close". Older versions close them at once, and a client that sends on one just
then gets a connection reset (benoitc/gunicorn#3038): there, keep recycling off or have clients
retry. Recycling is off by default: it reloads and warms every model in the new worker, and
the soak (``python -m bench.soak``) shows no memory growth to contain.

This module is part of the serving install: only the standard library at import time, and
``prometheus_client`` inside hooks. Gunicorn takes every module-level name that matches one of
its settings, so helpers carry underscores; ``__all__`` is what deploy/gunicorn.conf.py re-exports.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import sys
import tempfile

from service.settings import ServerSettings

__all__ = [
    "bind", "workers", "worker_class", "threads", "timeout", "graceful_timeout", "keepalive",
    "max_requests", "max_requests_jitter", "limit_request_line", "limit_request_field_size",
    "preload_app", "accesslog", "errorlog", "loglevel",
    "access_log_format", "worker_tmp_dir", "control_socket_disable", "reuse_port",
    "on_starting", "child_exit",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTROL_ENV = "SURROGATE_CONTROL_DIR"

_server = ServerSettings.from_env()
bind = [_server.bind]
workers = _server.workers
# gthread (see above), answering the requests gunicorn refuses itself in the service's JSON error
# shape (service/gunicorn_worker.py).
worker_class = "service.gunicorn_worker.JsonErrorWorker"
# Request lines up to gunicorn's maximum, 8190 bytes (its default 4094 refused 5000-character
# model names with a 414); each header up to 8190 bytes, gunicorn's default, kept: it could be
# unlimited, but no client of these endpoints sends a larger one.
limit_request_line = 8190
limit_request_field_size = 8190
threads = _server.threads
timeout = _server.timeout
# Below Kubernetes' default 30 s termination grace period, so draining ends before SIGKILL.
graceful_timeout = _server.graceful_timeout
keepalive = _server.keepalive
# Off by default (see the module docstring); when on, a tenth of jitter spreads the restarts.
max_requests = _server.max_requests
max_requests_jitter = _server.max_requests_jitter
# ONNX Runtime sessions (and their thread pools) do not survive fork: each worker builds its own.
preload_app = False
# gunicorn writes the access line (with the request id); its worker turns the app's own off.
accesslog = "-"
errorlog = "-"
loglevel = _server.log_level
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s pid=%(p)s'
# The heartbeat file on a container's overlay filesystem can stall workers; RAM does not.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Gunicorn >= 25.1 otherwise opens $HOME/.gunicorn/gunicorn.ctl, one path shared by every
# server on the host and often read-only in containers; nothing here uses gunicornc.
control_socket_disable = True
# One listening socket per worker (SO_REUSEPORT), so the kernel spreads new connections over
# the workers. With one shared socket the worker that happens to be awake accepts them, and a
# client's keep-alive connections all stay on it (the bench saw all 16 of its connections on one
# of two workers in about half the runs, halving throughput). On unless max_requests recycles
# workers: connections still queued on a worker's own socket are reset when that worker exits
# (recycling, a timeout kill, a HUP reload), and recycling makes that routine. The worker opens
# its socket once the application has loaded (service/gunicorn_worker.py).
reuse_port = _server.reuse_port


def on_starting(server) -> None:
    """Give the workers empty shared directories (metric files, control files), before the fork."""
    if not os.environ.get(MULTIPROC_ENV) and "prometheus_client" in sys.modules:
        # prometheus_client picks its storage when first imported; workers forked from a
        # master that imported it without the variable would each count on their own.
        raise RuntimeError(f"prometheus_client was imported before {MULTIPROC_ENV} was set; "
                           "set it in the environment or import it only in the workers")
    # Stale metric files would be added to this run's counters; stale control files would
    # replay the last run's loads and unloads, where a start must serve what is on disk.
    metrics_dir = _shared_dir(MULTIPROC_ENV, "surrogate-metrics-", "*.db")
    control_dir = _shared_dir(CONTROL_ENV, "surrogate-control-", "*.json")
    server.log.info("Prometheus multiprocess directory: %s", metrics_dir)
    server.log.info("Repository control directory: %s", control_dir)
    _snapshot_repository(server, control_dir)


def _snapshot_repository(server, control_dir: str) -> None:
    """Record the versions on disk now, which every worker serves until a load call.

    Without it each worker would load what is on disk when it starts, so a worker restarted
    after a crash or a recycle could serve a version its siblings do not.
    """
    from pathlib import Path

    from service import control
    from service.settings import Settings

    # A marker left by an earlier run would make the workers load nothing if this one fails.
    (Path(control_dir) / control.SNAPSHOT_MARKER).unlink(missing_ok=True)
    try:
        root = Settings.from_env().model_repository
        recorded = control.snapshot(Path(control_dir), root)
    except Exception as exc:  # the workers report a bad setting or repository themselves
        server.log.warning("repository not recorded at start (%s); each worker loads what is "
                           "on disk when it starts", exc)
        return
    server.log.info("Repository %s recorded at start: %d models", root, len(recorded))


def child_exit(server, worker) -> None:
    """Drop the live-gauge files of a worker that exited (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _shared_dir(variable: str, prefix: str, stale: str) -> str:
    """The directory named by ``variable``, emptied of ``stale`` files; else a fresh one."""
    directory = os.environ.get(variable)
    if directory:
        os.makedirs(directory, exist_ok=True)
        for path in glob.glob(os.path.join(directory, stale)):
            os.remove(path)
        return directory
    directory = tempfile.mkdtemp(prefix=prefix)
    os.environ[variable] = directory
    # atexit, not the on_exit hook: gunicorn skips on_exit when the workers fail to boot.
    atexit.register(_remove_in_process, directory, os.getpid())
    return directory


def _remove_in_process(directory: str, pid: int) -> None:
    # Forked workers inherit the atexit handler; only the master that created it removes it.
    if os.getpid() == pid:
        shutil.rmtree(directory, ignore_errors=True)
