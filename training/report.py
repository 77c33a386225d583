"""Held-out metrics and the two plots every bundle carries (convergence, predicted vs true)."""

from __future__ import annotations

import io

import numpy as np


def holdout_metrics(Y_true: np.ndarray, Y_pred: np.ndarray, names: list[str]) -> dict:
    """R2, RMSE and max absolute error per output, in physical units."""
    Y_true = np.asarray(Y_true, dtype=np.float64).reshape(len(Y_true), -1)
    Y_pred = np.asarray(Y_pred, dtype=np.float64).reshape(Y_true.shape)
    per_output = {}
    for j, name in enumerate(names):
        err = Y_pred[:, j] - Y_true[:, j]
        ss_tot = float(np.sum((Y_true[:, j] - Y_true[:, j].mean()) ** 2))
        rmse = float(np.sqrt(np.mean(err**2)))
        per_output[name] = {
            "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan"),
            "rmse": rmse,
            "relative_rmse": rmse / float(np.std(Y_true[:, j])) if ss_tot > 0 else float("nan"),
            "max_abs_error": float(np.max(np.abs(err))),
        }
    return per_output


def figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def convergence_png(loss_curve, validation_curve, title: str) -> bytes:
    """Training and validation loss per epoch on a log scale, as COMSOL shows convergence."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    epochs = np.arange(1, len(loss_curve) + 1)
    ax.semilogy(epochs, loss_curve, label="training loss")
    if validation_curve is not None and len(validation_curve):
        ax.semilogy(np.arange(1, len(validation_curve) + 1), validation_curve,
                    label="validation loss")
    ax.set_xlabel("epoch / iteration")
    ax.set_ylabel("mean squared error (scaled units)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return figure_png(fig)


def parity_png(Y_true: np.ndarray, Y_pred: np.ndarray, names: list[str], title: str) -> bytes:
    """Predicted against true values on the held-out rows, one panel per output."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    n = len(names)
    fig = Figure(figsize=(4.2 * n, 4.0), layout="constrained")
    Y_true = np.asarray(Y_true).reshape(len(Y_true), -1)
    Y_pred = np.asarray(Y_pred).reshape(Y_true.shape)
    for j, name in enumerate(names):
        ax = fig.add_subplot(1, n, j + 1)
        ax.scatter(Y_true[:, j], Y_pred[:, j], s=6, alpha=0.6)
        low = min(Y_true[:, j].min(), Y_pred[:, j].min())
        high = max(Y_true[:, j].max(), Y_pred[:, j].max())
        ax.plot([low, high], [low, high], color="black", linewidth=0.8)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
        ax.set_aspect("equal", adjustable="datalim")
    fig.suptitle(title)
    return figure_png(fig)
