"""SurrogateMLP: scikit-learn conventions, exact gradients, accuracy on smooth data, options."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from training.activations import ACTIVATIONS, get_activation
from training.estimator import DivergenceError, SurrogateMLP
from training.network import Network, Problem
from training.optim import DivergenceWarning

# A budget these fits never reach: a deadline that cuts a step makes the model depend on the
# clock, and scikit-learn's checks refit and compare.
SMALL = {"hidden_layer_sizes": (8,), "random_state": 0, "time_budget": 600}
# One fit at a given alpha, with the validation split the optimiser tests watch (the settings
# that were the defaults before alpha="auto").
FAST = {"hidden_layer_sizes": (16, 16), "max_iter": 50, "lbfgs_maxiter": 150, "random_state": 0,
        "alpha": 1e-6, "validation_fraction": 0.1}


def smooth(x: np.ndarray) -> np.ndarray:
    return np.sin(2.0 * x[:, 0]) + x[:, 1] ** 2 - 0.5 * x[:, 0] * x[:, 2]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (200, 3))
    return x, smooth(x)


@parametrize_with_checks(
    [
        SurrogateMLP(**SMALL, max_iter=20, lbfgs_maxiter=100),
        SurrogateMLP(**SMALL, solver="adam", max_iter=200, learning_rate_init=1e-2),
        SurrogateMLP(**SMALL, solver="lbfgs", lbfgs_maxiter=100),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _problem(activations, rows=12, chunk_rows=None):
    """A small float64 problem with random parameters (and PReLU slopes away from 0.25)."""
    rng = np.random.RandomState(1)
    net = Network((3, 5, 4, 2), [get_activation(name) for name in activations])
    if chunk_rows:
        net.chunk_rows = chunk_rows
    theta = net.initial(rng) + 0.1 * rng.standard_normal(net.n_params)
    x, y = rng.standard_normal((rows, 3)), rng.standard_normal((rows, 2))
    return Problem(net, theta, x, y, None, None, alpha=0.3)


def _assert_gradient_matches_finite_differences(problem: Problem) -> None:
    def loss(theta):
        problem.theta[...] = theta
        return problem.full_loss_grad() + problem.penalty()

    theta = problem.theta.copy()
    loss(theta)
    analytic = problem.grad.copy()
    step = 1e-6
    numeric = np.array(
        [(loss(theta + step * e) - loss(theta - step * e)) / (2 * step) for e in np.eye(len(theta))]
    )
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_of_every_activation(activation):
    _assert_gradient_matches_finite_differences(_problem([activation, activation, "identity"]))


@pytest.mark.parametrize(
    ("activations", "chunk_rows"),
    [
        (["relu", "tanh", "identity"], None),
        (["prelu", "gelu", "softplus"], None),
        (["silu", "prelu", "logistic"], 5),
    ],
)
def test_gradient_of_mixed_layers_and_chunked_batches(activations, chunk_rows):
    _assert_gradient_matches_finite_differences(_problem(activations, chunk_rows=chunk_rows))


@pytest.mark.parametrize("solver", ["auto", "adam", "lbfgs"])
def test_fits_a_smooth_function(solver, data):
    x, y = data
    params = {"learning_rate_init": 1e-2, "max_iter": 300} if solver == "adam" else {}
    model = SurrogateMLP(**{**FAST, **params, "solver": solver}).fit(x, y)
    assert r2_score(y, model.predict(x)) > (0.99 if solver == "adam" else 0.999)
    assert model.n_iter_ == len(model.loss_curve_) == len(model.validation_scores_)


def test_predict_is_the_documented_forward_pass(data):
    x, y = data
    model = SurrogateMLP(**FAST, activation=["prelu", "silu"], x_scaling="minmax").fit(x, y)
    a = model.x_scaler_.transform(x)
    for coef, bias, name, params in zip(
        model.coefs_, model.intercepts_, model.activations_, model.activation_params_, strict=True
    ):
        a = get_activation(name).forward(a @ coef + bias, params)
    np.testing.assert_allclose(model.predict(x), model.y_scaler_.inverse(a).ravel(), rtol=1e-12)
    assert model.activations_ == ("prelu", "silu", "identity")
    assert not np.allclose(model.activation_params_[0]["slope"], 0.25)


@pytest.mark.parametrize(
    ("y_shape", "predict_shape"), [((200,), (200,)), ((200, 1), (200, 1)), ((200, 2), (200, 2))]
)
def test_output_shapes(data, y_shape, predict_shape):
    x, y = data
    target = np.column_stack([y, np.cos(x[:, 1])])[:, : (y_shape + (1,))[1]].reshape(y_shape)
    model = SurrogateMLP(**FAST).fit(x, target)
    predicted = model.predict(x)
    assert predicted.shape == predict_shape and predicted.dtype == np.float64
    assert model.n_outputs_ == (y_shape + (1,))[1]
    assert r2_score(target, predicted) > 0.999


def test_log_scaling_fits_outputs_spanning_decades(data):
    x, _ = data
    y = np.exp(3.0 * x[:, 0] + 2.0 * x[:, 1])  # five decades
    model = SurrogateMLP(**FAST, y_scaling="log").fit(x, y)
    assert model.y_scaler_.method == "log"
    relative = np.abs(model.predict(x) / y - 1.0)
    assert np.all(model.predict(x) > 0) and relative.max() < 0.02


def test_auto_scaling_fits_the_logarithm_of_outputs_spanning_decades(data):
    x, y = data
    decades = np.exp(3.0 * x[:, 0] + 2.0 * x[:, 1])
    settings = {k: v for k, v in FAST.items()}
    assert SurrogateMLP(**settings).fit(x, decades).y_scaler_.method == "log"
    assert SurrogateMLP(**settings).fit(x, y).y_scaler_.method == "standard"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (lambda y: np.column_stack([np.abs(y) + 1, y]), "column 1"),
        (lambda y: __import__("pandas").DataFrame({"Q": np.abs(y) + 1, "dp": y}), "'dp'"),
    ],
)
def test_log_scaling_rejects_non_positive_outputs(data, target, message):
    x, y = data
    with pytest.raises(ValueError, match=message):
        SurrogateMLP(**FAST, y_scaling="log").fit(x, target(y))


@pytest.mark.parametrize("x_scaling", ["standard", "minmax", "none"])
@pytest.mark.parametrize("y_scaling", ["standard", "minmax", "none"])
def test_scaling_variants(data, x_scaling, y_scaling):
    x, y = data
    shifted = (2.0 + x, 3.0 + y)  # off-centre, yet moderate enough for "none"
    model = SurrogateMLP(**FAST, x_scaling=x_scaling, y_scaling=y_scaling).fit(*shifted)
    assert model.x_scaler_.method == x_scaling and model.y_scaler_.method == y_scaling
    assert r2_score(shifted[1], model.predict(shifted[0])) > 0.99


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"activation": ["tanh"]}, "1 names for 2 hidden layers"),
        ({"activation": ["tanh", "relu", "elu"]}, "3 names for 2 hidden layers"),
        ({"activation": "sinc"}, "unknown activation 'sinc'"),
        ({"output_activation": "softmax"}, "unknown activation 'softmax'"),
        ({"solver": "sgd"}, "solver must be one of"),
        ({"learning_rate": "adaptive"}, "learning_rate must be one of"),
        ({"x_scaling": "log"}, "x_scaling must be one of"),
        ({"hidden_layer_sizes": (8, 0)}, "hidden_layer_sizes"),
        ({"alpha": -1.0}, "alpha must be"),
        ({"learning_rate_init": 0.0}, "learning_rate_init must be"),
        ({"validation_fraction": 1.0}, "validation_fraction must be < 1"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"max_iter": 2.5}, "max_iter must be"),
        ({"callback": "print"}, "callback must be callable"),
    ],
)
def test_invalid_parameters(data, params, message):
    with pytest.raises(ValueError, match=message):
        SurrogateMLP(**{**FAST, "hidden_layer_sizes": (4, 4), **params}).fit(*data)


def test_aliases_resolve_to_canonical_names(data):
    model = SurrogateMLP(
        **{**FAST, "hidden_layer_sizes": (4, 4)},
        activation=["swish", "sigmoid"],
        output_activation="linear",
    ).fit(*data)
    assert model.activations_ == ("silu", "logistic", "identity")


def test_early_stopping_reduces_epochs(data):
    x, y = data
    noisy = y + np.random.default_rng(1).normal(scale=0.3, size=y.shape)
    params = {**FAST, "solver": "adam", "max_iter": 400, "learning_rate_init": 1e-2}
    full = SurrogateMLP(**params, tol=0.0).fit(x, noisy)
    stopped = SurrogateMLP(**params, early_stopping=True, n_iter_no_change=5).fit(x, noisy)
    assert full.n_iter_ == 400
    assert stopped.n_iter_ < 400
    assert "restored the parameters of the best validation loss" in stopped.fit_log_[0]


@pytest.mark.parametrize("schedule", ["constant", "cosine", "plateau"])
def test_schedules_are_deterministic(data, schedule):
    params = {**FAST, "solver": "adam", "max_iter": 60, "learning_rate": schedule}
    first, second = SurrogateMLP(**params).fit(*data), SurrogateMLP(**params).fit(*data)
    assert first.loss_curve_ == second.loss_curve_
    assert first.loss_curve_[-1] < first.loss_curve_[0]
    other = SurrogateMLP(**{**params, "random_state": 1}).fit(*data)
    assert other.loss_curve_ != first.loss_curve_


def test_plateau_lowers_the_rate_before_stopping(data):
    params = {**FAST, "solver": "adam", "max_iter": 300, "n_iter_no_change": 2, "tol": 0.05}
    constant = SurrogateMLP(**params).fit(*data)
    plateau = SurrogateMLP(**params, learning_rate="plateau").fit(*data)
    assert plateau.n_iter_ > constant.n_iter_


def test_callback_sees_every_epoch_and_survives_clone(data):
    seen = []
    model = SurrogateMLP(**FAST, callback=lambda *args: seen.append(args))
    assert clone(model).get_params()["callback"] is model.callback
    model.fit(*data)
    assert [epoch for epoch, _, _ in seen] == list(range(1, model.n_iter_ + 1))
    assert [loss for _, loss, _ in seen] == model.loss_curve_
    assert [val for _, _, val in seen] == model.validation_scores_


def test_without_validation_split(data):
    model = SurrogateMLP(**{**FAST, "validation_fraction": 0.0}).fit(*data)
    assert model.validation_scores_ is None
    assert model.best_loss_ == min(model.loss_curve_)


def test_grid_search_over_activations(data):
    grid = GridSearchCV(
        SurrogateMLP(**{**FAST, "hidden_layer_sizes": (8, 8), "lbfgs_maxiter": 100}),
        {"activation": ["tanh", "relu", ("gelu", "elu")]},
        cv=2,
    ).fit(*data)
    assert grid.best_params_["activation"] in ("tanh", "relu", ("gelu", "elu"))
    assert grid.best_score_ > 0.9


# Adam's step is bounded by the learning rate, so only absurd rates overflow float64 in a few
# epochs: with these data ReLU diverges from 1e51 on and trains at 1e50.
@pytest.mark.parametrize(("rate", "restarts"), [(10.0**51.5, 1), (1e52, 2)])
def test_divergence_restarts_with_a_lower_rate(data, rate, restarts):
    params = {**FAST, "solver": "adam", "activation": "relu", "learning_rate_init": rate}
    with pytest.warns(DivergenceWarning, match="diverged"):
        model = SurrogateMLP(**params).fit(*data)
    assert [" diverged: " in line for line in model.fit_log_] == [True] * restarts + [False]
    assert np.isfinite(model.loss_curve_).all() and len(model.loss_curve_) == model.n_iter_


def test_divergence_raises_after_the_restarts(data):
    params = {**FAST, "solver": "adam", "activation": "relu", "learning_rate_init": 1e60}
    with pytest.raises(DivergenceError, match="diverged at every learning rate") as info:
        SurrogateMLP(**params).fit(*data)
    assert str(info.value).count(" diverged: ") == 3


def test_lbfgs_early_stopping_keeps_the_best_validation_iterate(data):
    x, y = data
    noisy = y + np.random.default_rng(1).normal(scale=0.3, size=y.shape)
    model = SurrogateMLP(**FAST, solver="lbfgs", early_stopping=True).fit(x, noisy)
    assert "restored the parameters of the best validation loss" in model.fit_log_[-1]
    assert len(model.validation_scores_) == model.n_iter_


def test_constant_columns_and_constant_target():
    x = np.column_stack([np.linspace(0.0, 1.0, 40), np.full(40, 7.0)])
    model = SurrogateMLP(hidden_layer_sizes=(16, 16), random_state=0).fit(x, np.full(40, 3.5))
    # The network has to learn the zero function in scaled space: to about 1e-6 relative.
    np.testing.assert_allclose(model.predict(x), 3.5, rtol=1e-5)
    assert model.x_scaler_.scale_[1] == 1.0 and model.y_scaler_.scale_[0] == 1.0


def test_fitting_does_not_load_onnx():
    """ONNX is for export: importing the estimator and fitting one leaves it unloaded."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from training.estimator import SurrogateMLP; "
            "X = np.linspace(0, 1, 40)[:, None]; "
            "SurrogateMLP(hidden_layer_sizes=(4,), alpha=1e-3, max_iter=5, lbfgs_maxiter=5)"
            ".fit(X, X[:, 0]); print('onnx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_fit_pads_the_heap_once_and_puts_the_default_back(monkeypatch, data):
    # training.heap: glibc's M_TOP_PAD (-2) is raised for the time of a fit, once however deep
    # fits nest (a fit in a fit's callback), and set back to its default of 128 KiB after.
    from training import heap

    calls = []
    monkeypatch.setattr(heap, "_MALLOPT", lambda option, value: calls.append((option, value)))
    with heap.roomy_heap() as roomy:
        assert roomy and calls == [(-2, heap.TOP_PAD_BYTES)]
        SurrogateMLP(hidden_layer_sizes=(4,), max_iter=5, lbfgs_maxiter=5, alpha=1e-3,
                     random_state=0).fit(*data)
        assert calls == [(-2, heap.TOP_PAD_BYTES)]
    assert calls == [(-2, heap.TOP_PAD_BYTES), (-2, 128 * 1024)]
    SurrogateMLP(hidden_layer_sizes=(4,), max_iter=5, lbfgs_maxiter=5, alpha=1e-3,
                 random_state=0).fit(*data)
    assert calls[2:] == [(-2, heap.TOP_PAD_BYTES), (-2, 128 * 1024)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc is Linux's")
def test_glibc_mallopt_is_found_here():
    # The machines this project runs on are glibc Linux: the padding must not be silently off.
    from training import heap

    assert heap._MALLOPT is not None
