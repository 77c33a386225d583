"""Choosing a network's L2 regularization (and how it is approached) by cross-validation.

The candidates are the steps of three regularization paths. A path trains one network while
its L2 strength ``alpha`` falls by decades, each step an L-BFGS run warm-started from the last:
``strong`` starts at ``alpha = 10``, where the network is almost linear, and lets complexity in
one decade at a time; ``weak`` starts at 1. Measured on 1000-row tables (one fold, test relative
RMSE of the validation-best step): strong 0.11 / weak 0.24 on an 8-input periodic function,
0.08 / 0.12 on Welch's 20-input function, but 0.018 / 0.003 on Friedman's function, so neither
path is right everywhere. The validation loss told the better one every time. ``direct`` is one
step, the smallest alpha from the start, with the whole path's iterations: on those four tables
it lost to the better path, but on smooth, noise-free, low-dimensional ones the regularized
start of the others costs what their last step cannot win back (see :data:`PATHS`).

Every path runs on every fold (``3 K`` independent tasks, in processes forked from the fitting
one or wherever a ``joblib.parallel_config`` sends them; with ``activation="auto"`` the other
activation's paths race on the first two folds first, see :func:`training.fitting.select`); a
path stops on a fold once its validation loss has risen for two steps in a row, as on noisy
tables, where the small alphas only fit the noise. The candidate (path, step) with the lowest
mean validation loss over the folds wins.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from training.network import Network, Problem
from training.optim import (
    AdamSettings,
    DivergenceError,
    History,
    LbfgsSettings,
    collected_notices,
    monotonic_deadline,
    run_adam,
    run_lbfgs,
)

__all__ = [
    "PATHS",
    "PathResult",
    "PathTask",
    "Selection",
    "blend",
    "choose",
    "half_mse",
    "hidden_activation",
    "merged",
    "ranks",
    "run_path",
]

# name -> alphas, largest first; every step is a candidate. "direct" is there for smooth
# noise-free tables, where a fit at the smallest alpha from scratch beat the default (1000 rows,
# seed 0: OTL circuit 3.9e-4 against 9.9e-4, piston 2.2e-3 against 3.1e-3, wing weight 1.2e-3
# against 1.7e-3). Measured, the default (with the calibrated work model) with and without it,
# 1000 rows, seed 0: borehole 6.8e-4 / 8.7e-4, OTL 4.9e-4 / 1.09e-3, piston 2.9e-3 / 3.6e-3;
# wing weight 1.05e-3 (1.66e-3 before both), 30 borehole rows 2.6e-2 (8.3e-2 before both).
# The CV chose it on Ishigami where the weak path would have done better (4.8e-3 / 2.8e-3); on
# noisy tables, where it overfits, it was never chosen.
PATHS: dict[str, tuple[float, ...]] = {
    "strong": (10.0, 1.0, 0.1, 1e-2, 1e-3, 1e-5),
    "weak": (1.0, 0.1, 1e-2, 1e-3, 1e-5),
    "direct": (1e-5,),
}
# Share of a path's iterations per step, by position from the end (the last step, at the
# smallest alpha, converges slowest); normalised over the path's steps.
_STEP_WEIGHTS = (8.0, 4.0, 3.0, 2.5, 1.6, 1.0)
# A path stops once its validation loss has risen this many steps in a row. (Stopping a step
# once its validation loss stalls was tried and dropped: on 100-row tables the validation loss
# of a step often gets worse for a few hundred iterations before it improves, and Ishigami's
# selection then took alpha 1, test error 0.73 instead of 0.33.)
PATIENCE = 2
# A step may take this much more than its share of what is left of its path's slot: its cost
# per iteration is not the path's average (on piston with 1% noise, a quiet machine cut SiLU's
# first two steps, after 46 and 75 iterations, and no other), and a step cut short is
# another path. The slot's end still bounds the path, and the last step gets what is left.
STEP_OVERRUN = 1.25
# The first step's iterations cost this much more than the others' when the slot is shared
# (L-BFGS starts without curvature, from the warm-up's unregularized weights, so its line
# searches take more evaluations): measured, one thread, 8-64-64-1 on 75 and 750 rows, 1.0 to
# 1.6 times the path's other steps per iteration. At 1.0 (with the overrun above), a quiet
# machine cut the first step of some path in 3 of 6 seeded 100-row borehole fits, a different
# one each time, so the same seed gave another model; at 1.5, in 1 of 6.
FIRST_STEP_COST = 1.5
# Additions of the greedy blend of candidates (:func:`blend`): weights in twentieths.
BLEND_ROUNDS = 20


def hidden_activation(activations) -> str:
    """The hidden layers' activation of a network, from its layers' names (or Activations), the
    output layer's last: one name when they share it, else the names joined by commas."""
    names = [getattr(a, "name", a) for a in activations][:-1]
    return names[0] if len(set(names)) == 1 else ",".join(names)  # "" without hidden layers


