"""The phases of a ``SurrogateMLP`` fit: selection by cross-validation, then the final fit.

:func:`select` runs every regularization path on every fold (:mod:`training.selection`) in
parallel through ``joblib.Parallel`` and picks the winner. :func:`fine_tune` continues the
winner's best fold model on every row of a small table. :func:`train_large` trains on all
training rows of a large table: mini-batch Adam with a cosine-decaying rate, sized to the table,
then full-batch L-BFGS, both watched by the validation split (the best iterate is kept), then a
short L-BFGS polish on every row. :func:`train_fixed` is the plain fit at a given ``alpha``.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from training.network import Network, Problem
from training.optim import (
    AdamSettings,
    DivergenceError,
    History,
    LbfgsSettings,
    monotonic_deadline,
    notify,
    run_adam,
    run_lbfgs,
)
from training.plan import Plan, activation_seconds
from training.selection import (
    PATHS,
    PathResult,
    PathTask,
    Selection,
    choose,
    hidden_activation,
    run_path,
)

__all__ = ["Notifier", "Run", "Settings", "fine_tune", "select", "train_fixed", "train_large"]


@dataclass(frozen=True)
class Settings:
    """What the estimator resolved from its parameters for the optimisers."""

    warmup: AdamSettings  # the short Adam start of every fit from scratch
    lbfgs: LbfgsSettings
    learning_rate: float
    solver: str
    early_stopping: bool


class Notifier:
    """The user's ``callback``: ``callback(epoch, train_loss, val_loss)`` after every epoch or
    iteration of the final model's own training, and, if it takes keyword arguments ``phase``
    and ``seconds_left`` (or ``**kwargs``), those as well, and a call per finished selection
    task (``epoch`` 0, losses None, ``done`` and ``total`` tasks)."""

    def __init__(self, callback: Callable | None, deadline: float, planned: float) -> None:
        self.callback, self.deadline = callback, deadline
        self.started, self.planned = time.time(), planned
        self.rich = callback is not None and _takes_keywords(callback)
        self.phase = "fit"

    def seconds_left(self, fraction_done: float) -> float:
        """Time left: the plan's estimate scaled by how far the fit is, within the budget."""
        elapsed = time.time() - self.started
        if fraction_done > 0.05:
            estimate = elapsed / fraction_done - elapsed
        else:
            estimate = max(self.planned - elapsed, 0.0)
        return max(0.0, min(estimate, self.deadline - time.time()))

    def epoch(self, epoch: int, loss: float, val: float | None, **info) -> None:
        if self.callback is None:
            return
        if self.rich:
            self.callback(epoch, loss, val, phase=self.phase, **info)
        else:
            self.callback(epoch, loss, val)

    def task(self, done: int, total: int) -> None:
        if self.rich:
            self.callback(0, None, None, phase=self.phase, done=done, total=total,
                          seconds_left=self.seconds_left(done / total * 0.7))

    def history(self, has_validation: bool, start: int = 0, fraction: tuple = (0.0, 1.0),
                total: int = 1) -> History:
        """A History whose entries reach the callback, with the time left estimated from how
        many of the phase's ``total`` iterations ran (the phase spans ``fraction`` of the fit)."""

        def on_entry(epoch: int, loss: float, val: float | None) -> None:
            done = fraction[0] + (fraction[1] - fraction[0]) * min(1.0, (epoch - start) / total)
            self.epoch(epoch, loss, val, seconds_left=self.seconds_left(done))

        return History(has_validation, on_entry if self.callback is not None else None)


def _takes_keywords(callback: Callable) -> bool:
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    names = {p.name for p in params}
    return any(p.kind is p.VAR_KEYWORD for p in params) or {"phase", "seconds_left"} <= names


