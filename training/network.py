"""A fully connected network over one flat float64 parameter vector: forward pass and backprop.

Keeping every weight, bias and learnable activation parameter in one contiguous vector lets Adam
update all of them with a handful of array operations per step and lets L-BFGS (scipy) optimise
the same vector directly; the per-layer arrays are views into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.activations import Activation, init_std

__all__ = ["Layers", "Network"]


@dataclass(frozen=True)
class Layers:
    """Per-layer views into a flat vector (parameters or their gradient)."""

    coefs: list[np.ndarray]
    intercepts: list[np.ndarray]
    act_params: list[dict[str, np.ndarray]]


class Network:
    """Layout, initialisation, forward pass and loss gradient of an MLP.

    Parameters
    ----------
    sizes : sequence of int
        Widths ``[n_inputs, hidden..., n_outputs]``.
    activations : sequence of Activation
        One per layer after the input (``len(sizes) - 1``), the output layer's last.
    """

    def __init__(self, sizes: Sequence[int], activations: Sequence[Activation]) -> None:
        self.sizes = tuple(int(s) for s in sizes)
        self.activations = tuple(activations)
        self._layout: list[tuple[slice, slice, dict[str, slice]]] = []
        start = 0
        for fan_in, fan_out, act in zip(self.sizes[:-1], self.sizes[1:], self.activations):
            w = slice(start, start + fan_in * fan_out)
            b = slice(w.stop, w.stop + fan_out)
            start = b.stop
            extra = {}
            for name in sorted(act.param_init):
                extra[name] = slice(start, start + fan_out)
                start += fan_out
            self._layout.append((w, b, extra))
        self.n_params = start
        # Full-batch passes run in chunks of rows small enough for the layer activations to stay
        # in a core's L2 cache: measured 1.5x faster per row than whole 1000-row batches.
        self.chunk_rows = max(32, 16384 // max(self.sizes))

    def views(self, flat: np.ndarray) -> Layers:
        """Per-layer views (not copies) into ``flat``."""
        layers = Layers([], [], [])
        for (w, b, extra), fan_in, fan_out in zip(self._layout, self.sizes[:-1], self.sizes[1:]):
            layers.coefs.append(flat[w].reshape(fan_in, fan_out))
            layers.intercepts.append(flat[b])
            layers.act_params.append({name: flat[s] for name, s in extra.items()})
        return layers

    def initial(self, rng: np.random.RandomState) -> np.ndarray:
        """A fresh parameter vector: normal weights scaled by each activation's init rule,
        zero biases, and the activations' own initial parameter values."""
        flat = np.zeros(self.n_params)
        layers = self.views(flat)
        for coef, params, act in zip(layers.coefs, layers.act_params, self.activations):
            fan_in, fan_out = coef.shape
            coef[...] = rng.normal(scale=init_std(act.init, fan_in, fan_out), size=coef.shape)
            for name, value in params.items():
                value[...] = act.param_init[name]
        return flat

    def forward(self, layers: Layers, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Pre-activations and activations of every layer; ``outputs[-1]`` is the prediction."""
        pre, out = [], [x]
        for coef, bias, params, act in zip(
            layers.coefs, layers.intercepts, layers.act_params, self.activations
        ):
            z = out[-1] @ coef
            z += bias
            pre.append(z)
            out.append(act.forward(z, params))
        return pre, out

    def predict(self, layers: Layers, x: np.ndarray) -> np.ndarray:
        """The network output for ``x`` (scaled space)."""
        out = np.empty((len(x), self.sizes[-1]))
        for start in range(0, len(x), self.chunk_rows):
            stop = start + self.chunk_rows
            out[start:stop] = self.forward(layers, x[start:stop])[1][-1]
        return out

    @staticmethod
    def penalty(layers: Layers, alpha_n: float) -> float:
        """The L2 term ``alpha_n / 2 * sum(W**2)`` over weights (not biases)."""
        return 0.5 * alpha_n * sum(float(np.vdot(coef, coef)) for coef in layers.coefs)

    def data_loss_grad(
        self, layers: Layers, grads: Layers, x: np.ndarray, y: np.ndarray, alpha_n: float
    ) -> float:
        """Half the mean squared error on ``(x, y)``; writes the gradient of that loss plus the
        L2 term ``alpha_n / 2 * sum(W**2)`` into ``grads``.

        Returns the data part of the loss only: adding :meth:`penalty` is left to the caller,
        which needs it once per epoch rather than once per mini-batch.
        """
        pre, out = self.forward(layers, x)
        diff = out[-1] - y
        loss = 0.5 * float(np.vdot(diff, diff)) / diff.size
        delta = diff * (1.0 / diff.size)
        for layer in range(len(pre) - 1, -1, -1):
            delta = self._layer_grad(layer, layers, grads, pre[layer], out[layer], delta, alpha_n)
        return loss

    def _layer_grad(
        self,
        layer: int,
        layers: Layers,
        grads: Layers,
        z: np.ndarray,
        a_prev: np.ndarray,
        delta: np.ndarray,
        alpha_n: float,
    ) -> np.ndarray | None:
        """Backprop through one layer: ``delta`` is dL/da on entry; returns dL/da of the layer
        below (None for the first layer)."""
        act, params = self.activations[layer], layers.act_params[layer]
        if act.param_grad is not None:
            for name, d_param in act.param_grad(z, params).items():
                np.sum(delta * d_param, axis=0, out=grads.act_params[layer][name])
        # The identity's derivative is 1: skipping the multiply saves a pass per step.
        if act.name != "identity":
            delta = delta * act.derivative(z, params)
        coef = layers.coefs[layer]
        np.matmul(a_prev.T, delta, out=grads.coefs[layer])
        if alpha_n:
            grads.coefs[layer] += alpha_n * coef
        np.sum(delta, axis=0, out=grads.intercepts[layer])
        return delta @ coef.T if layer else None