def step_iterations(n_steps: int, total: int) -> list[int]:
    """Iterations per step of a path with ``n_steps`` steps and ``total`` iterations."""
    weights = list(reversed(_STEP_WEIGHTS[:n_steps]))
    scale = total / sum(weights)
    return [max(5, round(w * scale)) for w in weights]


@dataclass
class PathTask:
    """One path on one fold: everything a worker process needs (scaled data included)."""

    path: str
    fold: int
    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    iterations: int
    warmup: AdamSettings
    lbfgs: LbfgsSettings
    solver: str  # "auto" (Adam warm start, L-BFGS steps), "lbfgs", or "adam" (Adam steps)
    seed: int
    deadline: float | None  # time.time() seconds
    slot: float | None = None  # seconds this task may take (Plan.task_slot); None: no limit


@dataclass
class PathResult:
    """What one path did on one fold: per step its alpha, validation loss, iterations and
    parameters; the loss history; how it stopped."""

    path: str
    fold: int
    activation: str = ""  # of the hidden layers (hidden_activation)
    alphas: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    thetas: list[np.ndarray] = field(default_factory=list)
    history_loss: list[float] = field(default_factory=list)
    history_val: list[float] = field(default_factory=list)
    history_ends: list[int] = field(default_factory=list)  # len(history) after each step
    log: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # divergences it recovered from (notify)
    error: str = ""  # why it failed before its first step
    seconds: float = 0.0


def run_path(task: PathTask) -> PathResult:
    """Train one network down one regularization path on one fold (runs in a worker). A step
    that diverges ends the path (the steps before it stay candidates); the recoveries of Adam
    (a lower learning rate) are recorded in ``notices``."""
    started = time.perf_counter()
    result = PathResult(task.path, task.fold, hidden_activation(task.activations))
    with collected_notices() as result.notices:  # filled in place, also if _walk raises
        _walk(task, result)
    result.seconds = time.perf_counter() - started
    return result


