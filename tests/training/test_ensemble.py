"""SurrogateEnsemble: sklearn conventions, mean and spread of the members, the spread growing
away from the data, parallel fits through joblib (loky, threads, Dask), and the export: one graph
with ``outputs`` and ``std``, a Jacobian graph of the mean, and the bundle around them."""

from __future__ import annotations

import json

import joblib
import numpy as np
import onnx
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from training.bundle import read_card, write_bundle
from training.ensemble import SurrogateEnsemble
from training.estimator import SurrogateMLP
from training.export import to_onnx
from training.formula import read_network
from training.parity import check_parity, deviations, run_onnx

# Members fitted at a given alpha: these tests are about the ensemble, not the selection (whose
# members agree so closely on 60 rows that float32 rounding would dominate their spread).
MEMBER = SurrogateMLP(hidden_layer_sizes=(16, 16), max_iter=50, lbfgs_maxiter=150, alpha=1e-6)
# A budget no fit here reaches: the engines must give the same models (a deadline that cuts a
# step makes the model depend on the clock).
SMALL = SurrogateMLP(hidden_layer_sizes=(8,), max_iter=20, lbfgs_maxiter=100, time_budget=300)


def curve(n_rows: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D test function on [0, 1]."""
    X = np.random.default_rng(0).uniform(0.0, 1.0, (n_rows, 1))
    return X, np.sin(4 * X[:, 0]) + X[:, 0] ** 2


def plane(n_rows: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Two inputs in physical units, two outputs (one positive, for log scaling)."""
    rng = np.random.default_rng(1)
    X = rng.uniform([0.05, 990.0], [0.15, 1110.0], (n_rows, 2))
    u = (X - [0.05, 990.0]) / [0.1, 120.0]
    return X, np.column_stack([np.exp(u[:, 0] * u[:, 1]), 1.5 + np.sin(3 * u[:, 0]) - u[:, 1]])


@pytest.fixture(scope="module")
def ensemble() -> SurrogateEnsemble:
    X, y = curve()
    return SurrogateEnsemble(MEMBER, n_members=5, random_state=0, n_jobs=2).fit(X, y)


@parametrize_with_checks([SurrogateEnsemble(SMALL, n_members=2, random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_spread_is_far_larger_outside_the_training_domain(ensemble):
    _, inside = ensemble.predict(np.linspace(0.0, 1.0, 50)[:, None], return_std=True)
    _, outside = ensemble.predict(np.linspace(3.0, 4.0, 50)[:, None], return_std=True)
    assert outside.mean() > 20 * inside.mean()
    assert outside.min() > inside.max()


def test_mean_and_spread_of_the_members(ensemble):
    X = np.linspace(-1.0, 2.0, 40)[:, None]
    each = ensemble.predict_members(X)
    assert each.shape == (5, 40)
    np.testing.assert_allclose(each, [m.predict(X) for m in ensemble.estimators_])
    mean, std = ensemble.predict(X, return_std=True)
    np.testing.assert_allclose(mean, each.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(std, np.sqrt(((each - mean) ** 2).mean(axis=0)), rtol=1e-12)
    np.testing.assert_array_equal(ensemble.predict(X), mean)
    jacobians = [m.predict_jacobian(X) for m in ensemble.estimators_]
    np.testing.assert_allclose(ensemble.predict_jacobian(X), np.mean(jacobians, axis=0))
    # The mean is at least as accurate as the typical member on the training curve.
    X_test = np.linspace(0.0, 1.0, 200)[:, None]
    truth = np.sin(4 * X_test[:, 0]) + X_test[:, 0] ** 2
    member_errors = [np.sqrt(np.mean((p - truth) ** 2)) for p in ensemble.predict_members(X_test)]
    assert np.sqrt(np.mean((ensemble.predict(X_test) - truth) ** 2)) <= np.mean(member_errors)


def test_seeds(ensemble):
    X, y = curve()
    assert ensemble.seeds_ == [0, 1, 2, 3, 4]
    assert [m.random_state for m in ensemble.estimators_] == ensemble.seeds_
    single = clone(MEMBER).set_params(random_state=0).fit(X, y)
    np.testing.assert_array_equal(ensemble.estimators_[0].predict(X), single.predict(X))
    drawn = SurrogateEnsemble(SMALL, n_members=3, random_state=np.random.RandomState(7)).fit(X, y)
    assert len(set(drawn.seeds_)) == 3


@pytest.mark.parametrize("backend", ["threading", "dask"])
def test_a_joblib_context_chooses_the_engine(backend):
    X, y = curve()
    sequential = SurrogateEnsemble(SMALL, n_members=3, random_state=5, n_jobs=1).fit(X, y)
    with joblib.parallel_config(backend=backend, n_jobs=2) if backend == "threading" else _dask():
        parallel = SurrogateEnsemble(SMALL, n_members=3, random_state=5).fit(X, y)
    np.testing.assert_array_equal(parallel.predict(X), sequential.predict(X))


def test_threaded_members_leave_the_warning_state_as_it_was():
    """Fits in joblib's threading backend change no process-wide warning state: their notices
    are collected per thread (``training.optim.collected_notices``), where
    ``warnings.catch_warnings`` swapped the process's filter list from every member, and the
    swaps raced (a run left an "always" filter behind)."""
    import warnings

    X, y = curve()
    before = (list(warnings.filters), warnings.showwarning)
    for seed in range(3):
        with joblib.parallel_config(backend="threading", n_jobs=4):
            SurrogateEnsemble(SMALL, n_members=6, random_state=seed).fit(X, y)
    assert (list(warnings.filters), warnings.showwarning) == before


def _dask():
    distributed = pytest.importorskip("distributed")
    from contextlib import ExitStack

    stack = ExitStack()
    stack.enter_context(distributed.Client(processes=False, n_workers=1, threads_per_worker=2))
    stack.enter_context(joblib.parallel_config(backend="dask"))
    return stack


@pytest.mark.parametrize(
    ("params", "message"),
    [({"n_members": 1}, "n_members must be an integer >= 2"),
     ({"n_members": 2.5}, "n_members must be an integer >= 2")],
)  # fmt: skip
def test_bad_parameters_are_refused(params, message):
    X, y = curve()
    with pytest.raises(ValueError, match=message):
        SurrogateEnsemble(SMALL, **params).fit(X, y)


@pytest.mark.parametrize("y_scaling", ["standard", "log"])
def test_export_parity_of_mean_std_and_jacobian(y_scaling):
    X, Y = plane()
    member = SurrogateMLP(hidden_layer_sizes=(8, 8), activation=("gelu", "prelu"), solver="adam",
                          max_iter=30, y_scaling=y_scaling)  # fmt: skip
    model = SurrogateEnsemble(member, n_members=3, random_state=0).fit(X, Y)
    graph, jacobian_graph = to_onnx(model), to_onnx(model, jacobian=True)
    for onnx_model in (graph, jacobian_graph):
        onnx.checker.check_model(onnx_model, full_check=True)
        assert [i.name for i in onnx_model.graph.input] == ["inputs"]
    assert [o.name for o in graph.graph.output] == ["outputs", "std"]
    assert [o.name for o in jacobian_graph.graph.output] == ["outputs", "std", "jacobian"]
    low, high = X.min(axis=0), X.max(axis=0)
    assert check_parity(model, jacobian_graph, low, high) < 1e-4
    probes = np.random.default_rng(3).uniform(low - (high - low), high + (high - low), (300, 2))
    found = deviations(model, jacobian_graph, probes)
    assert found["outputs"] < 1e-5 and found["std"] < 1e-5 and found["jacobian"] < 1e-5
    one = run_onnx(graph, probes, ["outputs", "std"])
    both = run_onnx(jacobian_graph, probes, ["outputs", "std", "jacobian"])
    np.testing.assert_array_equal(one["outputs"], both["outputs"])
    np.testing.assert_array_equal(one["std"], both["std"])
    assert both["jacobian"].shape == (300, 2, 2)
    # The Jacobian is that of the mean: central differences of the mean's float64 prediction.
    step = 1e-4 * (high - low)
    differences = np.stack(
        [(model.predict(probes + step * e) - model.predict(probes - step * e)) / (2 * step[j])
         for j, e in enumerate(np.eye(2))], axis=-1)  # fmt: skip
    largest = np.abs(differences).max(axis=(0, 2))[None, :, None]
    assert np.abs(both["jacobian"] - differences).max(axis=(0, 2)).max() < 1e-3 * largest.min()


def test_bundle_of_an_ensemble(ensemble, tmp_path):
    X, _ = curve()
    path = write_bundle(
        ensemble, tmp_path, "curve",
        inputs=[{"name": "x", "unit": "m", "min": X.min(), "max": X.max()}],
        outputs=[{"name": "y", "unit": "K"}],
        metrics={"split": "holdout"}, training_info={"rows": 60},
    )  # fmt: skip
    card = read_card(path)
    assert card["ensemble"] == {"members": 5, "seeds": [0, 1, 2, 3, 4]}
    assert list(card)[-2:] == ["ensemble", "onnx"]
    assert card["tensors"]["outputs"] == [
        {"name": "outputs", "shape": [-1, 1], "datatype": "FP32"},
        {"name": "std", "shape": [-1, 1], "datatype": "FP32"},
        {"name": "jacobian", "shape": [-1, 1, 1], "datatype": "FP32", "file": "jacobian.onnx"},
    ]
    assert card["layers"][0] == {"units": 16, "activation": "tanh"}
    config = (tmp_path / "curve" / "config.pbtxt").read_text()
    assert config.count("name: ") == 4 and 'name: "std"' in config and "jacobian" not in config
    embedded = onnx.load(path / "model.onnx").metadata_props
    assert json.loads(embedded[-1].value)["ensemble"]["members"] == 5
    mean, std = ensemble.predict(X, return_std=True)
    got = run_onnx(onnx.load(path / "model.onnx"), X, ["outputs", "std"])
    np.testing.assert_allclose(got["outputs"][:, 0], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["std"][:, 0], std, rtol=1e-3, atol=1e-7)
    # The ensemble mean uses only ops that formula export translates.
    read_network(onnx.load(path / "model.onnx"))


def test_unfitted_ensemble_is_refused():
    with pytest.raises(NotFittedError, match="SurrogateEnsemble is not fitted yet"):
        to_onnx(SurrogateEnsemble())
