"""Parity of an exported graph with the fitted model: onnxruntime against numpy, output by output.

The first output of a graph is compared with ``predict``; ``std`` (an ensemble's spread) with
``predict(X, return_std=True)``, both relative to the spread of the predictions; ``jacobian``
with ``predict_jacobian``, relative to the largest derivative magnitude of each output. Rows
where a pre-activation lies within rounding of an activation's kink are left out of the Jacobian
comparison: float32 and float64 may legitimately take different sides there.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from training.ensemble import members
from training.errors import ParameterError, TrainingError
from training.network import fitted_network

__all__ = [
    "JACOBIAN_TOLERANCE",
    "PARITY_TOLERANCE",
    "ParityError",
    "check_parity",
    "deviations",
    "parity",
    "run_onnx",
]

PARITY_TOLERANCE = 1e-4  # max |onnx - predict| / std(y) an export may ship with
JACOBIAN_TOLERANCE = 1e-4  # max |onnx - predict_jacobian| / max |jacobian|, per output
KINK_MARGIN = 1e-4  # pre-activations this close to a kink (scaled units) are rounding's call
_PROBE_POINTS = 256  # per box, in check_parity


class ParityError(TrainingError, RuntimeError):
    """The ONNX graph does not reproduce ``predict`` closely enough to be shipped."""


def run_onnx(onnx_model: onnx.ModelProto, X, outputs: list[str] | None = None):
    """Run ``onnx_model`` on ``X`` (cast to float32) in onnxruntime on the CPU.

    Returns the first output's array, or a dict of the named ``outputs``' arrays.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feed = {session.get_inputs()[0].name: np.asarray(X, dtype=np.float32)}
    if outputs is None:
        return session.run([session.get_outputs()[0].name], feed)[0]
    return dict(zip(outputs, session.run(outputs, feed), strict=True))


def _as_fitted_input(model, X32: np.ndarray):
    """The float32 points as float64, in a DataFrame when the model was fit on one."""
    X = X32.astype(np.float64)
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return X
    import pandas as pd

    return pd.DataFrame(X, columns=names)


def deviations(model, onnx_model: onnx.ModelProto, X) -> dict[str, float]:
    """Deviation of every output of ``onnx_model`` from the model, on the points ``X``.

    Both sides see the same float32-rounded points, so only the graph's own error is measured.

    Parameters
    ----------
    model : estimator
        Anything with ``predict`` (a ``SurrogateMLP``, a ``SurrogateEnsemble``, a Pipeline
        ending in one); ``predict(X, return_std=True)`` for a ``std`` output and
        ``predict_jacobian`` for a ``jacobian`` output.
    onnx_model : onnx.ModelProto
        Its export.
    X : array-like of shape (n_samples, n_features)
        Points to compare on, at least two.

    Returns
    -------
    dict
        Output name to deviation: ``max |onnx - expected| / std(predict)`` per output column
        for the first output and ``std`` (a column whose predictions are constant is measured
        against its largest magnitude, or 1 if that is 0); for ``jacobian``, ``max |onnx -
        expected|`` over its rows off the kinks, divided by the largest ``|expected|`` of each
        output. Infinities (and, in the Jacobian, NaNs) that both sides produce agree; ``inf``
        for any other NaN or a one-sided infinity.
    """
    X32 = np.asarray(X, dtype=np.float32)
    if X32.ndim != 2 or len(X32) < 2:
        raise ParameterError(
            f"parity needs a 2-D array of at least two points, got shape {X32.shape}")
    names = [output.name for output in onnx_model.graph.output]
    got = run_onnx(onnx_model, X32, names)
    X_fit = _as_fitted_input(model, X32)
    if "std" in names:
        mean, std = model.predict(X_fit, return_std=True)
    else:
        mean, std = model.predict(X_fit), None
    mean = _columns(mean, len(X32))
    result = {names[0]: _relative_deviation(_checked(got[names[0]], mean), mean, mean)}
    if std is not None:
        std = _columns(std, len(X32))
        result["std"] = _relative_deviation(_checked(got["std"], std), std, mean)
    if "jacobian" in names:
        expected = np.asarray(model.predict_jacobian(X_fit), dtype=np.float64)
        keep = _off_kinks(model, X32.astype(np.float64))
        jacobian = _checked(got["jacobian"], expected)
        result["jacobian"] = _jacobian_deviation(jacobian[keep], expected[keep])
    return result


