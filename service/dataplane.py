"""The inference use case, whatever the protocol: :meth:`DataPlane.infer` reads the body, looks
the model up, has the protocol's codec decode the request, applies the domain policy, runs the
model, checks its outputs, has the codec encode the answer, and records the request's metrics.

The front end (``service.frontend``) only speaks HTTP: it routes, authenticates, and hands the
data plane a codec (``service.codec.V2``, ``service.codec_v1.V1``) and a way to read the body.
The codecs only translate between bytes and arrays; the checks every request needs live here.

Domain of validity: every bundle's card records the training range of each input. A row with an
input outside it is an extrapolation; the policy (the ``domain_policy`` setting, overridable per
request) says what to do: ``warn`` predicts and reports the rows, ``reject`` answers 422 naming
the first offending input, ``ignore`` does not check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from service import metrics
from service.errors import BadRequest, BundleError, ModelNotReady, OutOfDomain
from service.metrics import RequestTimer
from service.runtime import OnnxModel
from service.settings import DOMAIN_POLICIES, ConfigurationError

if TYPE_CHECKING:
    from service.registry import ModelRegistry

# Rows listed in a warning, at most; the count beside the list is always exact.
MAX_LISTED_ROWS = 100


class Prediction(NamedTuple):  # NamedTuples: built per request, 1 us less than a dataclass
    """The requested output arrays, and the domain report when some rows were outside it."""

    arrays: list[np.ndarray]
    domain_report: dict[str, Any] | None = None


class Decoded(Protocol):
    """What a codec decodes a request into: the float32 rows, the outputs to run (None: the
    model's defaults), the request's domain policy override (None: the setting's) and what
    ``model.plainly_inside`` said of the rows if the codec already asked (None: not asked)."""

    inputs: np.ndarray
    output_names: Sequence[str] | None
    domain_policy: Any
    inside: bool | None


class Codec(Protocol):
    """One protocol's translation between bytes and arrays."""

    protocol: str  # the metrics label

    def decode(self, model: OnnxModel, body: bytes, header_length: str | None) -> Decoded:
        """The request, checked against ``model``; BadRequest naming what is wrong."""

    def encode(self, model: OnnxModel, request: Any, arrays: list[np.ndarray],
               report: dict[str, Any] | None) -> tuple[bytes, str, dict[str, str] | None]:
        """The answer's body, content type and extra headers."""


class Reply(NamedTuple):
    """An encoded answer: the body, its content type and any extra headers."""

    payload: bytes
    content_type: str
    headers: dict[str, str] | None = None


class DataPlane:
    """Inference on the models of ``registry``; ``default_policy`` is the domain policy a
    request gets unless it names one."""

    def __init__(self, registry: ModelRegistry, default_policy: str) -> None:
        if default_policy not in DOMAIN_POLICIES:  # Settings has checked it; a caller may not
            raise ConfigurationError(f"domain_policy must be one of {', '.join(DOMAIN_POLICIES)}, "
                                     f"got {default_policy!r}", "domain_policy")
        self.registry, self.default_policy = registry, default_policy

    def infer(self, codec: Codec, name: str, version: str | None,
              read_body: Callable[[], tuple[bytes, str | None]]) -> Reply:
        """Answer one request for ``version`` of model ``name`` (None: the latest).

        ``read_body()`` returns the (decompressed) body and, for a binary V2 request, the
        length of its JSON header. Raises a ``ServiceError`` for anything the client can fix.
        """
        with RequestTimer(codec.protocol) as timer:
            body, header_length = read_body()
            model = self.registry.get(name, version)
            timer.bind(model)
            request = codec.decode(model, body, header_length)
            policy = request.domain_policy
            policy = self.default_policy if policy is None else check_policy(policy)
            prediction = run(model, request.inputs, request.output_names, policy,
                             request.inside)
            reply = Reply(*codec.encode(model, request, prediction.arrays,
                                        prediction.domain_report))
            timer.rows = len(request.inputs)
        return reply


def check_shape(model: OnnxModel, x: np.ndarray) -> None:
    """Raise BadRequest unless ``x`` has shape (rows, input_width)."""
    if x.ndim != 2 or x.shape[1] != model.input_width:
        raise BadRequest(
            f"model {model.name!r} takes {model.input_width} input columns "
            f"({', '.join(model.feature_names)}), got shape {list(x.shape)}"
        )


def check_finite_inputs(x: np.ndarray) -> None:
    """Raise BadRequest naming the first row with a NaN or infinite input."""
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0][0])
        raise BadRequest(f"row {row} has a NaN or infinite input (or one beyond float32 range)")