def _walk(task: PathTask, result: PathResult) -> None:
    from threadpoolctl import threadpool_limits

    from training.activations import get_activation
    from training.heap import roomy_heap

    alphas = PATHS[task.path]
    net = Network(task.sizes, [get_activation(name) for name in task.activations])
    rng = np.random.RandomState(task.seed)
    problem = Problem(net, net.initial(rng), task.x, task.y, task.x_val, task.y_val, alphas[0])
    history = History(True)
    warm = task.solver == "auto" and task.warmup.epochs
    steps = step_iterations(len(alphas), task.iterations)
    deadline = monotonic_deadline(task.deadline)
    best, rises = math.inf, 0
    with threadpool_limits(limits=1), np.errstate(over="ignore", invalid="ignore"), roomy_heap():
        if warm:  # short, and never cut by the slot: a warm-up cut short is another start
            run_adam(problem, _with_deadline(task.warmup, deadline), rng, history, result.log)
        # The steps share the slot's part for them from when they begin.
        slot_end = None if task.slot is None else time.monotonic() + task.slot * sum(steps) / (
            sum(steps) + (task.warmup.epochs if warm else 0))
        costs = [FIRST_STEP_COST * steps[0], *steps[1:]]
        for k, (alpha, iterations) in enumerate(zip(alphas, steps, strict=True)):
            step_deadline = _step_deadline(costs[k:], slot_end, deadline)
            problem.alpha_n = alpha / len(task.x)
            start = len(history.loss)
            try:
                if task.solver == "adam":  # a step is that many epochs, without the tol rule
                    settings = _with_deadline(task.warmup, step_deadline, epochs=iterations,
                                              n_iter_no_change=iterations)
                    run_adam(problem, settings, rng, history, result.log)
                else:
                    settings = _with_deadline(task.lbfgs, step_deadline, maxiter=iterations)
                    run_lbfgs(problem, settings, history, result.log, fallback=False)
            except DivergenceError as err:
                if not result.val_loss:
                    raise
                result.log.append(f"alpha {alpha:g}: stopped: {err}")
                break
            val = problem.val_loss()
            result.alphas.append(alpha)
            result.val_loss.append(val)
            result.iterations.append(len(history.loss) - start)
            result.thetas.append(problem.theta.copy())
            result.history_ends.append(len(history.loss))
            result.history_loss, result.history_val = history.loss, history.validation
            if not math.isfinite(val):
                result.log.append(f"stopped: validation loss {val} at alpha {alpha:g}")
                break
            rises = 0 if val < best else rises + 1
            best = min(best, val)
            if rises >= PATIENCE:
                result.log.append(f"stopped: validation loss rose {PATIENCE} steps in a row")
                break
            if task.deadline is not None and time.time() >= task.deadline:
                result.log.append("stopped: time budget reached")
                break


def _step_deadline(steps: list[float], slot_end: float | None,
                   deadline: float | None) -> float | None:
    """The ``time.monotonic()`` deadline of the first of ``steps`` (the path's steps left, in
    iterations weighted by their cost), starting now: its share of what is left of the slot,
    with :data:`STEP_OVERRUN` to spare (steps differ in their cost per iteration), never past
    the slot's end nor the fit's ``deadline``; None where there is no limit."""
    if slot_end is None:
        return deadline
    now = time.monotonic()
    end = min(slot_end, now + STEP_OVERRUN * (slot_end - now) * steps[0] / max(sum(steps), 1))
    return end if deadline is None else min(end, deadline)


def _with_deadline(settings, deadline, **changes):
    return replace(settings, deadline=deadline, **changes)


@dataclass
class Selection:
    """The outcome of :func:`choose`."""

    path: str
    step: int
    alpha: float
    cv_results: dict
    results: list[PathResult]
    folds: list = field(default_factory=list)  # (train rows, validation rows) per fold
    net: Network | None = None  # the network cross-validated (the race's winner)
    race: dict = field(default_factory=dict)  # activation -> best validation loss on fold 0

    def smaller_alpha_overfits(self) -> bool:
        """Whether the step after the winner, on its path, validated worse on average (or was
        never reached because the folds' validation loss had turned up)."""
        rows = [(p["path"], p["alpha"], v) for p, v in zip(
            self.cv_results["params"], self.cv_results["mean_val_loss"], strict=True)]
        mine = [v for path, _, v in rows if path == self.path]
        if self.step + 1 >= len(mine):
            return False
        return mine[self.step + 1] > mine[self.step]

    def fold_results(self) -> list[PathResult]:
        """The winning path's result on every fold, in fold order."""
        return sorted((r for r in self.results if r.path == self.path), key=lambda r: r.fold)

    def candidates(self) -> list[tuple[str, int, list[np.ndarray]]]:
        """Every candidate that every fold reached, as (path, step, its fold models' parameters
        in fold order)."""
        out = []
        for path in PATHS:
            mine = {r.fold: r for r in self.results if r.path == path}
            if len(mine) < len(self.folds):
                continue
            for step in range(min(len(r.thetas) for r in mine.values())):
                out.append((path, step, [mine[k].thetas[step] for k in range(len(self.folds))]))
        return out


