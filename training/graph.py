"""A small ONNX graph builder shared by the activation registry and the exporter.

Activations emit themselves through ``GraphBuilder.op`` and ``GraphBuilder.const`` only, so the
registry does not need to know how a model is assembled.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Pinned to what the pinned onnxruntime (>= 1.20) runs: opset 21 needs IR version 10.
OPSET = 21
IR_VERSION = 10


class GraphBuilder:
    """Accumulates nodes and float32 initializers; hands out unique tensor names."""

    def __init__(self, prefix: str = "") -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._prefix = prefix
        self._counter = itertools.count()

    def fresh(self, hint: str) -> str:
        return f"{self._prefix}{hint}_{next(self._counter)}"

    def op(self, op_type: str, *inputs: str, name_hint: str | None = None, **attrs) -> str:
        """Add one single-output node and return the name of its output."""
        out = self.fresh(name_hint or op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, list(inputs), [out], name=self.fresh(op_type), **attrs)
        )
        return out

    def const(self, value, name_hint: str = "c", dtype=np.float32) -> str:
        """Add an initializer (float32 unless told) and return its name."""
        name = self.fresh(name_hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def rename(self, tensor: str, final_name: str) -> None:
        """Make ``final_name`` an alias of ``tensor`` (a graph output needs a fixed name)."""
        self.nodes.append(
            helper.make_node("Identity", [tensor], [final_name], name=self.fresh("Identity"))
        )

    def make_model(
        self,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
        graph_name: str,
        metadata: dict[str, str] | None = None,
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, graph_name, inputs, outputs, initializer=self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="surrogate",
        )
        model.ir_version = IR_VERSION
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        return model


def float_tensor(name: str, *widths: int) -> onnx.ValueInfoProto:
    """A float32 [N, *widths] value info with a symbolic batch dimension."""
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *widths])
