"""The default fit: L2 chosen by cross-validation over regularization paths, out-of-fold
predictions, large tables watched by a validation split, the time budget, the phases the
callback sees, and the compact L-BFGS underneath."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_der

from training import plan as plan_module
from training import procedure
from training.cli.common import selection_line
from training.estimator import SurrogateMLP
from training.lbfgs import _Memory, minimize_lbfgs
from training.network import Network, layer_activations
from training.plan import (
    FULL_CV_ROWS,
    LBFGS_MIN_ROWS,
    PLANNED_SHARE,
    SELECTION_ROWS,
    activation_seconds,
    default_time_budget,
    make_plan,
    seconds_per_iteration,
)
from training.selection import PATHS, PathTask, blend, run_path, step_iterations

# With a time budget these fits never reach: a deadline that cuts a step would make the models
# depend on the clock.
QUICK = {"hidden_layer_sizes": (12,), "lbfgs_maxiter": 120, "max_iter": 30, "random_state": 0,
         "time_budget": 600}


def smooth(X: np.ndarray) -> np.ndarray:
    return np.sin(2.0 * X[:, 0]) + X[:, 1] ** 2 - 0.5 * X[:, 0] * X[:, 2]


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.0, 1.0, (150, 3))
    return X, smooth(X)


@pytest.fixture(scope="module")
def fitted(table):
    return SurrogateMLP(**QUICK).fit(*table)


def test_the_default_chooses_by_cross_validation(fitted):
    results = fitted.cv_results_
    n = sum(len(alphas) for alphas in PATHS.values())
    assert len(results["params"]) == n and sorted(results["rank_val_loss"]) == list(range(1, n + 1))
    best = results["rank_val_loss"].index(1)
    assert fitted.best_params_ == results["params"][best]
    assert fitted.alpha_ == fitted.best_params_["alpha"] == fitted.selection_["alpha"]
    assert results["mean_val_loss"][best] == min(results["mean_val_loss"])
    assert all(len(results[f"split{k}_val_loss"]) == n for k in range(4))
    assert fitted.selection_["method"] == "cv" and fitted.selection_["folds"] == 4
    assert fitted.selection_["final_rows"] == 150
    # Every input matters here, so none was screened out.
    assert fitted.selection_["screened_inputs"] == fitted.selection_["dropped_inputs"] == []
    assert fitted.best_params_["inputs"] == 3
    # activation="auto": tanh and SiLU raced on the first two folds; the winner was
    # cross-validated.
    race, chosen = fitted.selection_["activation_race"], fitted.selection_["activation"]
    assert set(race) == {"tanh", "silu"} and chosen == min(race, key=race.get)
    # The winner's figure: its best candidate's validation loss on each race fold, averaged.
    per_fold = [np.nanmin(np.asarray(results[f"split{k}_val_loss"], dtype=float)) for k in (0, 1)]
    assert race[chosen] == pytest.approx(np.mean(per_fold))
    assert fitted.activations_ == (chosen, "identity")
    assert fitted.best_params_["activation"] == chosen
    assert {params["activation"] for params in results["params"]} == {chosen}
    assert any(f"{chosen} won" in line for line in fitted.fit_log_)


def test_an_explicit_activation_is_not_raced(table):
    model = SurrogateMLP(**QUICK, activation="relu").fit(*table)
    assert model.activations_ == ("relu", "identity") and model.selection_["activation_race"] == {}
    assert model.best_params_["activation"] == "relu"


@pytest.mark.parametrize("seed", [0, 1])
def test_inputs_without_effect_are_left_out_when_that_validates_better(seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (200, 6))  # the last three inputs do nothing
    y = smooth(X) * (1.0 + 0.02 * rng.standard_normal(200))
    model = SurrogateMLP(**{**QUICK, "random_state": seed}).fit(X, y)
    chosen = model.selection_
    assert chosen["screened_inputs"][0] == chosen["dropped_inputs"] == [3, 4, 5]
    # The exported network keeps all six inputs; the left-out ones have no weight.
    assert model.coefs_[0].shape == (6, 12) and not model.coefs_[0][3:].any()
    assert model.coefs_[0][:3].any()
    moved = X.copy()
    moved[:, 3:] = rng.uniform(-1.0, 1.0, (200, 3))
    np.testing.assert_array_equal(model.predict(moved), model.predict(X))
    # The candidates without them are in the table, ranked with the others, the winner among.
    results = model.cv_results_
    inputs = [params["inputs"] for params in results["params"]]
    n = sum(len(alphas) for alphas in PATHS.values())
    assert inputs[: n + len(PATHS[chosen["path"]])] == [6] * n + [3] * len(PATHS[chosen["path"]])
    assert sorted(results["rank_val_loss"]) == list(range(1, len(inputs) + 1))
    best = results["rank_val_loss"].index(1)
    assert results["params"][best] == model.best_params_ and model.best_params_["inputs"] == 3
    assert chosen["candidates"] == len(inputs)
    # Their fold models held out every row, so the out-of-fold predictions are all there.
    assert model.heldout_kind_ == "cv" and np.isfinite(model.heldout_prediction_).all()


@pytest.mark.parametrize(("losses", "better"), [
    ([1.0, 1.0, 1.0, 1.0], True),  # better on every fold
    ([1.0, 1.0, 1.0, 2.2], True),  # on three of four, and on average
    ([1.0, 1.0, 1.0, 3.6], False),  # on three of four, but worse on average
    ([1.0, 1.0, 2.0, 2.0], False),  # on half of them: luck
    ([1.0, 1.0, 2.5], False),  # with three folds, on every one
])
def test_inputs_are_left_out_when_that_validates_better_on_average_and_on_most_folds(
        losses, better):
    baseline = np.full(len(losses), 1.5)
    assert procedure.validates_better(np.array(losses), baseline) is better


def test_a_network_on_some_inputs_widens_to_the_same_function():
    net = Network((5, 7, 4, 2), layer_activations(("tanh", "prelu"), "identity", 2))
    active = np.array([0, 3])
    narrow = net.on_inputs(active)
    rng = np.random.RandomState(0)
    theta = narrow.initial(rng) + rng.normal(scale=0.1, size=narrow.n_params)
    wide = net.widened(narrow, theta, active)
    x = rng.normal(size=(20, 5))
    np.testing.assert_array_equal(net.predict(net.views(wide), x),
                                  narrow.predict(narrow.views(theta), x[:, active]))
    assert not net.views(wide).coefs[0][[1, 2, 4]].any()


def test_noise_makes_it_choose_a_stronger_penalty(table):
    X, y = table
    noisy = y + np.random.default_rng(3).normal(scale=0.5 * y.std(), size=y.shape)
    clean = SurrogateMLP(**QUICK).fit(X, y)
    rough = SurrogateMLP(**QUICK).fit(X, noisy)
    assert rough.alpha_ > clean.alpha_
    assert rough.selection_["smaller_alpha_overfits"]
    # Where smaller alphas overfit, the fold model is trained on for a third of the fine-tune a
    # table gets whose smallest alpha validated best (training on to convergence refits noise).
    assert not clean.selection_["smaller_alpha_overfits"]
    # (Planned for tanh: a SiLU winner does as many fewer as an iteration costs it more.)
    planned = round(QUICK["lbfgs_maxiter"] / 3)
    if rough.selection_["activation"] == "tanh":
        assert rough.selection_["final_iterations"] == planned
    else:
        assert 0.5 * planned < rough.selection_["final_iterations"] < planned
    # ... and is then distilled from a blend of candidates that validates at least as well as
    # the winner alone (its first pick); the clean one not.
    blended = rough.selection_["distilled_from"]
    weights = [part["weight"] for part in blended["candidates"]]
    assert weights and all(w > 0 for w in weights) and sum(weights) == pytest.approx(1.0)
    assert blended["models"] == len(weights) * rough.selection_["folds"] + 1
    assert blended["val_loss"] <= blended["winner_val_loss"]
    assert any(line.startswith("distilling a blend of") for line in rough.fit_log_)
    assert clean.selection_["distilled_from"] is None
    assert not any("distilling" in line for line in clean.fit_log_)
    # The CLI's line about the choice says so.
    assert f"blend of {len(weights)} candidate(s)" in selection_line(rough)
    assert "blend" not in selection_line(clean)
    # The clean table had no inputs to screen: the screening's share went to the model.
    assert clean.selection_["screened_inputs"] == []
    assert clean.selection_["final_iterations"] > QUICK["lbfgs_maxiter"]


def test_held_out_predictions_come_from_models_that_did_not_see_the_row(fitted, table):
    X, y = table
    held = fitted.heldout_prediction_
    assert fitted.heldout_kind_ == "cv" and held.shape == y.shape and np.isfinite(held).all()
    cv_error = np.sqrt(np.mean((held - y) ** 2))
    train_error = np.sqrt(np.mean((fitted.predict(X) - y) ** 2))
    assert cv_error > train_error and not np.allclose(held, fitted.predict(X))


def test_explicit_alpha_keeps_its_meaning(table):
    model = SurrogateMLP(**QUICK, alpha=1e-4).fit(*table)
    assert model.alpha_ == 1e-4 and model.cv_results_ is None and model.best_params_ is None
    assert model.selection_["method"] == "fixed" and model.heldout_kind_ is None
    assert np.isnan(model.heldout_prediction_).all()
    assert model.activations_ == ("tanh", "identity")  # "auto" without a selection: tanh


def test_a_seed_gives_the_same_model_in_one_process_or_several(table):
    one = SurrogateMLP(**QUICK, n_jobs=1).fit(*table)
    two = SurrogateMLP(**QUICK, n_jobs=2).fit(*table)
    X = table[0]
    np.testing.assert_array_equal(one.predict(X), two.predict(X))
    assert one.cv_results_ == two.cv_results_


def test_curves_cover_the_fold_path_then_the_fit_on_every_row(fitted):
    assert len(fitted.loss_curve_) == len(fitted.validation_scores_) == fitted.n_iter_
    curve = np.array(fitted.validation_scores_)
    # The chosen fold's validation loss along its path, then NaN: the final fit holds no rows out.
    first_nan = int(np.argmax(np.isnan(curve)))
    assert first_nan > 0 and np.isfinite(curve[:first_nan]).all()
    assert np.isnan(curve[first_nan:]).all()


def test_a_large_table_is_watched_by_a_validation_split():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1.0, 1.0, (FULL_CV_ROWS + 400, 3))
    model = SurrogateMLP(hidden_layer_sizes=(8,), lbfgs_maxiter=40, max_iter=5,
                         random_state=0).fit(X, smooth(X))
    assert model.heldout_kind_ == "validation"
    held = ~np.isnan(model.heldout_prediction_)
    assert held.sum() == model.selection_["validation_rows"] == len(X) // 10
    assert model.selection_["rows"] == SELECTION_ROWS  # the selection ran on a subsample
    assert model.selection_["final_rows"] == len(X)  # the last pass ran over every row
    error = np.abs(model.heldout_prediction_[held] - smooth(X)[held]).mean()
    assert error < 0.2 * smooth(X).std()


def test_a_large_table_short_of_time_runs_lbfgs_on_a_subsample(monkeypatch):
    monkeypatch.setattr(plan_module, "LBFGS_MIN_ROWS", 600)
    rng = np.random.default_rng(1)
    X = rng.uniform(-1.0, 1.0, (FULL_CV_ROWS + 400, 3))
    model = SurrogateMLP(hidden_layer_sizes=(8,), lbfgs_maxiter=40, max_iter=5, time_budget=0.2,
                         n_jobs=1, random_state=0).fit(X, smooth(X))
    train = len(X) - model.selection_["validation_rows"]
    assert model.selection_["lbfgs_rows"] == 600 < train
    assert f"lbfgs on 600 of the {train} training rows" in "\n".join(model.fit_log_)
    assert model.selection_["final_rows"] == len(X)  # the polish still ran over every row
    assert np.isfinite(model.predict(X)).all()


def test_lbfgs_rows_are_the_rows_lbfgs_ran_on(table):
    X, y = table
    assert SurrogateMLP(**QUICK).fit(X, y).selection_["lbfgs_rows"] == len(X)
    adam = {**QUICK, "solver": "adam", "max_iter": 5}
    assert SurrogateMLP(**adam).fit(X, y).selection_["lbfgs_rows"] == 0
    rng = np.random.default_rng(1)
    X = rng.uniform(-1.0, 1.0, (FULL_CV_ROWS + 400, 3))
    fixed = SurrogateMLP(hidden_layer_sizes=(8,), solver="adam", max_iter=5, alpha=1e-3,
                         random_state=0).fit(X, smooth(X))
    assert fixed.selection_["method"] == "fixed" and fixed.selection_["lbfgs_rows"] == 0


def test_the_time_budget_bounds_the_fit():
    rng = np.random.default_rng(2)
    X = rng.uniform(-1.0, 1.0, (800, 4))
    started = time.monotonic()
    model = SurrogateMLP(hidden_layer_sizes=(32, 32), time_budget=3.0, n_jobs=1,
                         random_state=0).fit(X, smooth(X))
    assert time.monotonic() - started < 3.0 + 2.0  # a step in progress finishes
    assert model.selection_["budget_reached"]
    assert model.selection_["planned_seconds"] <= 3.0 + 1e-6


def test_on_a_machine_slower_than_the_plan_the_final_fit_keeps_its_share(monkeypatch):
    # The work model 1000 times too fast: the plan leaves everything at full size, so every
    # task runs to its slot; and the screening tries two sets of inputs where the plan counts
    # one. The selection still ends by its share of the budget, and the model gets the rest.
    for name in ("ROW_PARAM_SECONDS", "PAIR_PARAM_SECONDS", "STEP_SECONDS"):
        monkeypatch.setattr(plan_module, name, getattr(plan_module, name) / 1000)
    monkeypatch.setattr(procedure, "screen_inputs", lambda *args: [np.array([0]), np.array([1])])
    rng = np.random.default_rng(5)
    X = rng.uniform(-1.0, 1.0, (300, 3))
    budget = 5.0
    started = time.monotonic()
    model = SurrogateMLP(hidden_layer_sizes=(32, 32), time_budget=budget,
                         random_state=0).fit(X, smooth(X))
    assert time.monotonic() - started < budget + 2.0
    assert model.selection_["screened_inputs"] == [[0], [1]]
    assert model.selection_["selection_seconds"] < 0.97 * budget
    final = int(np.isnan(model.validation_scores_).sum())  # the fit on every row holds none out
    assert final >= 50
    assert np.abs(model.predict(X) - smooth(X)).mean() < 0.1 * smooth(X).std()


def _long_path(slot: float) -> PathTask:
    """The strong path on 300 rows with far more iterations than ``slot`` seconds allow."""
    rng = np.random.default_rng(4)
    X = rng.uniform(-1.0, 1.0, (400, 3))
    y = smooth(X)[:, None]
    settings = SurrogateMLP()._settings(300)
    return PathTask("strong", 0, (3, 32, 32, 1), ("tanh", "tanh", "identity"), X[:300],
                    y[:300], X[300:], y[300:], 1_000_000, settings.warmup, settings.lbfgs,
                    "auto", 0, deadline=time.time() + 60, slot=slot)


def test_a_path_short_of_time_visits_every_alpha_in_its_slot():
    # A loaded machine runs slower than the plan: each step gets its share of the task's slot,
    # so the path still reaches its small alphas (stopping at the first deadline would leave
    # only the near-linear candidates) and ends in time.
    task = _long_path(slot=1.0)
    started = time.monotonic()
    result = run_path(task)
    assert time.monotonic() - started < 1.0 + 0.5
    assert result.alphas == list(PATHS["strong"]) and min(result.iterations) > 0
    assert result.iterations[-1] > result.iterations[0]  # the smallest alpha gets the most


def test_the_slot_never_cuts_the_warm_up():
    # The warm-up is a path's start: cut by a few epochs on a busy moment, the path starts
    # elsewhere and the fit differs from run to run. Only the steps share the slot.
    task = _long_path(slot=0.05)
    result = run_path(task)
    warm_up = [line for line in result.log if line.startswith("adam")]
    assert len(warm_up) == 1 and f"max_iter={task.warmup.epochs} epochs" in warm_up[0]
    assert result.alphas == list(PATHS["strong"]) and min(result.iterations) > 0


def test_the_plan_follows_the_table():
    def plan(rows, budget, **changes):
        settings = {"n_params": 4801, "cv": 4, "n_paths": 2, "maxcor": 50,
                    "time_budget": budget, "workers": 2, "validation_fraction": None, **changes}
        return make_plan(rows, **settings)

    small, medium, large = (plan(rows, 10_000) for rows in (30, 1000, 100_000))
    assert small.path_iterations == medium.path_iterations == large.path_iterations == 3000
    assert not (small.shrunk or medium.shrunk or large.shrunk)
    tiny = plan(30, 10_000, n_params=300, maxcor=10, path_iterations=50)
    assert tiny.workers == 1 and medium.workers == 2  # too little work for processes
    assert (small.validation_rows, medium.validation_rows, large.validation_rows) == (0, 0, 10_000)
    # L-BFGS runs on every training row when the budget allows it; when it does not, a large
    # table's L-BFGS gives up rows (down to LBFGS_MIN_ROWS) before the plan gives up iterations.
    assert (small.lbfgs_rows, medium.lbfgs_rows, large.lbfgs_rows) == (30, 1000, 90_000)
    tight = plan(100_000, 300)
    assert LBFGS_MIN_ROWS <= tight.lbfgs_rows < 90_000
    assert tight.path_iterations > 0.9 * large.path_iterations
    assert plan(2 * LBFGS_MIN_ROWS, 60).lbfgs_rows == LBFGS_MIN_ROWS
    assert large.large_epochs > 0 and large.large_batch > 200 and medium.large_epochs == 0
    # Up to FULL_CV_ROWS rows cross-validate on every row and train on all of them; a table
    # one row larger chooses on a subsample and is trained afresh, watched by a tenth of it.
    edge, above = plan(FULL_CV_ROWS, 10_000), plan(FULL_CV_ROWS + 1, 10_000)
    assert not edge.large and edge.selection_rows == FULL_CV_ROWS and not edge.validation_rows
    assert above.large and above.selection_rows == SELECTION_ROWS
    assert above.validation_rows == (FULL_CV_ROWS + 1) // 10
    # The default budgets: the plan takes its planned share and is shrunk where it must be.
    for rows in (100, 1000, 100_000):
        budget = default_time_budget(rows)
        fitted = plan(rows, budget)
        assert fitted.seconds <= PLANNED_SHARE * budget + 1e-9
        assert fitted.shrunk == (fitted.path_iterations < 3000)
    assert default_time_budget(100) <= 5 and default_time_budget(1000) <= 60
    assert default_time_budget(100_000) <= 600 and default_time_budget(30) == 4.5
    shrunk = plan(1000, 5)
    assert shrunk.shrunk and shrunk.path_iterations < medium.path_iterations
    # A task's slot is its modelled time, stretched by the budget's slack: all of the budget
    # is shared out, and a shrunk plan has little slack.
    budgeted = plan(1000, 600)
    rounds = 8 / budgeted.workers
    assert rounds * budgeted.task_slot < 600
    assert budgeted.task_slot > budgeted.seconds / rounds / 2
    assert rounds * shrunk.task_slot < 5
    # A race of a second activation on one fold adds its tasks.
    assert plan(1000, 10_000, race_tasks=2).seconds > medium.seconds
    assert sum(step_iterations(6, 1000)) == pytest.approx(1000, abs=6)


def test_an_activation_that_costs_more_gets_fewer_iterations_in_the_same_time():
    # The work model is tanh's; a SiLU network costs about 1.7x an iteration. In a race of both,
    # SiLU's paths get as many iterations as it does in the time of tanh's (its tasks would
    # otherwise run past their slots and be cut differently from run to run), and so does the
    # final fit of a SiLU winner.
    tanh, silu = (activation_seconds(Network((8, 64, 64, 1),
                                             layer_activations(name, "identity", 2)))
                  for name in ("tanh", "silu"))
    assert tanh == 0.0 and silu > 0.0
    settings = {"n_params": 4801, "cv": 4, "n_paths": 2, "maxcor": 50, "race_tasks": 4,
                "screening_paths": 1, "time_budget": 25.0, "workers": 2,
                "validation_fraction": None}
    plan = make_plan(1000, activation_seconds=tanh, **settings)
    alone = make_plan(1000, activation_seconds=silu, **settings)
    assert plan.shrunk and alone.shrunk  # both sized to the budget
    raced = plan.for_activation(silu)
    for rows, done, more in ((750, plan.path_iterations, raced.path_iterations),
                             (1000, plan.final_iterations, raced.final_iterations)):
        ratio = (seconds_per_iteration(rows, 4801, 50, silu)
                 / seconds_per_iteration(rows, 4801, 50))
        assert 1.5 < ratio < 1.9
        assert more == pytest.approx(done / ratio, rel=0.01)
    # ... which is what a plan made for SiLU alone in that budget gives (less the warm-up's
    # share).
    assert raced.path_iterations == pytest.approx(alone.path_iterations, rel=0.05)
    assert raced.for_activation(tanh).path_iterations == pytest.approx(plan.path_iterations,
                                                                        rel=0.01)
    assert plan.for_activation(tanh) == plan


def test_the_callback_sees_the_phases(table):
    plain, rich = [], []
    model = SurrogateMLP(**QUICK, callback=lambda *args: plain.append(args)).fit(*table)
    assert [loss for _, loss, _ in plain] == model.loss_curve_[-len(plain):]

    def on_event(epoch, train_loss, val_loss, **info):
        rich.append(info)

    SurrogateMLP(**QUICK, callback=on_event).fit(*table)
    phases = [info["phase"] for info in rich]
    assert phases[0] == "selection" and phases[-1] == "fit"
    tasks = [info for info in rich if info["phase"] == "selection"]
    # Every path on four folds, and the second activation's paths on the race's two folds.
    total = len(PATHS) * (4 + 2)
    assert [t["done"] for t in tasks] == list(range(1, total + 1)) and tasks[-1]["total"] == total
    assert all(info["seconds_left"] >= 0 for info in rich)


def test_compact_inverse_hessian_is_the_two_loop_recursion():
    # Steps along the memory's own directions on a quadratic, as minimize_lbfgs takes them, so
    # the inner products it updates incrementally are those of the pairs it stores.
    rng = np.random.default_rng(0)
    n, m = 30, 5
    A = rng.standard_normal((n, n))
    A = A @ A.T + n * np.eye(n)
    memory, pairs = _Memory(m, n), []
    x = rng.standard_normal(n)
    g = A @ x
    for _ in range(9):  # more pairs than memory: the oldest are evicted
        d = memory.direction(g)
        s = 0.7 * d
        g_new = A @ (x + s)
        y = g_new - g
        memory.update(0.7, s, y, g_new, float(s @ y), float(y @ y))
        pairs = (pairs + [(s, y)])[-m:]
        x, g = x + s, g_new
    q, alphas = g.copy(), []
    for s, y in reversed(pairs):
        alphas.append((s @ q) / (s @ y))
        q -= alphas[-1] * y
    s, y = pairs[-1]
    r = (s @ y) / (y @ y) * q
    for (s, y), a in zip(pairs, reversed(alphas), strict=True):
        r += s * (a - (y @ r) / (s @ y))
    np.testing.assert_allclose(-memory.direction(g), r, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("n", [2, 10, 40])
def test_lbfgs_converges_on_rosenbrock(n):
    x0 = np.tile([-1.2, 1.0], n // 2)
    result = minimize_lbfgs(lambda x: (rosen(x), rosen_der(x)), x0, maxiter=5000, maxcor=10,
                            gtol=1e-9)
    assert "gtol" in result.message
    np.testing.assert_allclose(result.x, 1.0, atol=1e-6)


def test_lbfgs_stops_at_the_deadline_and_when_the_callback_says_so():
    quadratic = np.linspace(1e-3, 1.0, 200)

    def slow(x):
        time.sleep(0.002)
        return 0.5 * float(quadratic @ x**2), quadratic * x

    result = minimize_lbfgs(slow, np.ones(200), maxiter=10**6, gtol=0.0,
                            deadline=time.monotonic() + 0.3)
    assert result.message == "time budget reached" and 0 < result.nit < 1000
    stopped = minimize_lbfgs(slow, np.ones(200), maxiter=100, gtol=0.0,
                             callback=lambda x, f: True)
    assert stopped.nit == 1 and stopped.message == "stopped by the callback"


def test_a_blend_of_candidates_with_independent_errors_weighs_them_alike():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2000, 1))
    first, second = (y + rng.normal(scale=0.3, size=y.shape) for _ in range(2))
    worse = y + rng.normal(scale=1.0, size=y.shape)
    weights = blend([first, worse, second], y)
    assert weights.sum() == pytest.approx(1.0) and weights[1] < 0.2
    assert 0.35 <= weights[0] <= 0.65 and 0.35 <= weights[2] <= 0.65
    mixed = sum(w * p for w, p in zip(weights, [first, worse, second], strict=True))
    assert np.mean((mixed - y) ** 2) < 0.6 * np.mean((first - y) ** 2)


def test_a_blend_keeps_the_best_candidate_alone_when_mixing_does_not_help():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(500, 2))
    shared = rng.normal(scale=0.2, size=y.shape)
    best = y + shared
    # The same errors, larger: any mix with it is worse than the best alone.
    weights = blend([y + 3 * shared, best, y + 2 * shared], y)
    np.testing.assert_array_equal(weights, [0.0, 1.0, 0.0])
