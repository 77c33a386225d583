"""The gunicorn worker the service runs: gunicorn's ``gthread`` worker, whose own refusals
(a request line over the limit, oversized headers, raw NUL or non-ASCII bytes, a bad
Content-Length) are answered in the service's error shape, ``{"error": "..."}`` as JSON, with
gunicorn's status codes, instead of gunicorn's HTML page.

Gunicorn answers those requests before any application code runs, from
``Worker.handle_error`` through ``gunicorn.util.write_error``; this worker installs its own
writer there when its process starts (only worker processes run it, so the master and any
other server in the process are untouched). Standard library only, like the config module.

When gunicorn writes an access line for every request (its ``accesslog`` is set, as
``service.gunicorn_config`` sets it), the application's own ``service.access`` line would say
the same again: the worker turns that off (``SURROGATE_ACCESS_LOG=false``) before it loads the
application, unless the variable is set.

With ``reuse_port`` (the default unless workers are recycled) every worker listens on a socket of
its own, which it opens only once the application has loaded: a worker that is starting or
restarting takes no connection before it can answer it.
"""

from __future__ import annotations

import json
import os
import socket

from gunicorn import sock, util
from gunicorn.workers.gthread import ThreadWorker

__all__ = ["JsonErrorWorker", "write_json_error"]


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Gunicorn's error writer, with a JSON body: ``{"error": "<reason>: <message>"}``."""
    text = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"error": text}).encode()  # ASCII: a raw request line is escaped
    head = (f"HTTP/1.1 {int(status_int)} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class JsonErrorWorker(ThreadWorker):
    """``gthread``, answering gunicorn's own refusals as JSON (see the module docstring)."""

    def init_process(self) -> None:
        util.write_error = write_json_error
        if self.cfg.accesslog:
            os.environ.setdefault("SURROGATE_ACCESS_LOG", "false")
        if self._own_socket():
            # Gunicorn opened this worker's socket at the fork; until the application has
            # loaded (every model of the repository), the kernel would queue a share of the
            # new connections on it, to wait seconds. It is opened again in load_wsgi.
            for listener in self.sockets:
                listener.close()
            self.sockets = []
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        if self._own_socket():
            self.sockets = sock.create_sockets(self.cfg, self.log)
            for listener in self.sockets:
                util.close_on_exec(listener)

    def _own_socket(self) -> bool:
        """Whether this worker listens on a socket of its own (``reuse_port``: gunicorn then
        opens one per worker, and the kernel spreads new connections over them)."""
        return bool(self.cfg.reuse_port) and hasattr(socket, "SO_REUSEPORT")
