"""Ctrl-C at safe points: what must be whole (a tracking run's files, a finished fit kept and
reported together) holds it until done."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

__all__ = ["sigint_held"]


@contextmanager
def sigint_held():
    """Hold a Ctrl-C until the block ends, then deliver it (in the main thread; elsewhere
    signals are not delivered anyway). Blocks nest: the outermost delivers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(signal.SIGINT, received[0])