def select(
    nets: Sequence[Network],
    x: np.ndarray,
    y: np.ndarray,
    plan: Plan,
    settings: Settings,
    seeds: list[int],
    fold_seed: int,
    deadline: float,
    notifier: Notifier,
    paths: tuple[str, ...] = tuple(PATHS),
) -> Selection:
    """Cross-validate ``paths`` (every path) on ``plan.folds`` folds of ``(x, y)`` (scaled); the
    winner. The folds follow from ``fold_seed`` and the number of rows alone.

    With several ``nets`` (networks differing in their activations) they race on the first
    :data:`RACE_FOLDS` folds first: the one whose best candidate validates best there (on the
    mean over those folds) is cross-validated on the other folds, the others stop
    (``Selection.race`` keeps each one's mean of its best validation loss on those folds)."""
    from sklearn.model_selection import KFold

    folds = list(KFold(plan.folds, shuffle=True, random_state=fold_seed).split(x))
    progress = _Progress(notifier, len(paths) * (len(folds) + (len(nets) - 1) * RACE_FOLDS))

    def tasks(net: Network, fold_ids) -> list[PathTask]:
        names = tuple(act.name for act in net.activations)
        # As many iterations as this network does in the plan's time: every task fits its slot.
        iterations = plan.for_activation(activation_seconds(net)).path_iterations
        return [
            PathTask(path, k, net.sizes, names, x[train], y[train], x[val], y[val],
                     iterations, settings.warmup, settings.lbfgs, settings.solver,
                     seeds[PATHS_ORDER[path] * plan.folds + k], deadline, plan.task_slot or None)
            for path in paths for k in fold_ids for train, val in [folds[k]]
        ]

    race: dict[str, float] = {}
    results: list[PathResult] = []
    net = nets[0]
    if len(nets) > 1:
        entries = _run_tasks([t for n in nets for t in tasks(n, range(RACE_FOLDS))], plan,
                             progress)
        by_name = {hidden_activation(n.activations): n for n in nets}
        for name in by_name:  # the mean over the race's folds of each one's best candidate
            race[name] = float(np.mean([min((v for r in entries
                                             if r.activation == name and r.fold == k
                                             for v in r.val_loss if math.isfinite(v)),
                                            default=math.inf) for k in range(RACE_FOLDS)]))
        winner = min(race, key=race.get)
        net, results = by_name[winner], [r for r in entries if r.activation == winner]
    done = {r.fold for r in results}
    results += _run_tasks(tasks(net, [k for k in range(len(folds)) if k not in done]), plan,
                          progress)
    usable = [r for r in results if r.val_loss]
    if not usable:
        raise DivergenceError(next((r.error for r in results if r.error),
                                   "training failed on every fold"))
    usable.sort(key=lambda r: (r.path, r.fold))  # results arrive in any order
    chosen = choose(usable, plan.folds, folds)
    chosen.net, chosen.race = net, race
    return chosen


# Folds the activations race on before the winner is cross-validated on the rest: not every
# fold, so that a second activation does not cost every fold's paths; two, because on a noisy
# table one fold's validation rows (a quarter of 1000) cannot tell them apart: piston with 1%
# noise, seed 0, fold 0 said tanh 8.72e-4 against SiLU 9.02e-4, and the tanh model was 2.38e-2
# relative RMSE against SiLU's 1.6e-2. Measured, 1000 rows, seed 0, one fold / two: piston 1%
# 2.38e-2 / 1.72e-2 (seed 1: 1.58e-2 with two), borehole 1.30e-3 / 1.30e-3, borehole 1%
# 7.24e-3 / 7.50e-3, Friedman 1% 1.08e-2 / 1.12e-2, periodic8 0.207 / 0.212 (the two more
# tasks leave every task 1/8 fewer iterations).
RACE_FOLDS = 2
PATHS_ORDER = {path: i for i, path in enumerate(PATHS)}


@dataclass
class _Progress:
    """Counts finished selection tasks for the callback."""

    notifier: Notifier
    total: int
    done: int = 0

    def __call__(self) -> None:
        self.done += 1
        self.notifier.task(self.done, self.total)


def _run_tasks(tasks: list[PathTask], plan: Plan, progress: _Progress) -> list[PathResult]:
    """Run ``tasks`` in parallel processes (one after another inside a joblib or Dask worker);
    what they recovered from is warned once each, here (a worker's warnings would be lost)."""
    import joblib

    if not tasks:
        return []
    results: list[PathResult] = []
    n_jobs = 1 if plan.workers <= 1 or _nested() else plan.workers
    if n_jobs > 1 and _local_processes():
        done = _forked(tasks, n_jobs)
    else:
        parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        done = parallel(joblib.delayed(_run_safely)(task) for task in tasks)
    for result in done:
        results.append(result)
        progress()
    for notice in dict.fromkeys(n for r in results for n in r.notices):
        notify(notice, stacklevel=4)
    return results


def _local_processes() -> bool:
    """Whether the tasks go to local processes: joblib's default, unless a
    ``joblib.parallel_config`` chose something else (Dask, threads), which is then used."""
    from joblib.parallel import BACKENDS, get_active_backend

    return isinstance(get_active_backend()[0], BACKENDS["loky"])


def _forked(tasks: list[PathTask], n_jobs: int):
    """The results of ``tasks`` as they finish, from ``n_jobs`` processes forked from this one:
    they start in about 0.05 s with everything imported, where fresh interpreters (joblib's
    loky) took 1 to 2 s here, a third of a 100-row fit's budget. The workers ignore SIGINT; an
    interrupt (or any error) here stops them at once."""
    import multiprocessing
    import signal

    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else None)
    pool = context.Pool(n_jobs, initializer=signal.signal,
                        initargs=(signal.SIGINT, signal.SIG_IGN))
    try:
        yield from pool.imap_unordered(_run_safely, tasks)
    finally:
        pool.terminate()
        pool.join()


