"""A roomier C heap while a network trains (glibc only; elsewhere nothing changes).

Every forward and backward pass allocates and frees the same few arrays of one chunk of rows
(``Network.chunk_rows``, about 128 KiB each). With glibc's default ``M_TOP_PAD`` (128 KiB) the
top of the heap is handed back to the system and taken again, page faults included, on every
pass: a SiLU network's full-batch gradient (750 rows, 7-64-64-1, one thread) took 4.1 ms
against 1.8 ms for the same tanh network, and 2.5 ms with 16 MiB of padding, which tanh did
not notice (``python -m bench.gradients``). The padding is set for the time of a fit and put
back to glibc's default after it.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["TOP_PAD_BYTES", "roomy_heap"]

TOP_PAD_BYTES = 16 << 20
# mallopt(3): M_TOP_PAD is -2; its default is 128 KiB.
_M_TOP_PAD, _DEFAULT_TOP_PAD = -2, 128 * 1024
_lock = threading.Lock()
_depth = 0


def _mallopt():
    """glibc's ``mallopt``, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc only (musl's mallopt does nothing)
        return None
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


_MALLOPT = _mallopt()


@contextmanager
def roomy_heap(pad: int = TOP_PAD_BYTES) -> Iterator[bool]:
    """Keep ``pad`` bytes of slack at the top of the heap inside; yields whether it could (a
    fit inside a fit, or in another thread, shares the outermost one's setting)."""
    global _depth
    if _MALLOPT is None:
        yield False
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _MALLOPT(_M_TOP_PAD, pad)
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _MALLOPT(_M_TOP_PAD, _DEFAULT_TOP_PAD)