def half_mse(predicted: np.ndarray, y: np.ndarray) -> float:
    """The paths' validation loss of predictions: half their mean squared error (scaled
    units)."""
    return 0.5 * float(np.mean(np.square(predicted - y)))


def blend(heldout: list[np.ndarray], y: np.ndarray, rounds: int = BLEND_ROUNDS) -> np.ndarray:
    """Weights (summing to 1) of the mean of candidates whose held-out predictions ``heldout``
    (each like ``y``) come closest to ``y``: greedy forward selection with replacement
    (Caruana et al., "Ensemble selection from libraries of models", ICML 2004), ``rounds``
    additions at most, the best mean along the way kept. The first pick is the candidate that
    validates best alone, so the blend validates at least as well as it."""
    counts = np.zeros(len(heldout))
    total = np.zeros_like(y)
    best, kept = math.inf, counts
    for added in range(1, rounds + 1):
        losses = [half_mse((total + p) / added, y) for p in heldout]
        pick = int(np.argmin(losses))
        counts = counts.copy()
        counts[pick] += 1
        total += heldout[pick]
        if losses[pick] < best:
            best, kept = losses[pick], counts
    return kept / kept.sum()


def choose(results: list[PathResult], folds: int, splits: list | None = None) -> Selection:
    """The candidate with the lowest mean validation loss over all folds, and the table of all
    candidates (like scikit-learn's ``cv_results_``). A candidate that some fold never reached
    (its path stopped before) is ranked last."""
    rows = []
    for path, alphas in PATHS.items():
        mine = {r.fold: r for r in results if r.path == path}
        if not mine:
            continue
        for step, alpha in enumerate(alphas):
            losses = [mine[k].val_loss[step] if k in mine and step < len(mine[k].val_loss)
                      else math.nan for k in range(folds)]
            its = [mine[k].iterations[step] for k in range(folds)
                   if k in mine and step < len(mine[k].iterations)]
            complete = all(math.isfinite(v) for v in losses)
            rows.append({
                "path": path, "step": step, "alpha": alpha,
                "mean_val_loss": float(np.mean(losses)) if complete else math.inf,
                "std_val_loss": float(np.std(losses)) if complete else math.nan,
                "split_val_loss": losses,
                "mean_iterations": float(np.mean(its)) if its else 0.0,
            })
    for row, rank in zip(rows, ranks([r["mean_val_loss"] for r in rows]), strict=True):
        row["rank"] = rank
    best = min(rows, key=lambda r: r["rank"])
    cv_results = {
        "params": [{"alpha": r["alpha"], "path": r["path"]} for r in rows],
        "mean_val_loss": [r["mean_val_loss"] for r in rows],
        "std_val_loss": [r["std_val_loss"] for r in rows],
        **{f"split{k}_val_loss": [r["split_val_loss"][k] for r in rows] for k in range(folds)},
        "mean_iterations": [r["mean_iterations"] for r in rows],
        "rank_val_loss": [r["rank"] for r in rows],
    }
    return Selection(best["path"], best["step"], best["alpha"], cv_results, results,
                     list(splits or []))


def ranks(losses: list[float]) -> list[int]:
    """1 for the lowest loss, 2 for the next, ... (ties in order)."""
    order = sorted(range(len(losses)), key=lambda i: losses[i])
    out = [0] * len(losses)
    for rank, i in enumerate(order, start=1):
        out[i] = rank
    return out


def merged(tables: list[tuple[dict, dict]]) -> dict:
    """Candidate tables of :func:`choose` over the same folds as one table, ranked anew; each
    comes with parameters added to every one of its candidates (``{"inputs": 8}``)."""
    out: dict[str, list] = {}
    for table, extra in tables:
        for key, values in table.items():
            if key == "params":
                values = [{**params, **extra} for params in values]
            out.setdefault(key, []).extend(values)
    out["rank_val_loss"] = ranks(out["mean_val_loss"])
    return out
