"""Shared by the V1 and V2 codec tests: the quick decode of the usual request agrees with the
full decode."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np


def check_quick_decode(quick: Callable[[Any], Any], full: Callable[[Any], Any],
                       payload: Any) -> None:
    """``quick(payload)`` is None or what ``full(payload)`` returns (each decodes its own copy),
    field by field, the arrays to the byte; and it warns of nothing (an overflowing cast would)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = quick(json.loads(json.dumps(payload)))
    if fast is None:
        return
    slow = full(json.loads(json.dumps(payload)))
    assert type(fast) is type(slow)
    for mine, theirs in zip(fast, slow, strict=True):
        if isinstance(theirs, np.ndarray):
            assert mine.dtype == theirs.dtype == np.float32 and mine.shape == theirs.shape
            assert mine.tobytes() == theirs.tobytes()
        else:
            assert mine == theirs