def check_policy(policy: Any) -> str:
    """``policy`` if it names a domain policy, else BadRequest."""
    if policy not in DOMAIN_POLICIES:
        raise BadRequest(
            f"'domain_policy' must be one of {', '.join(DOMAIN_POLICIES)}, got {policy!r:.40}"
        )
    return policy


def check_domain(model: OnnxModel, x: np.ndarray, policy: str) -> dict[str, Any] | None:
    """Apply ``policy`` to the rows of ``x`` outside the training range.

    Returns
    -------
    dict or None
        ``{"out_of_domain_rows": count, "out_of_domain": [{"row", "inputs"}, ...]}`` when some
        rows are outside under ``warn``; None when none are or the policy is ``ignore``.

    Raises
    ------
    OutOfDomain
        Under ``reject``, naming the first offending row, input, value and range.
    """
    if policy == "ignore":
        return None
    outside = model.out_of_domain(x)
    rows = np.flatnonzero(outside.any(axis=1))
    if not rows.size:
        return None
    metrics.record_out_of_domain(model, int(rows.size))
    if policy == "reject":
        row = int(rows[0])
        col = int(np.flatnonzero(outside[row])[0])
        low, high = model.domain_low[col], model.domain_high[col]
        raise OutOfDomain(
            f"row {row}: input {model.feature_names[col]!r} = {x[row, col]:.7g} is outside the "
            f"training range [{low:.7g}, {high:.7g}] ({rows.size} of {len(x)} rows are; "
            "domain_policy reject)"
        )
    names = model.feature_names
    listed = [
        {"row": int(row), "inputs": [names[col] for col in np.flatnonzero(outside[row])]}
        for row in rows[:MAX_LISTED_ROWS]
    ]
    return {"out_of_domain_rows": int(rows.size), "out_of_domain": listed}


def run(
    model: OnnxModel,
    x: np.ndarray,
    output_names: Sequence[str] | None = None,
    domain_policy: str = "warn",
    inside: bool | None = None,
) -> Prediction:
    """Validate ``x``, apply the domain policy and run ``model``.

    Returns one array per requested output (``model.default_outputs`` by default), with the
    domain report. ``inside``: ``model.plainly_inside(x)`` when the caller already has it.
    """
    check_shape(model, x)
    report = None
    if inside is None:
        inside = model.plainly_inside(x)
    if not inside:  # the usual request is, and needs no closer look
        check_finite_inputs(x)
        report = check_domain(model, x, domain_policy)
    try:
        arrays = model.run(x, output_names)
    except BundleError as exc:  # an extra graph (jacobian.onnx) failed to load on first use
        raise ModelNotReady(f"version {model.version} of model {model.name!r} cannot answer "
                            f"this request: {exc}") from None
    for name, array in zip(output_names or model.default_outputs, arrays, strict=True):
        check_finite(name, array)
    return Prediction(arrays, report)


def check_finite(name: str, array: np.ndarray) -> None:
    """Raise BadRequest when the model overflowed: an input drove an output beyond float32."""
    values = array.ravel()
    # A few values are checked in Python: numpy calls on a tiny array cost more. More are
    # summed first (one numpy pass, not two: under gunicorn's threads each pass costs several
    # times its own time): a finite sum proves every value finite, as NaN and inf carry into it;
    # only a sum that is not (an overflow of large finite values, say) needs the full look.
    if values.size <= _PYTHON_CHECK_VALUES:
        finite = all(map(math.isfinite, values.tolist()))
    else:
        with np.errstate(all="ignore"):
            finite = math.isfinite(values.sum()) or bool(np.isfinite(values).all())
    if not finite:
        row = int(np.argwhere(~np.isfinite(array))[0][0])
        raise BadRequest(
            f"row {row}: output {name!r} is not finite: the inputs drive the model beyond the "
            "float32 range (far outside its training range?)"
        )


# Outputs of up to this many values are checked in Python (check_finite).
_PYTHON_CHECK_VALUES = 64
