"""Write a fitted model into a model repository as a new, atomically published version.

Layout (Triton's): ``<repo>/<name>/<version>/model.onnx`` + ``jacobian.onnx`` + ``model.json``
(+ extra files such as plots) and ``<repo>/<name>/config.pbtxt``. ``model.onnx`` computes
``outputs`` (and an ensemble's ``std``); ``jacobian.onnx`` computes the same plus ``jacobian``, in
a second graph because onnxruntime runs a whole graph whatever outputs are asked for.

A version is assembled in a hidden temporary directory inside ``<repo>/<name>/``, fsynced and
renamed into place, so a reader (the service, Triton) sees either no version or a complete one;
hidden names are never taken for versions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.bundle_format import (
    CARD_FORMAT,
    CARD_KEY,
    INPUT_TENSOR,
    JACOBIAN_FILE,
    JACOBIAN_TENSOR,
    MODEL_FILE,
    RESERVED_FILES,
    check_name,
    is_valid_name,
    latest_version,
    read_card,
    version_dir,
)
from training.atomic import (
    remove_abandoned,
    remove_if_empty,
)
from training.ensemble import SurrogateEnsemble
from training.errors import ParameterError
from training.export import OUTPUT_DATATYPE, describe, output_shapes, to_onnx
from training.jsonable import jsonable
from training.parity import ParityError, check_parity
from training.publish import publish, triton_config

__all__ = [
    "CARD_FORMAT",
    "CARD_KEY",
    "ModelCard",
    "ParityError",
    "check_name",
    "latest_version",
    "read_card",
    "version_dir",
    "write_bundle",
]



@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """The fields of ``model.json``, in the order they are written.

    ``version`` and ``onnx`` are filled in by :func:`write_bundle` when the version is published;
    ``ensemble`` (``{"members", "seeds"}``) is written for ensembles only.
    """

    format: str = CARD_FORMAT
    name: str
    version: int = 0
    description: str = ""
    created: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    tensors: dict[str, Any]
    layers: list[dict[str, Any]]
    scaling: dict[str, Any]
    training: dict[str, Any]
    metrics: dict[str, Any]
    sensitivity: dict[str, Any] | None = None
    ensemble: dict[str, Any] | None = None
    onnx: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        card = asdict(self)
        for optional in ("sensitivity", "ensemble"):
            if card[optional] is None:
                del card[optional]
        return card


def write_bundle(
    model,
    repo: str | os.PathLike,
    name: str,
    *,
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    training_info: Mapping[str, Any],
    description: str = "",
    extra_files: Mapping[str, bytes] | None = None,
    sensitivity: Mapping[str, Any] | None = None,
) -> Path:
    """Export ``model`` and publish it as the next version of ``name`` in ``repo``.

    Parameters
    ----------
    model : SurrogateMLP
        A fitted estimator.
    repo : path
        The model repository; created if missing.
    name : str
        Model name, ``[A-Za-z0-9][A-Za-z0-9_.-]*``, at most 64 characters.
    inputs : sequence of mapping
        One ``{"name", "unit", "min", "max"}`` per input column, min/max the training range.
    outputs : sequence of mapping
        One ``{"name", "unit"}`` per output column.
    metrics, training_info : mapping
        The card's ``metrics`` and ``training`` sections (JSON-able; numpy scalars are fine).
        ``training`` defaults ``estimator``, ``params`` and ``epochs`` from the model.
    description : str
        Free text for the card.
    extra_files : mapping of str to bytes, optional
        More files for the version directory, e.g. ``{"parity.png": ...}``.
    sensitivity : mapping, optional
        The card's ``sensitivity`` section (:func:`training.pipeline.sensitivity_section`).

    Returns
    -------
    Path
        The new version directory ``<repo>/<name>/<version>``.

    Raises
    ------
    ValueError
        Invalid name, specs that do not match the model, or a bad extra file name.
    ParityError
        onnxruntime deviates from ``predict`` by more than ``PARITY_TOLERANCE`` times the
        spread of y (:func:`training.export.check_parity`); nothing is written.
    """
    check_name(name)
    extra = _check_extra_files(extra_files or {})
    inputs, outputs = _input_specs(model, inputs), _output_specs(model, outputs)
    graphs = {
        MODEL_FILE: to_onnx(model, name=name),
        JACOBIAN_FILE: to_onnx(model, name=name, jacobian=True),
    }
    low, high = ([spec[key] for spec in inputs] for key in ("min", "max"))
    try:
        for file_name, graph in graphs.items():
            check_parity(model, graph, low, high, what=f"the ONNX export of {name!r} ({file_name})")
    except ParityError as exc:
        raise ParityError(f"{exc}; nothing was written to {repo}") from None
    card = ModelCard(
        name=name,
        description=description,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        inputs=inputs,
        outputs=outputs,
        tensors=_tensors(model),
        **describe(model),
        training=jsonable({**_training_defaults(model), **training_info}),
        metrics=jsonable(metrics),
        sensitivity=None if sensitivity is None else jsonable(sensitivity),
        ensemble=_ensemble_section(model),
    )
    model_dir = Path(repo) / name
    created_dir = not model_dir.is_dir()
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned(model_dir)  # staging left by a writer killed long ago
    try:
        return publish(model_dir, card, graphs, extra, triton_config(model, name))
    except BaseException:
        if created_dir:
            remove_if_empty(model_dir)
        raise


def _tensors(model) -> dict[str, Any]:
    """The card's ``tensors``: every output of both graphs, ``file`` naming the second one."""
    outputs = [{"name": output, "shape": shape, "datatype": OUTPUT_DATATYPE}
               for output, shape in output_shapes(model).items()]
    jacobian = output_shapes(model, jacobian=True)[JACOBIAN_TENSOR]
    outputs.append({"name": JACOBIAN_TENSOR, "shape": jacobian, "datatype": OUTPUT_DATATYPE,
                    "file": JACOBIAN_FILE})
    return {"input": INPUT_TENSOR, "outputs": outputs}


