"""Publishing a bundle: the files of one version (the card inside model.onnx and beside it, with
the graphs' sha256), Triton's config.pbtxt, and the atomic publication of both as the next
version of a model directory (see ``training.bundle`` for the layout and the guarantees).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from service.bundle_format import (
    CARD_FILE,
    CARD_KEY,
    INPUT_TENSOR,
    JACOBIAN_FILE,
    MODEL_FILE,
    TRITON_CONFIG_FILE,
    latest_version,
)
from training.atomic import fsync_dir, rename_new, staged_dir, staged_file, write_synced
from training.export import output_shapes
from training.graph import IR_VERSION, OPSET

if TYPE_CHECKING:
    from training.bundle import ModelCard

__all__ = ["publish", "triton_config"]

# Another writer may take the next version number meanwhile: the publisher tries the next one.
_PUBLISH_ATTEMPTS = 16


def publish(
    model_dir: Path, card: ModelCard, graphs: dict[str, onnx.ModelProto], extra: dict, config: str
) -> Path:
    """Stage config.pbtxt and the version, then rename the version into place (the commit) and
    replace the config; retry with the next number if another writer took it meanwhile.

    A failure before the commit leaves nothing behind. After it the version is public; only an
    I/O error of the config replace or of the final directory fsync can still surface.
    """
    with staged_file(model_dir, config.encode()) as staged_config:
        for _ in range(_PUBLISH_ATTEMPTS):
            version = (latest_version(model_dir.parent, card.name) or 0) + 1
            files = {**_bundle_files(replace(card, version=version), graphs), **extra}
            target = model_dir / str(version)
            with staged_dir(model_dir) as staging:
                for file_name, data in files.items():
                    write_synced(staging / file_name, data)
                fsync_dir(staging)
                if rename_new(staging, target):
                    os.replace(staged_config, model_dir / TRITON_CONFIG_FILE)
                    fsync_dir(model_dir)
                    return target
    raise FileExistsError(f"{model_dir}: lost {_PUBLISH_ATTEMPTS} races for a new version number")


def _bundle_files(card: ModelCard, graphs: dict[str, onnx.ModelProto]) -> dict[str, bytes]:
    """model.onnx with the card in its metadata, jacobian.onnx, and model.json with the sha256
    of both (the card inside model.onnx cannot hold that file's own hash)."""
    jacobian_bytes = graphs[JACOBIAN_FILE].SerializeToString()
    info = {"file": MODEL_FILE, "opset": OPSET, "ir_version": IR_VERSION}
    others = {JACOBIAN_FILE: {"sha256": _sha256(jacobian_bytes)}}
    embedded = replace(card, onnx={**info, "graphs": others})
    proto = onnx.ModelProto()
    proto.CopyFrom(graphs[MODEL_FILE])
    entry = proto.metadata_props.add()
    entry.key, entry.value = CARD_KEY, json.dumps(embedded.to_dict(), allow_nan=False)
    onnx_bytes = proto.SerializeToString()
    card = replace(card, onnx={**info, "sha256": _sha256(onnx_bytes), "graphs": others})
    text = json.dumps(card.to_dict(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    return {
        MODEL_FILE: onnx_bytes,
        JACOBIAN_FILE: jacobian_bytes,
        CARD_FILE: text.encode("utf-8"),
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def triton_config(model, name: str) -> str:
    """Triton serves model.onnx: its input and outputs (``std`` too for an ensemble)."""
    outputs = "".join(
        f'  {{\n    name: "{output}"\n    data_type: TYPE_FP32\n'
        f"    dims: [ -1, {shape[1]} ]\n  }},\n"
        for output, shape in output_shapes(model).items()
    ).rstrip(",\n")
    return (
        f'name: "{name}"\n'
        'backend: "onnxruntime"\n'
        "max_batch_size: 0\n"
        f'input [\n  {{\n    name: "{INPUT_TENSOR}"\n    data_type: TYPE_FP32\n'
        f"    dims: [ -1, {model.n_features_in_} ]\n  }}\n]\n"
        f"output [\n{outputs}\n]\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
    )
