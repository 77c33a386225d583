"""How much compute a fit spends, and where: sized to the table, bounded by a time budget.

Every figure of a :class:`Plan` follows from the table's shape (rows, parameters) and the
estimator's settings, never from the clock, so a seeded fit is the same on every machine fast
enough for it. The time budget is a deadline on top: the plan is shrunk up front when the work
model below says it would not fit, and every phase stops at the deadline if the machine is
slower than modelled.

Measured on the 2-core machines this project is tested on (numpy + OpenBLAS, one BLAS thread):
a full-batch gradient costs about ``0.25 ns`` per row and parameter, an L-BFGS iteration adds
about ``0.5 ns`` per stored pair and parameter, and Python adds about 0.1 ms a step (line search
included); other activations than tanh add their ``cost_ns`` per row and unit
(:func:`activation_seconds`). These machines' speed has varied by 2x from day to day (a gradient
over 1000 rows of a 4,801-parameter network took 1.6 ms on one, 3.2 to 5.6 ms on another), and
the model was once sized for the slow days (0.6 ns and 3 ns): on a fast one, which is what they
have been since, it planned 2.7x the work it was, shrank the plan to fit the budget and left
two thirds of the budget unused. On a slower machine than modelled every selection task's slot
and the deadline cut the work instead (:attr:`Plan.task_slot`), so the fit still ends in its
budget, and a seeded fit may then differ from one machine to another.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

__all__ = [
    "FULL_CV_ROWS",
    "SELECTION_ROWS",
    "Plan",
    "activation_seconds",
    "auto_maxcor",
    "default_time_budget",
    "make_plan",
    "polish_iterations",
    "seconds_per_iteration",
]

# Work model (seconds), for sizing only: one L-BFGS iteration, one thread (measured, 8-64-64-1
# tanh, alpha 1e-5, 6100 iterations: 0.25 / 0.65 / 1.40 / 3.74 ms at 100 / 300 / 1000 / 3000
# rows; modelled 0.27 / 0.58 / 1.42 / 3.82). At the old figures the default fit of 1000 rows
# planned 3000 iterations a path, cut them to 1200 for its budget and took 15 s of 54; with
# these it runs 25-40 s, and gains most where convergence is slow (1000 rows, seed 0: Ishigami
# 5.0e-3 to 2.8e-3, the 8-input periodic function 0.20 to 0.16); noisy tables lose a little
# (piston with 1% noise, seeds 0-2: 1.64e-2 to 1.76e-2 on average).
ROW_PARAM_SECONDS = 0.25e-9
PAIR_PARAM_SECONDS = 0.5e-9
STEP_SECONDS = 1e-4
# The plan is sized to this share of the time budget: the rest is for what the model leaves
# out (starting worker processes, a machine slower than modelled) before the deadline cuts.
PLANNED_SHARE = 0.85
# The default time budget (rows, seconds), interpolated log-log between the points and constant
# outside them: 4.5 s at 100 rows and 54 s at 1000 keep fits under the 5 s and 60 s the
# project promises, and a large table gets up to 9 minutes.
BUDGET_SECONDS = ((100, 4.5), (1000, 54.0), (100_000, 540.0))

# Tables up to this many rows choose their regularization by K-fold cross-validation on every
# row, and the exported model is the winner trained (full batch) on all of them. Larger tables
# choose on a random subsample of SELECTION_ROWS rows and are then trained afresh on all rows
# (mini-batch Adam, then L-BFGS), watched by a validation split. Measured, borehole, seed 0, at
# 3000 / 5000 rows, the subsample and fresh fit against cross-validation on every row:
# noise-free 1.74e-3 / 9.2e-4 against 7.2e-4 / 7.8e-4 (1000 rows: 9.6e-4, so 3000 rows were
# worse than 1000), 5% noise 3.0e-2 / 2.05e-2 against 2.2e-2 / 1.09e-2; 5000 rows, piston
# 1.40e-3 against 8.9e-4, Welch with 1% noise 1.39e-2 against 8.8e-3, the 30-input function
# 2.2e-3 against 2.5e-3, in 35-54 s of the 121 s budget. At 10,000 rows the fresh fit is the
# better (noise-free 4.7e-4 against 8.8e-4: cross-validating all of them leaves too few
# iterations).
FULL_CV_ROWS = 5000
SELECTION_ROWS = 1000
# Iterations of one regularization path on a fold, whatever the rows: a 100-row table needs as
# many as a 1000-row one (measured on Ishigami: with 1000 the folds were so far from converged at
# small alphas that the selection took alpha 1, test error 0.73; with 3000, 0.31).
PATH_ITERATIONS = 3000
# L-BFGS pairs: its work per iteration is about 0.5 ns per pair and parameter, against 0.25 ns
# per row and parameter for the gradient, so small tables keep fewer pairs (one per 5 rows, 10 to
# 50: measured as accurate per second on 100 rows as 50 pairs, and 1.8x the iterations).
MAXCOR_RANGE, ROWS_PER_PAIR = (10, 50), 5
# The last part of a path (its smallest alpha) gets the largest share: fine fits converge slowest.
# The final fit on all rows continues the chosen fold model for this share of a path.
FINAL_SHARE = 1.0
# Large tables: the validation split, and the work of the final fit on all training rows, in
# passes over them (epochs of Adam, L-BFGS iterations), shrinking as the table grows.
VALIDATION_FRACTION, VALIDATION_MAX_ROWS = 0.1, 10_000
WARMUP_EPOCHS = 100
# A selection modelled to take less than this on one core runs in this process: forking worker
# processes (about 0.05 s a pool, three pools a fit) and sending them the data would not pay off.
PARALLEL_MIN_SECONDS = 1.0
# Two selection tasks side by side on the two cores each ran 1.3x slower than alone (100 rows,
# 670 iterations: 0.58 s against 0.45 s; shared caches and memory bandwidth).
PARALLEL_EFFICIENCY = 0.75
# A fit at a given alpha, from scratch, gets two paths' worth of L-BFGS iterations.
FIXED_ALPHA_PATHS = 2
# Large tables: where full-batch L-BFGS over every training row would not get its iterations
# within the budget, it runs on a random subsample instead (at least this many rows), after
# Adam's epochs over every row and before the polish over all of them. L-BFGS is what drives
# the error down on a smooth table, and it was still improving at the end: on 100,000 borehole
# rows, 1,340 iterations over 90,000 rows reached a loss of 1.6e-7, the validation loss level
# with the training loss all along (so its rows were not what limited it), and the model
# (5.6e-4 relative RMSE) was no better than the one from 10,000 rows (5.5e-4). On 20,000 of
# the rows, L-BFGS got 2,706 iterations (and Adam twice the epochs) in less time: 4.0e-4.
# (Those runs were planned with a work model 2.5x too dear; priced right, the default budget
# gives L-BFGS 85,000 of the 90,000 rows and its iterations: 3.7e-4 in 440 s, seed 0.)
LBFGS_MIN_ROWS = 20_000
# The last pass over every row of a large table (validation rows included) gets this share of
# the final fit's L-BFGS iterations.
POLISH_SHARE = 0.1


def default_time_budget(n_rows: int) -> float:
    """Seconds the default fit may take at most (:data:`BUDGET_SECONDS`): 4.5 up to 100 rows,
    54 at 1000, 540 (9 minutes) from 100,000 rows on, log-log in between."""
    points = BUDGET_SECONDS
    rows = min(max(n_rows, points[0][0]), points[-1][0])
    for (r0, s0), (r1, s1) in zip(points, points[1:], strict=False):
        if rows <= r1:
            slope = math.log(s1 / s0) / math.log(r1 / r0)
            return float(s0 * (rows / r0) ** slope)
    return float(points[-1][1])


def auto_maxcor(rows: int) -> int:
    """L-BFGS pairs for a fit on ``rows`` rows."""
    low, high = MAXCOR_RANGE
    return int(min(high, max(low, rows // ROWS_PER_PAIR)))


def seconds_per_iteration(rows: int, n_params: int, maxcor: int,
                          activation_seconds: float = 0.0) -> float:
    """Modelled seconds of one full-batch L-BFGS iteration (or one epoch of Adam over ``rows``)
    of a network whose activations cost ``activation_seconds`` a row beyond tanh's
    (:func:`activation_seconds`)."""
    return rows * (n_params * ROW_PARAM_SECONDS + activation_seconds) + (
        maxcor * n_params * PAIR_PARAM_SECONDS + STEP_SECONDS
    )


def activation_seconds(net) -> float:
    """Seconds a row of an L-BFGS iteration spends on the activations of ``net`` (a
    :class:`training.network.Network`) beyond what tanh would (the work model is calibrated on
    tanh): every layer's units times its function's ``cost_ns`` (``training.activations``).
    SiLU costs 1.7x tanh an iteration, GELU 3.4x."""
    return 1e-9 * sum(width * act.cost_ns
                      for width, act in zip(net.sizes[1:], net.activations, strict=True))


@dataclass(frozen=True)
class Plan:
    """The compute of one fit.

    Attributes
    ----------
    folds : int
        K of the cross-validation (0: no selection possible, the table is too small).
    selection_rows : int
        Rows the selection runs on (all of them, or a subsample of a large table).
    validation_rows : int
        Rows held out from the final fit of a large table (0 for small tables).
    path_iterations : int
        L-BFGS iterations of one regularization path on one fold.
    final_iterations : int
        L-BFGS iterations of the final fit (the fine-tune, or the polish of a large table).
    large_epochs : int
        Adam epochs over all training rows of a large table (0 for small tables).
    large_batch : int
        Their mini-batch size.
    workers : int
        Parallel tasks of the selection.
    seconds : float
        The modelled time of the whole fit.
    shrunk : bool
        Whether the plan was cut down to fit the time budget.
    unscreened_iterations : int
        L-BFGS iterations the final fit of a small table gets on top of ``final_iterations``
        when the input screening finds nothing to try: its share of the plan, spent on the
        model instead.
    lbfgs_rows : int
        Rows the full-batch L-BFGS of the final fit runs on: every training row, or for a
        large table a random subsample of them when every row would not leave it its
        iterations within the budget (at least :data:`LBFGS_MIN_ROWS`).
    selection_share : float
        The selection's share of the modelled time (0 when nothing is selected): the share of
        the time budget it may take, so that on a machine slower than the plan the final fit
        still gets the rest, its share.
    task_slot : float
        Seconds one selection task (a path on a fold) may take: its modelled time, stretched
        by the budget's slack. A slower machine (or a loaded one) cuts every step of the path
        short in proportion, so the selection still sees every alpha and ends in its share of
        the budget, leaving the final fit its share (0 when nothing is selected).
    activation_seconds : float
        What the network the figures are for spends on its activations a row beyond tanh
        (:func:`activation_seconds`); :meth:`for_activation` gives them for another.
    fold_rows, path_iteration_seconds, final_iteration_seconds
        The rows a selection task trains on, and the modelled seconds of an iteration of a
        path and of the final fit, for that network.
    """

    folds: int
    selection_rows: int
    validation_rows: int
    path_iterations: int
    final_iterations: int
    large_epochs: int
    large_batch: int
    workers: int
    seconds: float
    shrunk: bool = False
    unscreened_iterations: int = 0
    task_slot: float = 0.0
    lbfgs_rows: int = 0
    selection_share: float = 0.0
    activation_seconds: float = 0.0
    fold_rows: int = 0
    path_iteration_seconds: float = 0.0
    final_iteration_seconds: float = 0.0

    @property
    def large(self) -> bool:
        """Whether the table is fitted as a large one: afresh, mini-batch Adam then L-BFGS,
        watched by a validation split (:data:`FULL_CV_ROWS`)."""
        return self.large_batch > 0

    def for_activation(self, activation_seconds: float) -> Plan:
        """This plan for a network whose activations cost ``activation_seconds`` a row
        (:func:`activation_seconds`; the plan's figures are for ``self.activation_seconds``):
        the same time, so fewer iterations and epochs where they cost more. A selection's tasks
        then all take about their slot, whichever activation they train, and none is cut."""
        extra = activation_seconds - self.activation_seconds
        if not extra or not self.path_iteration_seconds:
            return self
        path = self.path_iteration_seconds + self.fold_rows * extra
        final = self.final_iteration_seconds + self.lbfgs_rows * extra
        to_path = self.path_iteration_seconds / path
        to_final = self.final_iteration_seconds / final
        return replace(
            self, activation_seconds=activation_seconds, path_iteration_seconds=path,
            final_iteration_seconds=final,
            path_iterations=max(10, int(self.path_iterations * to_path)),
            final_iterations=max(5, int(self.final_iterations * to_final)),
            unscreened_iterations=int(self.unscreened_iterations * to_final),
            large_epochs=int(self.large_epochs * to_final))


def make_plan(
    n_rows: int,
    n_params: int,
    *,
    cv: int,
    n_paths: int,
    maxcor: int,
    race_tasks: int = 0,
    screening_paths: int = 0,
    time_budget: float,
    workers: int,
    validation_fraction: float | None,
    path_iterations: int | None = None,
    activation_seconds: float = 0.0,
) -> Plan:
    """The plan for a table of ``n_rows`` and a network of ``n_params`` parameters.

    ``n_paths`` selection tasks run on every fold, ``race_tasks`` more (the paths
    of the other activations on the folds they race on), and ``screening_paths`` more on every
    fold when the input screening finds inputs to try without. ``validation_fraction`` None
    holds out nothing from small tables and :data:`VALIDATION_FRACTION` (at most
    :data:`VALIDATION_MAX_ROWS` rows) from large ones; a
    number holds out that fraction from any table. ``path_iterations`` overrides the iterations
    of a path (``lbfgs_maxiter``). The figures are for a network whose activations cost
    ``activation_seconds`` a row (:func:`activation_seconds`); :meth:`Plan.for_activation`
    gives them for another in the same time.
    """

    def per_iteration(rows: int, pairs: int) -> float:
        return seconds_per_iteration(rows, n_params, pairs, activation_seconds)

    if validation_fraction is None:
        val = 0 if n_rows <= FULL_CV_ROWS else min(
            VALIDATION_MAX_ROWS, int(VALIDATION_FRACTION * n_rows))
    else:
        val = int(validation_fraction * n_rows)
    train = n_rows - val
    # (With the automatic split, by the table's rows: a table just above loses a tenth of them
    # to the split, and is still a large one.)
    large = (n_rows if validation_fraction is None else train) > FULL_CV_ROWS
    sel = SELECTION_ROWS if large else train
    folds = min(cv, sel // 2)
    if folds < 2:
        folds = 0
    if path_iterations is None:
        path_iterations = PATH_ITERATIONS
    final_iterations = max(25, round(FINAL_SHARE * path_iterations))
    epochs, batch = (large_schedule(train) if large else (0, 0))
    screening = folds * screening_paths
    tasks = folds * n_paths + screening + (race_tasks if folds else 0)
    fold_rows = sel - sel // max(folds, 1) if folds else sel
    per_task = (path_iterations + WARMUP_EPOCHS) * per_iteration(fold_rows, maxcor)
    if not tasks or tasks * per_task < PARALLEL_MIN_SECONDS:
        workers = 1
    workers = max(1, min(workers, tasks)) if tasks else 1
    if workers > 1:  # tasks side by side run slower than alone
        per_task /= PARALLEL_EFFICIENCY

    def selecting(scale: float) -> float:
        return math.ceil(tasks / workers) * per_task * scale if tasks else 0.0

    def modelled(scale: float, lbfgs_rows: int = train) -> float:
        train_it = per_iteration(lbfgs_rows, maxcor)
        if tasks:
            seconds = selecting(scale) + final_iterations * scale * train_it
        else:  # one fit at a given alpha: FIXED_ALPHA_PATHS paths' worth of iterations
            seconds = (FIXED_ALPHA_PATHS * path_iterations * scale + WARMUP_EPOCHS) * train_it
        if large:
            seconds += epochs * scale * per_iteration(train, 0) * 1.5
        if large and tasks:  # the polish over every row, after a selection
            seconds += polish_iterations(final_iterations * scale) * per_iteration(n_rows, maxcor)
        return seconds

    # A large table's L-BFGS gives up rows before anything gives up iterations (the model is
    # linear in its rows); then every part shrinks alike when the modelled time would still not
    # fit the planned share of the budget.
    planned = PLANNED_SHARE * time_budget
    lbfgs_rows, every_row = train, modelled(1.0)
    if large and every_row > planned:
        no_row = modelled(1.0, 0)
        affordable = int((planned - no_row) / ((every_row - no_row) / train))
        lbfgs_rows = min(train, max(LBFGS_MIN_ROWS, affordable))
    scale = min(1.0, planned / max(modelled(1.0, lbfgs_rows), 1e-9))
    seconds = modelled(scale, lbfgs_rows)
    slack = max(1.0, time_budget / max(seconds, 1e-9))
    return Plan(
        folds=folds,
        selection_rows=sel,
        validation_rows=val,
        path_iterations=max(10, int(path_iterations * scale)),
        final_iterations=max(5, int(final_iterations * scale)),
        large_epochs=int(epochs * scale),
        large_batch=batch,
        workers=workers,
        seconds=seconds,
        shrunk=scale < 1.0,
        selection_share=selecting(scale) / max(seconds, 1e-9),
        unscreened_iterations=0 if large or not screening else int(
            math.ceil(screening / workers) * per_task * scale
            / per_iteration(train, maxcor)),
        task_slot=per_task * scale * slack if tasks else 0.0,
        lbfgs_rows=lbfgs_rows,
        activation_seconds=activation_seconds,
        fold_rows=fold_rows,
        path_iteration_seconds=per_iteration(fold_rows, maxcor),
        final_iteration_seconds=per_iteration(lbfgs_rows, maxcor),
    )


def polish_iterations(final_iterations: float) -> int:
    """L-BFGS iterations of the polish over every row of a large table (:data:`POLISH_SHARE`
    of the final fit's)."""
    return max(5, int(POLISH_SHARE * final_iterations))


def large_schedule(train_rows: int) -> tuple[int, int]:
    """Adam epochs and batch size for the final fit of a large table: batches grow with the
    square root of the rows (200 at 2,500 rows, 1,264 at 100,000), and the epochs are about
    60,000 optimiser steps, at least 20 and at most 400 epochs."""
    batch = int(min(2000, max(200, 4 * math.sqrt(train_rows))))
    steps_per_epoch = math.ceil(train_rows / batch)
    epochs = int(min(400, max(20, 60_000 / steps_per_epoch)))
    return epochs, batch


def available_workers(n_jobs: int | None) -> int:
    """Processes the selection may use: all cores for None or -1 (joblib's negative counts)."""
    cores = os.cpu_count() or 1
    if n_jobs is None or n_jobs == -1:
        return cores
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return n_jobs
