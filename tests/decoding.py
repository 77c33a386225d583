"""Shared by the V1 and V2 codec tests: the quick decode of the usual request agrees with the
full decode."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# What a client might send as a number: numbers of every kind and size, and what is not one.
CLIENT_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-2**64, 2**64),
    st.sampled_from([True, False, None, "1.5", [1.0], {}, 3.5e38, -3.5e38, 2**63, 2**64,
                     -2**63 - 1]))
# The property tests' settings: 400 bodies each, on the test's app (built once per test).
QUICK_DECODE_SETTINGS = settings(max_examples=400, deadline=None,
                                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def usual_or(draw: Callable[[Any], Any], usual: Any, *others: Any) -> Any:
    """``usual`` 9 times in 10, else one of ``others`` (drawn with hypothesis's ``draw``)."""
    return usual if draw(st.integers(0, 9)) else draw(st.sampled_from(others))


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
