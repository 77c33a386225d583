"""Offline side: data loading, the SurrogateMLP estimator and its ensembles, activations, export,
sweeps, CLI.

Heavy imports (scikit-learn, scipy, onnx) happen on first use, so that ``surrogate serve`` runs
in an install without the ``train`` extra.
"""

from __future__ import annotations

__all__ = ["SurrogateEnsemble", "SurrogateMLP"]


def __getattr__(name: str):
    if name == "SurrogateMLP":
        from training.estimator import SurrogateMLP

        return SurrogateMLP
    if name == "SurrogateEnsemble":
        from training.ensemble import SurrogateEnsemble

        return SurrogateEnsemble
    raise AttributeError(f"module 'training' has no attribute {name!r}")
