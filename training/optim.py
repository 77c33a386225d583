"""Optimisers for a :class:`training.network.Problem`: mini-batch Adam with learning-rate
schedules, and full-batch L-BFGS (:mod:`training.lbfgs`) driven to tight tolerances.

Both work in place on the problem's flat parameter vector, record the training (and validation)
loss per epoch or iteration in a :class:`History`, and raise :class:`DivergenceError` when the
loss stops being finite; :func:`run_adam` and :func:`run_lbfgs` add the recovery policy.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

import numpy as np

from training.errors import TrainingError
from training.lbfgs import minimize_lbfgs
from training.network import Problem

__all__ = [
    "SCHEDULES",
    "AdamSettings",
    "DivergenceError",
    "DivergenceWarning",
    "History",
    "LbfgsSettings",
    "collected_notices",
    "monotonic_deadline",
    "notify",
    "run_adam",
    "run_lbfgs",
]

SCHEDULES: tuple[str, ...] = ("constant", "cosine", "plateau")
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-8
# "plateau" divides the rate by 5 (scikit-learn's "adaptive" factor) and stops once it would fall
# below this fraction of the initial rate.
PLATEAU_FACTOR, PLATEAU_FLOOR = 5.0, 1e-3
# A diverging Adam phase is restarted from its start with the rate divided by 10, this often.
MAX_RESTARTS = 2


class DivergenceError(TrainingError, RuntimeError, ValueError):
    """The training loss became NaN or infinite.

    Also a ValueError: it comes from the settings (the learning rate, the scaling) meeting the
    data.
    """


class DivergenceWarning(UserWarning):
    """Training recovered from a diverging loss: by a lower learning rate, or by keeping the
    parameters Adam reached when the L-BFGS polish diverged. Like scikit-learn's
    ConvergenceWarning, the fit succeeded but the user should know; the CLI shows it in one line.
    """


# Where the notices of recovered divergences go: None, warned as DivergenceWarnings; a list,
# collected there (collected_notices). A context variable, each thread its own, where
# warnings.catch_warnings (used before) swaps the process's filters and showwarning, which is
# not thread-safe: fits running in joblib's threading backend left the filters changed.
_NOTICES: ContextVar[list[str] | None] = ContextVar("training.optim notices", default=None)


def notify(message: str, stacklevel: int = 1) -> None:
    """Report a recovered divergence: to the innermost :func:`collected_notices` of this
    thread, else as a DivergenceWarning (``stacklevel`` as for ``warnings.warn``, counted from
    the caller)."""
    sink = _NOTICES.get()
    if sink is None:
        warnings.warn(message, DivergenceWarning, stacklevel=stacklevel + 1)
    else:
        sink.append(message)


@contextmanager
def collected_notices() -> Iterator[list[str]]:
    """Collect the :func:`notify` notices of this thread inside into the list it yields."""
    sink: list[str] = []
    token = _NOTICES.set(sink)
    try:
        yield sink
    finally:
        _NOTICES.reset(token)


@dataclass
class History:
    """Loss per epoch (Adam) or iteration (L-BFGS), across phases, and the user's callback."""

    has_validation: bool
    callback: Callable[[int, float, float | None], object] | None = None
    loss: list[float] = field(default_factory=list)
    validation: list[float] = field(default_factory=list)

    def add(self, loss: float, val_loss: float | None) -> None:
        self.loss.append(loss)
        if val_loss is not None:
            self.validation.append(val_loss)
        if self.callback is not None:
            self.callback(len(self.loss), loss, val_loss)

    def truncate(self, length: int) -> None:
        """Forget entries past ``length`` (a phase that diverged and is restarted)."""
        del self.loss[length:], self.validation[length:]


@dataclass(frozen=True)
class AdamSettings:
    """``deadline``: a ``time.monotonic()`` time after which no further epoch starts.
    ``alphas``: L2 strengths to anneal through, geometrically, over the first half of the
    epochs (a regularization path run inside one Adam phase), ending at the problem's own."""

    epochs: int
    batch_size: int
    learning_rate: float
    schedule: str
    tol: float
    n_iter_no_change: int
    early_stopping: bool
    deadline: float | None = None
    alphas: tuple[float, ...] = ()