def parity(model, onnx_model: onnx.ModelProto, X) -> float:
    """The largest of :func:`deviations` over the graph's outputs."""
    return max(deviations(model, onnx_model, X).values())


def _columns(values, n_rows: int) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(n_rows, -1)


def _checked(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    got = got.astype(np.float64)
    if got.shape != expected.shape:
        raise ParityError(f"ONNX output shape {got.shape} != expected shape {expected.shape}")
    return got


def _relative_deviation(got: np.ndarray, expected: np.ndarray, reference: np.ndarray) -> float:
    # Equal values agree, equal infinities included (an overflow both sides make); a NaN or a
    # one-sided infinity is an infinite deviation. The spread comes from the finite reference.
    agree = got == expected
    diff = np.abs(np.subtract(got, expected, out=np.zeros_like(got), where=~agree))
    if not np.isfinite(diff).all():
        return float("inf")
    finite = np.ma.masked_invalid(reference)
    spread = finite.std(axis=0).filled(0.0)
    largest = np.abs(finite).max(axis=0).filled(0.0)
    spread = np.where(spread > 0, spread, np.where(largest > 0, largest, 1.0))
    return float((diff / spread).max())


def _jacobian_deviation(got: np.ndarray, expected: np.ndarray) -> float:
    # An overflowed output times a zero derivative is NaN on both sides: that agrees too; so
    # does float32's infinity for a derivative beyond float32's range.
    beyond = np.abs(expected) > np.finfo(np.float32).max
    overflow = np.isinf(got) & beyond & (np.sign(got) == np.sign(expected))
    agree = (got == expected) | (np.isnan(got) & np.isnan(expected)) | overflow
    diff = np.abs(np.subtract(got, expected, out=np.zeros_like(got), where=~agree))
    if not np.isfinite(diff).all():
        return float("inf")
    largest = np.abs(np.ma.masked_invalid(expected)).max(axis=(0, 2)).filled(0.0)
    largest = np.where(largest > 0, largest, 1.0)
    return float((diff / largest[None, :, None]).max(initial=0.0))


def _off_kinks(model, X: np.ndarray) -> np.ndarray:
    """Rows whose pre-activations all stay ``KINK_MARGIN`` away from their activation's kinks."""
    keep = np.ones(len(X), dtype=bool)
    for net in members(model):
        network, layers = fitted_network(net)
        distance = network.kink_distance(layers, net.x_scaler_.transform(X), flat=KINK_MARGIN)
        keep &= distance > KINK_MARGIN
    return keep


def check_parity(
    model,
    onnx_model: onnx.ModelProto,
    low,
    high,
    *,
    tolerance: float = PARITY_TOLERANCE,
    what: str = "the ONNX export",
) -> float:
    """:func:`deviations` on random points in the training box and in the box three times as wide.

    The wide box reaches the clips and kinks of the activations. For log-scaled inputs both
    boxes are taken in log space, so the points stay positive.

    Parameters
    ----------
    model, onnx_model
        As for :func:`deviations`.
    low, high : array-like of shape (n_features,)
        The training range of every input.
    tolerance : float
        Largest deviation accepted for the outputs and ``std``; ``jacobian`` is held to
        ``JACOBIAN_TOLERANCE``.
    what : str
        Names the model in the error message.

    Returns
    -------
    float
        The largest deviation.

    Raises
    ------
    ParityError
        If a deviation exceeds its tolerance (or is not finite); the message names the output.
    """
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    log = members(model)[0].x_scaler_.method == "log"
    if log:
        low, high = np.log(low), np.log(high)
    width = high - low
    rng = np.random.default_rng(0)
    size = (_PROBE_POINTS, len(low))
    X = np.vstack([rng.uniform(low, high, size), rng.uniform(low - width, high + width, size)])
    found = deviations(model, onnx_model, np.exp(X) if log else X)
    for output, deviation in found.items():
        limit = JACOBIAN_TOLERANCE if output == "jacobian" else tolerance
        if not deviation <= limit:
            reference = "max |jacobian|" if output == "jacobian" else "std(y)"
            raise ParityError(
                f"{what} deviates from the model in {output!r} by {deviation:.3g} x "
                f"{reference} (limit {limit:g}) on training-range and 3x-range points"
            )
    return max(found.values())
