"""``SurrogateMLP``: a scikit-learn regressor for smooth simulation tables, written in numpy.

Scaling of inputs and outputs is part of the estimator, so ``fit`` and ``predict`` take physical
units; the network itself lives in scaled space (see :mod:`training.network`).
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from training.fitting import RACE_FOLDS, Notifier, Settings
from training.heap import roomy_heap
from training.network import Network, fitted_network, hidden_sizes, layer_activations
from training.optim import (
    AdamSettings,
    DivergenceError,
    LbfgsSettings,
    collected_notices,
    notify,
)
from training.parameters import check_parameters
from training.plan import (
    WARMUP_EPOCHS,
    activation_seconds,
    auto_maxcor,
    available_workers,
    default_time_budget,
    make_plan,
)
from training.procedure import Outcome, Recipe, fit_fixed, fit_selected
from training.scaling import Scaler, auto_output_scaling, column_names
from training.selection import PATHS

__all__ = ["AUTO_ACTIVATIONS", "DivergenceError", "SurrogateMLP"]

# The hidden activations activation="auto" races (in this order: a tie keeps the first).
AUTO_ACTIVATIONS = ("tanh", "silu")


class SurrogateMLP(RegressorMixin, BaseEstimator):
    """Multi-layer perceptron regressor with built-in scaling, per-layer activations, its L2
    regularization chosen by cross-validation, and compute sized to the table.

    With the default ``alpha="auto"`` a fit runs three regularization paths (alpha falling from
    10 or from 1 by decades, warm-started step to step, or 1e-5 from the start) on each of
    ``cv`` folds and keeps the path and step with the lowest mean validation loss
    (:mod:`training.selection`); the exported model is then that candidate's best fold model
    trained further on every row.
    Tables above 5000 rows choose on a 1000-row subsample, then train on all training rows with
    mini-batch Adam (cosine-decaying rate) and L-BFGS, watched by a validation split, and end
    with an L-BFGS pass over every row. Explicit parameters keep their meaning: ``alpha=1e-4``
    fits once at 1e-4.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(64, 64)
        Width of each hidden layer.
    activation : str or sequence of str, default="auto"
        Hidden-layer activation: one name for all hidden layers, or one per hidden layer. Names
        and aliases from :data:`training.activations.ACTIVATIONS`. ``"auto"`` (with
        ``alpha="auto"``): tanh and SiLU race on the first two folds of the selection (every
        path each) and the one validating better is cross-validated and fitted; tanh is
        smoother and usually wins on smooth tables, SiLU on tables with kinks or local bumps
        and on some noisy ones. With a given ``alpha``, ``"auto"`` is tanh. ``activations_``
        and ``selection_`` tell which.
        ``"sin"`` suits responses periodic in their inputs (angles, phases); it is not in the
        race (see the README's measurements).
    output_activation : str, default="identity"
        Activation of the output layer.
    solver : {"auto", "adam", "lbfgs"}, default="auto"
        ``"auto"``: Adam, then L-BFGS to tight convergence (large tables: a long mini-batch Adam
        phase first). ``"adam"``: mini-batch Adam only. ``"lbfgs"``: full-batch L-BFGS only.
        The selection (``alpha="auto"``) follows it: its path steps are L-BFGS runs (Adam
        epochs for ``"adam"``), after Adam's warm start for ``"auto"``.
    alpha : float or "auto", default="auto"
        L2 penalty: the loss adds ``alpha / (2 n_rows) * sum(W**2)`` over weights. ``"auto"``
        chooses it (and the path to it) by cross-validation from 10, 1, 0.1, ..., 1e-5.
    batch_size : int or "auto", default="auto"
        Adam mini-batch size; ``"auto"`` is ``min(200, n_rows)``, and for the long Adam phase
        of a large table ``4 sqrt(n_rows)`` between 200 and 2000.
    learning_rate_init : float, default=1e-3
        Initial Adam learning rate.
    learning_rate : {"constant", "cosine", "plateau"}, default="constant"
        Schedule of Adam's warm start. ``"cosine"`` anneals to 0 over ``max_iter`` epochs.
        ``"plateau"`` divides the rate by 5 whenever the monitored loss stalls (see ``tol``) and
        stops once it has fallen by 1000x. The long phase of a large table is always cosine.
    max_iter : int or "auto", default="auto"
        Adam epochs: of the warm start (``"auto"``: 100), or for a large table of its long
        phase (``"auto"``: about 60,000 steps, 20 to 400 epochs). For solver "adam" with
        ``alpha="auto"``, the epochs of one regularization path (``"auto"``: as
        ``lbfgs_maxiter``).
    tol : float, default=1e-4
        Adam's warm start stops when the monitored loss (validation loss with
        ``early_stopping``, training loss otherwise) has not improved by this *relative* amount
        for more than ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default=10
        Patience of the ``tol`` rule, in epochs.
    early_stopping : bool, default=False
        Monitor the validation loss instead of the training loss, and keep the parameters with
        the best validation loss (in every phase that has validation rows).
    validation_fraction : float or "auto", default="auto"
        Fraction of the rows held out from the final fit to watch it (``validation_scores_``,
        ``heldout_prediction_``); 0 trains on every row. ``"auto"``: none for tables up to 5000
        rows (or 10% with ``early_stopping``), 10% (at most 10,000 rows) for larger tables.
    lbfgs_maxiter : int or "auto", default="auto"
        L-BFGS iterations of one regularization path on one fold (``alpha="auto"``; the final fit
        gets as many), or of a fit at a given alpha (twice as many). ``"auto"``: 3000, cut to
        fit the time budget.
    lbfgs_ftol : float, default=0.0
        L-BFGS stops when ``(f_k - f_k+1) / max(|f_k|, |f_k+1|, 1) <= lbfgs_ftol``.
    lbfgs_gtol : float, default=1e-12
        L-BFGS stops when the largest gradient component is at most this.
    lbfgs_maxcor : int or "auto", default="auto"
        Number of correction pairs L-BFGS keeps. ``"auto"``: one per 5 training rows, 10 to 50
        (50 was measured best per second on 1000 rows; on small tables a pair costs more than
        the gradient gains from it).
    x_scaling : {"standard", "minmax", "none"}, default="standard"
        Scaling of the inputs, per column.
    y_scaling : {"auto", "standard", "minmax", "log", "none"}, default="auto"
        Scaling of the outputs, per column; ``"log"`` fits the logarithm of positive outputs.
        ``"auto"``: ``"log"`` when every output is positive, some output spans two decades, and
        the logarithm is the less skewed (products and powers of the inputs), else
        ``"standard"``; ``y_scaler_.method`` tells which.
    cv : int, default=5
        Folds of the selection (``alpha="auto"``); fewer for tables under ``2 cv`` rows.
    time_budget : float or None, default=None
        Seconds the whole fit may take, selection included. The plan is shrunk to fit it and
        every phase stops at it. None: 4.5 s up to 100 rows, 54 s at 1000 rows, 540 s from
        100,000 rows on, log-log in between (:func:`training.plan.default_time_budget`).
    n_jobs : int or None, default=None
        Parallel selection tasks: None or -1 uses every core (one process each), except inside a
        joblib or Dask worker, where the tasks run one after another.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the folds, the validation split and mini-batch shuffling.
    callback : callable or None, default=None
        Called as ``callback(epoch, train_loss, val_loss)`` after every Adam epoch and every
        L-BFGS iteration of the final model's own training (``epoch`` counts both, from 1;
        ``val_loss`` is None without held-out rows). A callback that also takes keyword
        arguments ``phase`` and ``seconds_left`` (or ``**kwargs``) gets the phase
        (``"selection"``, ``"fit"``, ``"polish"``) and the estimated seconds left, and one call
        per finished selection task with ``done`` and ``total``.

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
    alpha_ : float
        The L2 penalty of the fitted model (chosen, or ``alpha``).
    cv_results_ : dict of lists or None
        Every candidate of the selection: ``params`` (``{"activation", "alpha", "path",
        "inputs"}``),
        ``mean_val_loss``, ``std_val_loss``, ``split<k>_val_loss``, ``mean_iterations``,
        ``rank_val_loss`` (half MSE in scaled space, lower is better); None without selection.
    best_params_ : dict or None
        ``{"activation", "alpha", "path", "inputs"}`` of the winner; None without selection.
    selection_ : dict
        How the model was made: ``method`` ("cv" or "fixed"), folds, rows, the winner (its
        activation, and ``activation_race``: each raced activation's best validation loss on
        the first two folds, their mean), its mean validation loss, seconds, and whether the
        time budget cut the plan.
    heldout_prediction_ : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        For every training row, a prediction (physical units) by a model that did not train on
        it: the fold models' for the rows of a cross-validated selection, the final model's for
        validation rows; NaN for rows with none.
    heldout_kind_ : {"cv", "validation"} or None
        Which of the two ``heldout_prediction_`` holds (None: no held-out rows).
    loss_curve_ : list of float
        Training loss (half MSE in scaled space plus the L2 term) per epoch / iteration of the
        final model's own history (its fold's path, then the fit on every row).
    validation_scores_ : list of float or None
        Validation loss (half MSE in scaled space) per entry of ``loss_curve_``: the fold's
        validation rows along the path, the validation split of a large table; NaN where the
        model trained on every row; None if the model never had held-out rows.
    n_iter_ : int
        Adam epochs plus L-BFGS iterations of that history.
    best_loss_ : float
        Lowest training loss reached.
    fit_log_ : list of str
        What each phase did and why it stopped, including restarts after divergence.
    """

    def __init__(
        self,
        hidden_layer_sizes=(64, 64),
        activation="auto",
        output_activation="identity",
        solver="auto",
        alpha="auto",
        batch_size="auto",
        learning_rate_init=1e-3,
        learning_rate="constant",
        max_iter="auto",
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction="auto",
        lbfgs_maxiter="auto",
        lbfgs_ftol=0.0,
        lbfgs_gtol=1e-12,
        lbfgs_maxcor="auto",
        x_scaling="standard",
        y_scaling="auto",
        cv=4,
        time_budget=None,
        n_jobs=None,
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
        self.cv = cv
        self.time_budget = time_budget
        self.n_jobs = n_jobs
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
        started = time.time()
        check_parameters(self)
        y_names = column_names(y)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        self._y_1d = y.ndim == 1
        y = y.reshape(len(y), -1)
        hidden = hidden_sizes(self.hidden_layer_sizes)
        auto = self.alpha == "auto"
        candidates = AUTO_ACTIVATIONS if self.activation == "auto" else (self.activation,)
        nets = [Network((X.shape[1], *hidden, y.shape[1]),
                        layer_activations(name, self.output_activation, len(hidden)))
                for name in candidates]
        self.x_scaler_ = Scaler(self.x_scaling).fit(X)
        y_method = auto_output_scaling(y) if self.y_scaling == "auto" else self.y_scaling
        self.y_scaler_ = Scaler(y_method).fit(y, y_names)
        x, z = self.x_scaler_.transform(X), self.y_scaler_.transform(y)
        rng = check_random_state(self.random_state)
        budget = self._budget(len(X))
        deadline = started + budget
        plan = make_plan(
            # The input screening may run the chosen path once more on every fold; a second
            # activation races on RACE_FOLDS folds.
            len(X), nets[0].n_params, cv=self.cv, n_paths=len(PATHS) if auto else 0,
            race_tasks=(len(nets) - 1) * len(PATHS) * RACE_FOLDS if auto else 0,
            screening_paths=1 if auto else 0,
            maxcor=self._maxcor(len(X)), time_budget=budget,
            workers=available_workers(self.n_jobs), validation_fraction=self._validation(),
            path_iterations=self._path_iterations(),
            # The figures are for the cheapest; the others get them in the same time.
            activation_seconds=min(activation_seconds(net) for net in nets),
        )
        notifier = Notifier(self.callback, deadline, plan.seconds)
        recipe = Recipe(self._settings, self.alpha, self._validation(), self.early_stopping,
                        **self._large_overrides())
        procedure = fit_selected if auto and plan.folds else fit_fixed
        # One BLAS thread: the matrices are small, and threads made L-BFGS 4x slower per iteration
        # on a 2-core machine. A roomy heap: see training.heap.
        with threadpool_limits(limits=1), np.errstate(over="ignore", invalid="ignore"), \
                roomy_heap(), collected_notices() as notices:
            outcome = procedure(nets, x, z, plan, recipe, rng, deadline, notifier)
        # The selection and the final fit meet the same learning rate: the user hears of it once
        # (or a caller collecting notices, such as a sweep, gets them).
        for message in dict.fromkeys(notices):
            notify(message, stacklevel=2)
        self._set_fitted(outcome)
        seconds = time.time() - started
        self.selection_.update(seconds=round(seconds, 3), planned_seconds=round(plan.seconds, 1),
                               time_budget=budget,
                               budget_reached=seconds >= budget or plan.shrunk)
        return self

    def _settings(self, rows: int) -> Settings:
        batch = min(200 if self.batch_size == "auto" else self.batch_size, rows)
        epochs = WARMUP_EPOCHS if self.max_iter == "auto" else self.max_iter
        warmup = AdamSettings(epochs, batch, self.learning_rate_init, self.learning_rate,
                              self.tol, self.n_iter_no_change, self.early_stopping)
        lbfgs = LbfgsSettings(0, self.lbfgs_ftol, self.lbfgs_gtol, self._maxcor(rows),
                              self.early_stopping)
        return Settings(warmup, lbfgs, self.learning_rate_init, self.solver, self.early_stopping)

    def _maxcor(self, rows: int) -> int:
        return auto_maxcor(rows) if self.lbfgs_maxcor == "auto" else self.lbfgs_maxcor

    def _path_iterations(self) -> int | None:
        """Iterations of one path (L-BFGS iterations; Adam epochs for solver "adam")."""
        budget = self.max_iter if self.solver == "adam" else self.lbfgs_maxiter
        return None if budget == "auto" else budget

    def _large_overrides(self) -> dict:
        return {"adam_epochs": None if self.max_iter == "auto" else self.max_iter,
                "batch_size": None if self.batch_size == "auto" else self.batch_size}

    def _validation(self) -> float | None:
        return None if self.validation_fraction == "auto" else float(self.validation_fraction)

    def _budget(self, n_rows: int) -> float:
        return default_time_budget(n_rows) if self.time_budget is None else float(
            self.time_budget)

    def _physical(self, z: np.ndarray) -> np.ndarray:
        y = self.y_scaler_.inverse(z)
        return y.ravel() if self._y_1d else y

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

    def _set_fitted(self, outcome: Outcome) -> None:
        net, layers, history = outcome.net, outcome.layers, outcome.history
        self.n_outputs_ = net.sizes[-1]
        self.coefs_ = [c.copy() for c in layers.coefs]
        self.intercepts_ = [b.copy() for b in layers.intercepts]
        self.activations_ = tuple(act.name for act in net.activations)
        self.activation_params_ = [{k: v.copy() for k, v in p.items()} for p in layers.act_params]
        self.loss_curve_ = list(history.loss)
        curve = outcome.validation_curve
        self.validation_scores_ = list(curve) if curve else None
        self.n_iter_ = len(history.loss)
        self.best_loss_ = min(history.loss)
        self.fit_log_ = outcome.log
        self.alpha_, self.cv_results_ = outcome.alpha, outcome.cv_results
        self.best_params_, self.selection_ = outcome.best_params, outcome.selection
        self.heldout_kind_ = outcome.heldout_kind
        self.heldout_prediction_ = self._physical(outcome.heldout)