@dataclass(frozen=True)
class LbfgsSettings:
    """``deadline``: a ``time.monotonic()`` time after which no further iteration starts."""

    maxiter: int
    ftol: float
    gtol: float
    maxcor: int
    early_stopping: bool
    deadline: float | None = None


def monotonic_deadline(deadline: float | None) -> float | None:
    """A ``time.time()`` deadline (what the estimator plans in) as the ``time.monotonic()`` one
    the optimisers check; None stays None (no limit)."""
    return None if deadline is None else time.monotonic() + (deadline - time.time())


def run_adam(
    problem: Problem,
    settings: AdamSettings,
    rng: np.random.RandomState,
    history: History,
    log: list[str],
) -> None:
    """Adam, restarted from the same parameters with a 10x lower rate when the loss diverges."""
    start_theta, start_len = problem.theta.copy(), len(history.loss)
    for attempt in range(MAX_RESTARTS + 1):
        rate = settings.learning_rate / 10**attempt
        try:
            reason = adam(problem, replace(settings, learning_rate=rate), rng, history)
        except DivergenceError as err:
            log.append(f"adam (learning rate {rate:g}) diverged: {err}")
            problem.theta[...] = start_theta
            history.truncate(start_len)
            continue
        log.append(f"adam (learning rate {rate:g}): {reason}")
        if attempt:
            tried = " and ".join(f"{settings.learning_rate / 10**k:g}" for k in range(attempt))
            notify(f"the loss diverged at learning rate {tried}; training recovered with "
                   f"learning rate {rate:g}", stacklevel=3)
        return
    raise DivergenceError(
        "training diverged at every learning rate tried; lower learning_rate_init or change the "
        "scaling. Log: " + " | ".join(log)
    )


def run_lbfgs(
    problem: Problem, settings: LbfgsSettings, history: History, log: list[str], fallback: bool
) -> None:
    """L-BFGS; with ``fallback`` a divergence restores the starting parameters (the Adam
    result), otherwise it is raised."""
    start_theta, start_len = problem.theta.copy(), len(history.loss)
    try:
        log.append("lbfgs: " + lbfgs(problem, settings, history))
    except DivergenceError as err:
        log.append(f"lbfgs diverged: {err}")
        if not fallback:
            raise DivergenceError(f"L-BFGS diverged: {err}") from None
        problem.theta[...] = start_theta
        history.truncate(start_len)
        log.append("lbfgs: kept the parameters it started from")
        notify("L-BFGS diverged; the model keeps the parameters Adam reached", stacklevel=3)


def adam(
    problem: Problem, settings: AdamSettings, rng: np.random.RandomState, history: History
) -> str:
    """Run mini-batch Adam in place on ``problem.theta``; returns why it stopped.

    With ``early_stopping`` the validation loss is monitored and the best parameters are
    restored at the end; otherwise the training loss is monitored.
    """
    final_alpha_n = problem.alpha_n
    try:
        return _adam(problem, settings, rng, history, final_alpha_n)
    finally:  # an annealed alpha is the problem's own again, even after a divergence
        problem.alpha_n = final_alpha_n


