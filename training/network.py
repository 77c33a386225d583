"""A fully connected network over one flat float64 parameter vector: forward pass, backprop, and
the training objective (:class:`Problem`).

Keeping every weight, bias and learnable activation parameter in one contiguous vector lets Adam
update all of them with a handful of array operations per step and lets L-BFGS (scipy) optimise
the same vector directly; the per-layer arrays are views into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np

from training.activations import Activation, get_activation, init_std
from training.errors import ParameterError

__all__ = [
    "Layers",
    "Network",
    "Problem",
    "fitted_network",
    "hidden_sizes",
    "layer_activations",
]


def hidden_sizes(sizes) -> tuple[int, ...]:
    """``hidden_layer_sizes`` (an int or a sequence) as a tuple; ValueError unless positive ints."""
    sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
    if not all(isinstance(s, Integral) and s > 0 for s in sizes):
        raise ParameterError(f"hidden_layer_sizes must be positive integers, got {sizes!r}")
    return sizes


def layer_activations(activation, output_activation: str, n_hidden: int) -> list[Activation]:
    """Registry entries for every layer: ``activation`` (one name for all hidden layers, or one
    per hidden layer), then ``output_activation``."""
    names = [activation] * n_hidden if isinstance(activation, str) else list(activation)
    if len(names) != n_hidden:
        raise ParameterError(
            f"activation lists {len(names)} names for {n_hidden} hidden layers; give one name "
            "for all layers or one per hidden layer"
        )
    return [get_activation(name) for name in (*names, output_activation)]


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
        for fan_in, fan_out, act in zip(
            self.sizes[:-1], self.sizes[1:], self.activations, strict=True
        ):
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
        for (w, b, extra), fan_in, fan_out in zip(
            self._layout, self.sizes[:-1], self.sizes[1:], strict=True
        ):
            layers.coefs.append(flat[w].reshape(fan_in, fan_out))
            layers.intercepts.append(flat[b])
            layers.act_params.append({name: flat[s] for name, s in extra.items()})
        return layers

    def initial(self, rng: np.random.RandomState) -> np.ndarray:
        """A fresh parameter vector: normal weights scaled by each activation's init rule,
        zero biases, and the activations' own initial parameter values."""
        flat = np.zeros(self.n_params)
        layers = self.views(flat)
        for coef, params, act in zip(
            layers.coefs, layers.act_params, self.activations, strict=True
        ):
            fan_in, fan_out = coef.shape
            coef[...] = rng.normal(scale=init_std(act.init, fan_in, fan_out), size=coef.shape)
            for name, value in params.items():
                value[...] = act.param_init[name]
        return flat

    def forward(self, layers: Layers, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Pre-activations and activations of every layer; ``outputs[-1]`` is the prediction."""
        pre, out = [], [x]
        for coef, bias, params, act in zip(
            layers.coefs, layers.intercepts, layers.act_params, self.activations, strict=True
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

    def jacobian(self, layers: Layers, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network output and its derivative with respect to ``x`` (scaled space).

        Forward mode: the derivative is carried as ``(rows, n_in, units)`` through every layer,
        multiplied by the weights and by each activation's derivative at its pre-activation.

        Returns
        -------
        out : ndarray of shape (n_rows, n_out)
        jac : ndarray of shape (n_rows, n_out, n_in)
        """
        n_in, n_out = self.sizes[0], self.sizes[-1]
        out, jac = np.empty((len(x), n_out)), np.empty((len(x), n_out, n_in))
        step = max(1, self.chunk_rows // n_in)
        for start in range(0, len(x), step):
            rows = slice(start, start + step)
            pre, outs = self.forward(layers, x[rows])
            d = np.eye(n_in)
            for z, coef, params, act in zip(
                pre, layers.coefs, layers.act_params, self.activations, strict=True
            ):
                d = (d @ coef) * act.derivative(z, params)[:, None, :]
            out[rows], jac[rows] = outs[-1], d.transpose(0, 2, 1)
        return out, jac

    def on_inputs(self, active: np.ndarray) -> Network:
        """The same network on the ``active`` inputs only (their indices)."""
        return Network((len(active), *self.sizes[1:]), self.activations)

    def widened(self, narrow: Network, theta: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Parameters of this network equal to ``theta`` of ``narrow`` (from :meth:`on_inputs`):
        the first-layer weights of the other inputs are zero, so they have no effect."""
        flat = np.zeros(self.n_params)
        wide, small = self.views(flat), narrow.views(theta)
        wide.coefs[0][active] = small.coefs[0]
        for big, little in zip(wide.coefs[1:], small.coefs[1:], strict=True):
            big[...] = little
        for big, little in zip(wide.intercepts, small.intercepts, strict=True):
            big[...] = little
        for big, little in zip(wide.act_params, small.act_params, strict=True):
            for name, value in little.items():
                big[name][...] = value
        return flat

    def kink_distance(self, layers: Layers, x: np.ndarray, flat: float = 0.0) -> np.ndarray:
        """Per row, the smallest distance of any pre-activation to a kink of its activation
        (``inf`` when no activation has kinks): where float rounding may pick either side.

        Units whose pre-activation varies by at most ``flat`` over the rows are left out: their
        input weights are that small, so the side rounding picks moves the derivative by as
        little (a ReLU that L2 shrank to nothing sits at its kink everywhere)."""
        distance = np.full(len(x), np.inf)
        pre, _ = self.forward(layers, x)
        for z, act in zip(pre, self.activations, strict=True):
            varying = np.ptp(z, axis=0) > flat if len(z) else np.ones(z.shape[1], dtype=bool)
            for kink in act.kinks:
                if varying.any():
                    distance = np.minimum(distance, np.abs(z[:, varying] - kink).min(axis=1))
        return distance

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
        delta = out[-1] - y
        loss = 0.5 * float(np.vdot(delta, delta)) / delta.size
        delta *= 1.0 / delta.size
        for layer in range(len(pre) - 1, -1, -1):
            delta = self._layer_grad(layer, layers, grads, pre[layer], out, delta, alpha_n)
        return loss

    def _layer_grad(
        self,
        layer: int,
        layers: Layers,
        grads: Layers,
        z: np.ndarray,
        out: list[np.ndarray],
        delta: np.ndarray,
        alpha_n: float,
    ) -> np.ndarray | None:
        """Backprop through one layer: ``delta`` is dL/da on entry (an array of our own, updated
        in place); returns dL/da of the layer below (None for the first layer). ``out`` holds
        every layer's output, the network input first."""
        act, params = self.activations[layer], layers.act_params[layer]
        if act.param_grad is not None:
            for name, d_param in act.param_grad(z, params).items():
                np.add.reduce(delta * d_param, axis=0, out=grads.act_params[layer][name])
        # The identity's derivative is 1: skipping the multiply saves a pass per step. Where the
        # derivative follows from the output (tanh), the activation is not evaluated again.
        if act.name != "identity":
            if act.output_derivative is not None:
                delta *= act.output_derivative(out[layer + 1])
            else:
                delta *= act.derivative(z, params)
        coef = layers.coefs[layer]
        np.matmul(out[layer].T, delta, out=grads.coefs[layer])
        if alpha_n:
            grads.coefs[layer] += alpha_n * coef
        np.add.reduce(delta, axis=0, out=grads.intercepts[layer])
        return delta @ coef.T if layer else None


def fitted_network(model) -> tuple[Network, Layers]:
    """The :class:`Network` and :class:`Layers` of a fitted ``SurrogateMLP``."""
    sizes = [model.n_features_in_] + [coef.shape[1] for coef in model.coefs_]
    net = Network(sizes, [get_activation(name) for name in model.activations_])
    return net, Layers(model.coefs_, model.intercepts_, model.activation_params_)


class Problem:
    """The training objective: scaled data, the parameter vector and its gradient buffer.

    The loss is half the mean squared error in scaled space plus ``alpha / (2 n_rows) *
    sum(W**2)``, scikit-learn's full-batch MLP loss; mini-batches keep the full-data ``n_rows``
    so that Adam and L-BFGS minimise the same function.
    """

    def __init__(self, net: Network, theta: np.ndarray, x, y, x_val, y_val, alpha: float) -> None:
        self.net, self.x, self.y, self.x_val, self.y_val = net, x, y, x_val, y_val
        self.theta, self.grad = theta, np.zeros_like(theta)
        self.layers, self.grads = net.views(self.theta), net.views(self.grad)
        self._grad_sum = np.zeros_like(theta)
        self.alpha_n = alpha / len(x)

    @classmethod
    def split(
        cls,
        net: Network,
        theta: np.ndarray,
        x,
        y,
        alpha: float,
        fraction: float,
        rng: np.random.RandomState,
    ) -> Problem:
        """Hold out a random ``fraction`` of the rows for validation (none if under one row)."""
        n_val = int(fraction * len(x))
        if n_val < 1:
            return cls(net, theta, x, y, None, None, alpha)
        order = rng.permutation(len(x))
        val, train = order[:n_val], order[n_val:]
        return cls(net, theta, x[train], y[train], x[val], y[val], alpha)

    def loss_grad(self, x: np.ndarray, y: np.ndarray) -> float:
        """Data loss on ``(x, y)``; the gradient (with the L2 term) lands in ``self.grad``."""
        return self.net.data_loss_grad(self.layers, self.grads, x, y, self.alpha_n)

    def full_loss_grad(self) -> float:
        """Data loss and gradient over every training row, summed over cache-sized chunks."""
        n, step = len(self.x), self.net.chunk_rows
        if n <= step:
            return self.loss_grad(self.x, self.y)
        total, self._grad_sum[...] = 0.0, 0.0
        for start in range(0, n, step):
            weight = min(step, n - start) / n
            total += weight * self.loss_grad(
                self.x[start : start + step], self.y[start : start + step]
            )
            self._grad_sum += weight * self.grad
        self.grad[...] = self._grad_sum
        return total

    def penalty(self) -> float:
        return self.net.penalty(self.layers, self.alpha_n)

    def val_loss(self) -> float | None:
        """Half the mean squared error on the validation rows (None without them)."""
        if self.x_val is None:
            return None
        diff = self.net.predict(self.layers, self.x_val) - self.y_val
        return 0.5 * float(np.vdot(diff, diff)) / diff.size
