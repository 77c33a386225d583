"""Write real model bundles for tests: a linear ONNX graph ``y = x @ W + b`` plus its model card.

Reusable outside fixtures (``from tests.bundles import make_bundle``): the service tests, the
end-to-end tests and anything else that needs a model repository without training one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 21
IR_VERSION = 10


@dataclass(frozen=True)
class Bundle:
    """A bundle written by ``make_bundle``: where it is and what it computes."""

    path: Path
    weights: np.ndarray
    bias: np.ndarray
    card: dict[str, Any]

    @property
    def input_names(self) -> list[str]:
        return [spec["name"] for spec in self.card["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [spec["name"] for spec in self.card["outputs"]]

    def predict(self, x) -> np.ndarray:
        """What the served model answers for ``x`` (float32 arithmetic, as ORT does)."""
        x = np.asarray(x, dtype=np.float32).reshape(-1, self.weights.shape[0])
        return x @ self.weights + self.bias


def default_weights(n_inputs: int, n_outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct small weights, so a swapped column or output shows in the result."""
    weights = np.arange(1, n_inputs * n_outputs + 1, dtype=np.float32).reshape(n_inputs, n_outputs)
    bias = np.arange(n_outputs, dtype=np.float32) / 2
    return weights, bias


def make_bundle(
    repo: str | os.PathLike,
    name: str,
    version: int = 1,
    n_inputs: int = 2,
    n_outputs: int = 1,
    weights: tuple[Any, Any] | None = None,
    card_overrides: dict[str, Any] | None = None,
    extra_outputs: tuple[str, ...] = (),
    jacobian: bool = False,
) -> Bundle:
    """Write ``<repo>/<name>/<version>/model.onnx`` and ``model.json`` and return the bundle.

    Parameters
    ----------
    weights : (W, b), optional
        ``W`` of shape (n_inputs, n_outputs), ``b`` of shape (n_outputs,); default
        ``default_weights``.
    card_overrides : dict, optional
        Merged into the card recursively (dicts merge, other values replace, ``None`` deletes
        the key) after the sha256 is computed, so an override of ``onnx.sha256`` sticks.
    extra_outputs : tuple of str, optional
        Further graph outputs (as ``std`` or ``jacobian`` would be); the k-th is
        ``outputs * (k + 2)``, shape [N, n_outputs], and is listed in the card's tensors.
    jacobian : bool
        Also write ``jacobian.onnx`` (every output above plus ``jacobian`` [N, n_outputs,
        n_inputs], which is ``W.T`` for every row), listed in the card as the bundle contract
        says, with its sha256.
    """
    W, b = weights if weights is not None else default_weights(n_inputs, n_outputs)
    W = np.asarray(W, dtype=np.float32).reshape(n_inputs, n_outputs)
    b = np.asarray(b, dtype=np.float32).reshape(n_outputs)
    card = _card(name, version, n_inputs, n_outputs, extra_outputs)
    path = Path(repo) / name / str(version)
    path.mkdir(parents=True, exist_ok=True)
    if jacobian:
        card["tensors"]["outputs"].append(
            {"name": "jacobian", "shape": [-1, n_outputs, n_inputs], "datatype": "FP32",
             "file": "jacobian.onnx"}
        )
        graph_bytes = _linear_model(W, b, card, extra_outputs, True).SerializeToString()
        (path / "jacobian.onnx").write_bytes(graph_bytes)
        digest = hashlib.sha256(graph_bytes).hexdigest()
        card["onnx"]["graphs"] = {"jacobian.onnx": {"sha256": digest}}
    model = _linear_model(W, b, card, extra_outputs)
    model_bytes = model.SerializeToString()
    (path / "model.onnx").write_bytes(model_bytes)
    card["onnx"]["sha256"] = hashlib.sha256(model_bytes).hexdigest()
    _merge(card, card_overrides or {})
    (path / "model.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    return Bundle(path, W, b, card)


def _card(
    name: str, version: int, n_inputs: int, n_outputs: int, extra_outputs: tuple[str, ...]
) -> dict[str, Any]:
    inputs = [{"name": f"x{i}", "unit": "m", "min": 0.0, "max": 2.0} for i in range(n_inputs)]
    outputs = [{"name": f"y{j}", "unit": "W"} for j in range(n_outputs)]
    return {
        "format": "surrogate-bundle/1",
        "name": name,
        "version": version,
        "description": "linear test model y = x @ W + b",
        "created": "2026-11-23T10:00:00Z",
        "inputs": inputs,
        "outputs": outputs,
        "tensors": {
            "input": "inputs",
            "outputs": [
                {"name": tensor, "shape": [-1, n_outputs], "datatype": "FP32"}
                for tensor in ("outputs", *extra_outputs)
            ],
        },
        "layers": [{"units": n_outputs, "activation": "identity"}],
        "scaling": {
            "inputs": {"method": "none", "offset": [0.0] * n_inputs, "scale": [1.0] * n_inputs},
            "outputs": {"method": "none", "offset": [0.0] * n_outputs, "scale": [1.0] * n_outputs},
        },
        "training": {"estimator": "SurrogateMLP", "params": {}, "epochs": 0, "rows": 0},
        "metrics": {"split": "holdout", "rows": 0, "per_output": {}},
        "onnx": {"file": "model.onnx", "opset": OPSET, "ir_version": IR_VERSION},
    }


def _linear_model(
    W: np.ndarray,
    b: np.ndarray,
    card: dict[str, Any],
    extra_outputs: tuple[str, ...],
    jacobian: bool = False,
) -> onnx.ModelProto:
    n_inputs, n_outputs = W.shape
    nodes = [
        helper.make_node("MatMul", ["inputs", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["outputs"]),
    ]
    initializers = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")]
    for k, tensor in enumerate(extra_outputs):
        initializers.append(numpy_helper.from_array(np.float32(k + 2), f"factor_{k}"))
        nodes.append(helper.make_node("Mul", ["outputs", f"factor_{k}"], [tensor]))
    graph_outputs = [
        helper.make_tensor_value_info(tensor, TensorProto.FLOAT, ["N", n_outputs])
        for tensor in ("outputs", *extra_outputs)
    ]
    if jacobian:  # dy_i/dx_j = W[j, i] on every row: W.T expanded to [N, n_out, n_in]
        initializers += [
            numpy_helper.from_array(W.T[None].copy(), "WT"),
            numpy_helper.from_array(np.array([n_outputs, n_inputs], dtype=np.int64), "dims"),
        ]
        nodes += [
            helper.make_node("Shape", ["inputs"], ["rows"], end=1),
            helper.make_node("Concat", ["rows", "dims"], ["jacobian_shape"], axis=0),
            helper.make_node("Expand", ["WT", "jacobian_shape"], ["jacobian"]),
        ]
        graph_outputs.append(helper.make_tensor_value_info(
            "jacobian", TensorProto.FLOAT, ["N", n_outputs, n_inputs]
        ))
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, ["N", n_inputs])],
        graph_outputs,
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    entry = model.metadata_props.add()
    entry.key, entry.value = "surrogate.model_card", json.dumps(card)
    onnx.checker.check_model(model, full_check=True)
    return model


def _merge(target: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