def _ensemble_section(model) -> dict[str, Any] | None:
    if not isinstance(model, SurrogateEnsemble):
        return None
    return {"members": len(model.estimators_), "seeds": [int(seed) for seed in model.seeds_]}


def _input_specs(model, inputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    specs = [
        {
            "name": str(s["name"]),
            "unit": str(s.get("unit", "")),
            "min": float(s["min"]),
            "max": float(s["max"]),
        }
        for s in inputs
    ]
    _check_names(specs, model.n_features_in_, "inputs")
    bad = [
        s["name"]
        for s in specs
        if not (math.isfinite(s["min"]) and s["min"] <= s["max"] and math.isfinite(s["max"]))
    ]
    if bad:
        raise ParameterError(f"inputs {bad} need finite min <= max (the training range)")
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is not None and [s["name"] for s in specs] != [str(n) for n in fitted]:
        raise ParameterError(
            f"input names {[s['name'] for s in specs]} differ from the columns "
            f"the model was fit on, {list(fitted)}"
        )
    return specs


def _output_specs(model, outputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    specs = [{"name": str(s["name"]), "unit": str(s.get("unit", ""))} for s in outputs]
    _check_names(specs, model.n_outputs_, "outputs")
    return specs


def _check_names(specs: list[dict], expected: int, what: str) -> None:
    names = [s["name"] for s in specs]
    if len(names) != expected:
        raise ParameterError(f"the model has {expected} {what}, {len(names)} {what} were described")
    if len(set(names)) != len(names) or not all(names):
        raise ParameterError(f"{what} names must be unique and non-empty, got {names}")


def _check_extra_files(files: Mapping[str, bytes]) -> dict[str, bytes]:
    for file_name, data in files.items():
        if not is_valid_name(file_name) or file_name in RESERVED_FILES:
            raise ParameterError(f"invalid extra file name {file_name!r}")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"extra file {file_name!r} must be bytes, got {type(data).__name__}")
    return {file_name: bytes(data) for file_name, data in files.items()}


def _training_defaults(model) -> dict[str, Any]:
    return {
        "estimator": type(model).__name__,
        "params": model.get_params(deep=False),
        "epochs": int(getattr(model, "n_iter_", 0)),
    }
