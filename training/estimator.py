"""``SurrogateMLP``: a scikit-learn regressor for smooth simulation tables, written in numpy.

Scaling of inputs and outputs is part of the estimator, so ``fit`` and ``predict`` take physical
units; the network itself lives in scaled space (see :mod:`training.network`).
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from training.network import (
    Layers,
    Network,
    Problem,
    fitted_network,
    hidden_sizes,
    layer_activations,
)
from training.optim import (
    SCHEDULES,
    AdamSettings,
    DivergenceError,
    History,
    LbfgsSettings,
    run_adam,
    run_lbfgs,
)
from training.scaling import SCALINGS, Scaler, column_names

__all__ = ["DivergenceError", "SurrogateMLP"]

SOLVERS: tuple[str, ...] = ("auto", "adam", "lbfgs")
X_SCALINGS: tuple[str, ...] = ("standard", "minmax", "none")
# "auto" polishes with full-batch L-BFGS up to this many training rows; above, Adam alone.
AUTO_LBFGS_MAX_ROWS = 20_000
# lbfgs_maxiter="auto" spends a roughly fixed compute budget (~22 s on one core here):
# an iteration costs about (training rows + LBFGS_ROWS_PER_PAIR * lbfgs_maxcor) * parameters,
# the second term being scipy's own work per stored correction pair (measured). 1000 rows and a
# (64, 64) network on 8 inputs get 8,000 iterations.
LBFGS_WORK, LBFGS_ROWS_PER_PAIR = 7.3e10, 20
LBFGS_MIN_ITER, LBFGS_MAX_ITER = 200, 20_000


class SurrogateMLP(RegressorMixin, BaseEstimator):
    """Multi-layer perceptron regressor with built-in scaling, per-layer activations and a
    solver that trains small tables to tight convergence.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(64, 64)
        Width of each hidden layer.
    activation : str or sequence of str, default="tanh"
        Hidden-layer activation: one name for all hidden layers, or one per hidden layer. Names
        and aliases from :data:`training.activations.ACTIVATIONS`.
    output_activation : str, default="identity"
        Activation of the output layer.
    solver : {"auto", "adam", "lbfgs"}, default="auto"
        ``"adam"``: mini-batch Adam. ``"lbfgs"``: full-batch L-BFGS-B. ``"auto"``: Adam, then an
        L-BFGS polish to tight convergence when there are at most 20,000 training rows.
    alpha : float, default=1e-6
        L2 penalty: the loss adds ``alpha / (2 n_rows) * sum(W**2)`` over weights (0 to 1e-5
        measured equally accurate on the benchmark functions).
    batch_size : int or "auto", default="auto"
        Adam mini-batch size; ``"auto"`` is ``min(200, n_rows)``.
    learning_rate_init : float, default=1e-3
        Initial Adam learning rate.
    learning_rate : {"constant", "cosine", "plateau"}, default="constant"
        Adam schedule. ``"cosine"`` anneals to 0 over ``max_iter`` epochs. ``"plateau"`` divides
        the rate by 5 whenever the monitored loss stalls (see ``tol``) and stops once it has
        fallen by 1000x.
    max_iter : int, default=100
        Maximum number of Adam epochs (solvers "adam" and "auto"; for "auto" a short warm
        start, measured to polish as well as 200 or 1000 epochs).
    tol : float, default=1e-4
        Adam stops when the monitored loss (validation loss with ``early_stopping``, training
        loss otherwise) has not improved by this *relative* amount for more than
        ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default=10
        Patience of the ``tol`` rule, in epochs.
    early_stopping : bool, default=False
        Monitor the validation loss instead of the training loss, and keep the parameters with
        the best validation loss (in every phase).
    validation_fraction : float, default=0.1
        Fraction of rows held out to compute ``validation_scores_``; 0 trains on every row.
        No rows are held out when the fraction amounts to less than one row.
    lbfgs_maxiter : int or "auto", default="auto"
        Maximum number of L-BFGS iterations (solvers "lbfgs" and "auto"). ``"auto"`` spends
        about the same time whatever the table size: 8,000 iterations for 1000 rows and a
        (64, 64) network on 8 inputs (~22 s on one core), between 200 and 20,000 in general.
    lbfgs_ftol : float, default=0.0
        L-BFGS stops when ``(f_k - f_k+1) / max(|f_k|, |f_k+1|, 1) <= lbfgs_ftol``.
    lbfgs_gtol : float, default=1e-12
        L-BFGS stops when the largest gradient component is at most this.
    lbfgs_maxcor : int, default=50
        Number of correction pairs L-BFGS keeps (scipy's default, 10, converges several times
        slower on these fits; 50 and 100 were measured equal per second).
    x_scaling : {"standard", "minmax", "none"}, default="standard"
        Scaling of the inputs, per column.
    y_scaling : {"standard", "minmax", "log", "none"}, default="standard"
        Scaling of the outputs, per column; ``"log"`` for positive outputs spanning decades.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the validation split and mini-batch shuffling.
    callback : callable or None, default=None
        Called as ``callback(epoch, train_loss, val_loss)`` after every Adam epoch and every
        L-BFGS iteration (``epoch`` counts both, from 1); ``val_loss`` is None without a split.

    Attributes
    ----------
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string column names.
    n_outputs_ : int
    coefs_ : list of ndarray of shape (fan_in, fan_out)
        Weights, in scaled space.
    intercepts_ : list of ndarray of shape (fan_out,)
    activations_ : tuple of str
        Canonical activation name of every layer, the output layer's last.
    activation_params_ : list of dict
        Learned activation parameters per layer (PReLU's ``"slope"``), else empty.
    x_scaler_, y_scaler_ : Scaler
    loss_curve_ : list of float
        Training loss (half MSE in scaled space plus the L2 term) per epoch / iteration.
    validation_scores_ : list of float or None
        Validation loss (half MSE in scaled space) per epoch / iteration, None without a split.
    n_iter_ : int
        Adam epochs plus L-BFGS iterations run.
    best_loss_ : float
        Lowest training loss reached.
    fit_log_ : list of str
        What each phase did and why it stopped, including restarts after divergence.
    """

    def __init__(
        self,
        hidden_layer_sizes=(64, 64),
        activation="tanh",
        output_activation="identity",
        solver="auto",
        alpha=1e-6,
        batch_size="auto",
        learning_rate_init=1e-3,
        learning_rate="constant",
        max_iter=100,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        lbfgs_maxiter="auto",
        lbfgs_ftol=0.0,
        lbfgs_gtol=1e-12,
        lbfgs_maxcor=50,
        x_scaling="standard",
        y_scaling="standard",
        random_state=None,
        callback=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.output_activation = output_activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.lbfgs_maxiter = lbfgs_maxiter
        self.lbfgs_ftol = lbfgs_ftol
        self.lbfgs_gtol = lbfgs_gtol
        self.lbfgs_maxcor = lbfgs_maxcor
        self.x_scaling = x_scaling
        self.y_scaling = y_scaling
        self.random_state = random_state
        self.callback = callback

    def fit(self, X, y):
        """Fit the network to ``(X, y)`` in physical units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : SurrogateMLP

        Raises
        ------
        ValueError
            For invalid parameters, or ``y_scaling="log"`` with a non-positive output.
        DivergenceError
            When the loss stays non-finite after the learning-rate restarts.
        """
        self._check_params()
        y_names = column_names(y)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        self._y_1d = y.ndim == 1
        y = y.reshape(len(y), -1)
        activations = layer_activations(
            self.activation, self.output_activation, len(hidden_sizes(self.hidden_layer_sizes))
        )
        self.x_scaler_ = Scaler(self.x_scaling).fit(X)
        self.y_scaler_ = Scaler(self.y_scaling).fit(y, y_names)
        rng = check_random_state(self.random_state)
        net = Network((X.shape[1], *hidden_sizes(self.hidden_layer_sizes), y.shape[1]), activations)
        problem = Problem.split(
            net,
            net.initial(rng),
            self.x_scaler_.transform(X),
            self.y_scaler_.transform(y),
            self.alpha,
            self.validation_fraction,
            rng,
        )
        history = History(problem.x_val is not None, self.callback)
        self.fit_log_ = []
        # One BLAS thread: the matrices are small, and threads made L-BFGS 4x slower per iteration
        # on a 2-core machine.
        with threadpool_limits(limits=1), np.errstate(over="ignore", invalid="ignore"):
            self._train(problem, rng, history)
        self._set_fitted(net, problem.layers, history)
        return self

    def predict(self, X):
        """Predict in physical units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs), float64
            1-D when the model was fitted on a 1-D ``y``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        net, layers = fitted_network(self)
        y = self.y_scaler_.inverse(net.predict(layers, self.x_scaler_.transform(X)))
        return y.ravel() if self._y_1d else y

    def predict_jacobian(self, X):
        """Derivatives of the prediction with respect to the inputs, in physical units.

        The analytic chain rule through the input scaling, every layer and the output scaling,
        in float64 (SMT's ``predict_derivatives`` for every input at once). At a kink of a
        piecewise-linear activation the derivative is the one-sided value ``derivative`` gives.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        jac : ndarray of shape (n_samples, n_outputs, n_features), float64
            ``jac[n, i, j] = d y[n, i] / d X[n, j]``, 3-D even for a model fitted on a 1-D ``y``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        net, layers = fitted_network(self)
        out, jac = net.jacobian(layers, self.x_scaler_.transform(X))
        x_scaler, y_scaler = self.x_scaler_, self.y_scaler_
        # u = (x - offset) / scale (of log x for "log"); y = out * scale + offset (then exp).
        du_dx = 1.0 / (x_scaler.scale_ * X) if x_scaler.method == "log" else 1.0 / x_scaler.scale_
        dy_dout = y_scaler.scale_ * (y_scaler.inverse(out) if y_scaler.method == "log" else 1.0)
        with np.errstate(invalid="ignore"):  # an overflowed exp times a zero derivative is NaN
            return dy_dout[..., None] * jac * np.broadcast_to(du_dx, X.shape)[:, None, :]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _train(self, problem: Problem, rng: np.random.RandomState, history: History) -> None:
        n_train = len(problem.x)
        if self.solver in ("adam", "auto"):
            batch = min(200 if self.batch_size == "auto" else self.batch_size, n_train)
            settings = AdamSettings(
                self.max_iter,
                batch,
                self.learning_rate_init,
                self.learning_rate,
                self.tol,
                self.n_iter_no_change,
                self.early_stopping,
            )
            run_adam(problem, settings, rng, history, self.fit_log_)
        if self.solver == "lbfgs" or (self.solver == "auto" and n_train <= AUTO_LBFGS_MAX_ROWS):
            settings = LbfgsSettings(
                self._lbfgs_iterations(problem),
                self.lbfgs_ftol,
                self.lbfgs_gtol,
                self.lbfgs_maxcor,
                self.early_stopping,
            )
            run_lbfgs(problem, settings, history, self.fit_log_, fallback=self.solver == "auto")

    def _lbfgs_iterations(self, problem: Problem) -> int:
        if self.lbfgs_maxiter != "auto":
            return self.lbfgs_maxiter
        rows = len(problem.x) + LBFGS_ROWS_PER_PAIR * self.lbfgs_maxcor
        iterations = LBFGS_WORK / (rows * problem.net.n_params)
        return int(min(max(iterations, LBFGS_MIN_ITER), LBFGS_MAX_ITER))

    def _set_fitted(self, net: Network, layers: Layers, history: History) -> None:
        self.n_outputs_ = net.sizes[-1]
        self.coefs_ = [c.copy() for c in layers.coefs]
        self.intercepts_ = [b.copy() for b in layers.intercepts]
        self.activations_ = tuple(act.name for act in net.activations)
        self.activation_params_ = [{k: v.copy() for k, v in p.items()} for p in layers.act_params]
        self.loss_curve_ = history.loss
        self.validation_scores_ = history.validation if history.has_validation else None
        self.n_iter_ = len(history.loss)
        self.best_loss_ = min(history.loss)

    def _check_params(self) -> None:
        _check_choice("solver", self.solver, SOLVERS)
        _check_choice("learning_rate", self.learning_rate, SCHEDULES)
        _check_choice("x_scaling", self.x_scaling, X_SCALINGS)
        _check_choice("y_scaling", self.y_scaling, SCALINGS)
        hidden_sizes(self.hidden_layer_sizes)
        for name in ("max_iter", "n_iter_no_change", "lbfgs_maxcor"):
            _check_number(name, getattr(self, name), Integral, low=1)
        if self.lbfgs_maxiter != "auto":
            _check_number("lbfgs_maxiter", self.lbfgs_maxiter, Integral, low=1)
        for name in ("alpha", "tol", "lbfgs_ftol", "lbfgs_gtol"):
            _check_number(name, getattr(self, name), Real, low=0)
        _check_number("learning_rate_init", self.learning_rate_init, Real, low=0, strict=True)
        _check_number("validation_fraction", self.validation_fraction, Real, low=0)
        if self.validation_fraction >= 1:
            raise ValueError(f"validation_fraction must be < 1, got {self.validation_fraction}")
        if self.batch_size != "auto":
            _check_number("batch_size", self.batch_size, Integral, low=1)
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be callable or None, got {self.callback!r}")


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_number(name: str, value, kind, low: float, strict: bool = False) -> None:
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        bound = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
