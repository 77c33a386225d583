"""Which ONNX Runtime execution providers a device setting means: the one place that knows the
devices' providers, for the service's sessions and for ``surrogate serve``'s check before it
starts gunicorn.

Pure functions of the provider names: nothing here imports onnxruntime (callers pass what
``onnxruntime.get_available_providers()`` and ``session.get_providers()`` return).
"""

from __future__ import annotations

from collections.abc import Sequence

from service.settings import DEVICES, ConfigurationError, DeviceUnavailable

__all__ = ["CPU", "CUDA", "check_session_providers", "select_providers"]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def select_providers(device: str, available: Sequence[str]) -> list[str]:
    """The execution providers for ``device`` given ORT's ``available`` ones, in priority order.

    Raises
    ------
    DeviceUnavailable
        ``device`` is "cuda" and this onnxruntime build has no CUDA provider.
    """
    if device not in DEVICES:
        raise ConfigurationError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise DeviceUnavailable(
            f"SURROGATE_DEVICE=cuda but onnxruntime has no {CUDA} (it offers "
            f"{', '.join(available)}); install onnxruntime-gpu with a matching CUDA, or use "
            "device cpu or auto"
        )
    return [CPU]


def check_session_providers(device: str, actual: Sequence[str]) -> None:
    """Fail when a session asked for CUDA did not get it.

    ``get_available_providers()`` lists CUDA whenever onnxruntime-gpu is installed, even when
    the CUDA libraries or the driver are missing; ORT then quietly runs the session on the CPU.
    """
    if device == "cuda" and CUDA not in actual:
        raise DeviceUnavailable(
            "SURROGATE_DEVICE=cuda but onnxruntime could not start its CUDA provider (missing "
            f"CUDA/cuDNN libraries or driver?); the session runs on {', '.join(actual)}"
        )