def _run_safely(task: PathTask) -> PathResult:
    """A path that diverged at its first step is a failed candidate, not a failed fit."""
    try:
        return run_path(task)
    except DivergenceError as err:
        result = PathResult(task.path, task.fold, hidden_activation(task.activations),
                            log=[f"diverged: {err}"])
        result.error = str(err)
        return result


def _nested() -> bool:
    """True inside a joblib worker or a daemon process (a sweep or an ensemble already uses
    every core)."""
    import multiprocessing

    from joblib.externals.loky import process_executor

    if getattr(process_executor, "_CURRENT_DEPTH", 0) > 0:
        return True
    if multiprocessing.current_process().daemon:
        return True
    if "distributed" not in sys.modules:  # not a Dask worker (importing it takes 0.4 s)
        return False
    from distributed import get_worker

    try:
        get_worker()
        return True
    except ValueError:
        return False


@dataclass
class Run:
    """What every phase of one fit shares: the random state, the history and log it appends
    to, and the fit's ``time.time()`` deadline."""

    rng: np.random.RandomState
    history: History
    log: list[str]
    deadline: float


def fine_tune(problem: Problem, iterations: int, settings: Settings, run: Run) -> int:
    """Continue ``problem.theta`` (the chosen fold model) on every row at the chosen alpha:
    ``iterations`` L-BFGS iterations (Adam epochs for solver "adam"). Returns the rows L-BFGS
    ran on (0 for solver "adam")."""
    deadline = monotonic_deadline(run.deadline)
    if settings.solver == "adam":
        adam = replace(settings.warmup, epochs=iterations, n_iter_no_change=iterations,
                       deadline=deadline)
        run_adam(problem, adam, run.rng, run.history, run.log)
        return 0
    lbfgs = replace(settings.lbfgs, maxiter=iterations, deadline=deadline)
    run_lbfgs(problem, lbfgs, run.history, run.log, fallback=True)
    return len(problem.x)


def train_fixed(problem: Problem, iterations: int, settings: Settings, run: Run) -> int:
    """From scratch at one alpha: Adam's warm start (solvers auto and adam), then L-BFGS
    (solvers auto and lbfgs). Returns the rows L-BFGS ran on (0 for solver "adam")."""
    deadline = monotonic_deadline(run.deadline)
    if settings.solver in ("adam", "auto"):
        run_adam(problem, replace(settings.warmup, deadline=deadline), run.rng, run.history,
                 run.log)
    if settings.solver in ("lbfgs", "auto"):
        lbfgs = replace(settings.lbfgs, maxiter=iterations, deadline=deadline)
        run_lbfgs(problem, lbfgs, run.history, run.log, fallback=settings.solver == "auto")
        return len(problem.x)
    return 0


def train_large(
    problem: Problem,
    plan: Plan,
    settings: Settings,
    run: Run,
    adam_epochs: int | None = None,
    batch_size: int | None = None,
    alphas: tuple[float, ...] = (),
) -> int:
    """Mini-batch Adam over all training rows with a cosine-decaying rate (annealing the L2
    strength through ``alphas`` first, a regularization path), then full-batch L-BFGS, both
    keeping the best validation iterate when there are validation rows. Returns the rows
    L-BFGS ran on (0 for solver "adam")."""
    deadline = monotonic_deadline(run.deadline)
    epochs = plan.large_epochs if adam_epochs is None else adam_epochs
    batch = plan.large_batch if batch_size is None else batch_size
    watch = problem.x_val is not None
    if settings.solver in ("adam", "auto") and epochs:
        adam = AdamSettings(epochs, min(batch, len(problem.x)), settings.learning_rate,
                            "cosine", 0.0, epochs, watch, deadline, alphas)
        run_adam(problem, adam, run.rng, run.history, run.log)
    if settings.solver in ("lbfgs", "auto"):
        lbfgs = replace(settings.lbfgs, maxiter=plan.final_iterations,
                        early_stopping=watch or settings.early_stopping, deadline=deadline)
        rows = _lbfgs_rows(problem, plan.lbfgs_rows, run)
        run_lbfgs(rows, lbfgs, run.history, run.log, fallback=settings.solver == "auto")
        return len(rows.x)
    return 0


def _lbfgs_rows(problem: Problem, rows: int, run: Run) -> Problem:
    """``problem``, or the same objective on a random subsample of ``rows`` of its training
    rows (sharing its parameters, which L-BFGS updates in place, and its validation rows)."""
    if not 0 < rows < len(problem.x):
        return problem
    subset = np.sort(run.rng.choice(len(problem.x), rows, replace=False))
    alpha = problem.alpha_n * len(problem.x)
    run.log.append(f"lbfgs on {rows} of the {len(problem.x)} training rows (what the time "
                   "budget lets it iterate over)")
    return Problem(problem.net, problem.theta, problem.x[subset], problem.y[subset],
                   problem.x_val, problem.y_val, alpha)