def _adam(problem: Problem, s: AdamSettings, rng, history: History, final_alpha_n: float) -> str:
    theta, grad, n = problem.theta, problem.grad, len(problem.x)
    m, v, tmp = np.zeros_like(theta), np.zeros_like(theta), np.empty_like(theta)
    use_validation = problem.x_val is not None and s.early_stopping
    monitor, best = _Monitor(s, use_validation), _BestIterate(use_validation)
    lr, step, reason = s.learning_rate, 0, f"max_iter={s.epochs} epochs reached"
    for epoch in range(s.epochs):
        if s.schedule == "cosine":
            lr = s.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / s.epochs))
        if s.alphas:
            problem.alpha_n = _annealed(s.alphas, final_alpha_n, epoch / max(1, s.epochs // 2))
        order = rng.permutation(n)
        xs, ys, total = problem.x[order], problem.y[order], 0.0
        for start in range(0, n, s.batch_size):
            xb, yb = xs[start : start + s.batch_size], ys[start : start + s.batch_size]
            total += problem.loss_grad(xb, yb) * len(xb)
            step += 1
            # In-place Adam update of the whole flat vector, bias correction folded into the rate.
            m *= BETA_1
            m += (1.0 - BETA_1) * grad
            v *= BETA_2
            np.multiply(grad, grad, out=tmp)
            tmp *= 1.0 - BETA_2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += EPSILON
            np.divide(m, tmp, out=tmp)
            tmp *= lr * math.sqrt(1.0 - BETA_2**step) / (1.0 - BETA_1**step)
            theta -= tmp
        loss, val = total / n + problem.penalty(), problem.val_loss()
        history.add(loss, val)
        _check_finite(loss, f"Adam epoch {epoch + 1}")
        best.update(val, theta)
        if s.deadline is not None and time.monotonic() >= s.deadline:
            reason = f"time budget reached at epoch {epoch + 1}"
            break
        if monitor.update(loss, val):
            if s.schedule == "plateau" and lr / PLATEAU_FACTOR >= s.learning_rate * PLATEAU_FLOOR:
                lr /= PLATEAU_FACTOR
                monitor.stale = 0
                continue
            reason = f"no improvement > tol for {s.n_iter_no_change} epochs at epoch {epoch + 1}"
            break
    return reason + best.restore(theta)


def _annealed(alphas: tuple[float, ...], final: float, progress: float) -> float:
    """Geometric interpolation from ``alphas[0]`` (scaled like ``final``) to ``final``."""
    if progress >= 1.0 or final <= 0:
        return final
    start = alphas[0] * final / alphas[-1]
    return start * (final / start) ** progress


def lbfgs(problem: Problem, settings: LbfgsSettings, history: History) -> str:
    """Run full-batch L-BFGS in place on ``problem.theta``; returns why it stopped.

    Unlike scikit-learn, ``ftol`` is exposed: its test is absolute once the loss is below 1, so
    scipy's default stops scaled-space fits long before they converge.
    """
    s, theta = settings, problem.theta
    best = _BestIterate(s.early_stopping and problem.x_val is not None)

    def loss_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        np.copyto(theta, x)
        return problem.full_loss_grad() + problem.penalty(), problem.grad

    def callback(x: np.ndarray, loss: float) -> None:
        np.copyto(theta, x)
        val = problem.val_loss()
        history.add(loss, val)
        best.update(val, theta)

    result = minimize_lbfgs(
        loss_and_grad, theta.copy(), maxiter=s.maxiter, maxcor=s.maxcor, gtol=s.gtol,
        ftol=s.ftol, callback=callback, deadline=s.deadline,
    )
    np.copyto(theta, result.x)
    if result.nit == 0:
        history.add(float(result.fun), problem.val_loss())
    _check_finite(float(result.fun), f"L-BFGS iteration {result.nit}")
    return f"{result.nit} iterations, {result.message}" + best.restore(theta)


class _Monitor:
    """The tol / n_iter_no_change rule on the monitored loss."""

    def __init__(self, settings: AdamSettings, use_validation: bool) -> None:
        self.tol, self.patience = settings.tol, settings.n_iter_no_change
        self.use_validation, self.stale, self.best = use_validation, 0, math.inf

    def update(self, loss: float, val: float | None) -> bool:
        """Record one epoch; True once the loss has not improved by a relative ``tol`` for more
        than ``n_iter_no_change`` epochs."""
        value = val if self.use_validation else loss
        improved = self.best == math.inf or value < self.best - self.tol * abs(self.best)
        self.stale = 0 if improved else self.stale + 1
        self.best = min(self.best, value)
        return self.stale > self.patience


class _BestIterate:
    """Keeps the parameters with the lowest validation loss, when asked to."""

    def __init__(self, active: bool) -> None:
        self.active, self.best, self.theta = active, math.inf, None

    def update(self, val: float | None, theta: np.ndarray) -> None:
        if self.active and val is not None and val < self.best:
            self.best, self.theta = val, theta.copy()

    def restore(self, theta: np.ndarray) -> str:
        if self.theta is None:
            return ""
        theta[...] = self.theta
        return f"; restored the parameters of the best validation loss {self.best:.4g}"


def _check_finite(loss: float, where: str) -> None:
    if not math.isfinite(loss):
        raise DivergenceError(f"the training loss is {loss} after {where}")
