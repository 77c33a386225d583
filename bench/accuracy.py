"""Accuracy and speed of the default SurrogateMLP against its peers, measured in one run.

    python -m bench.accuracy [--rows 1000] [--functions borehole,otl_circuit,...] [--seeds 1]
                             [--ensemble K [--n-jobs N]] [--lbfgs-maxiter N]

Per test function, every contender is fitted on the same Latin-hypercube training rows and scored
on the same 20,000 uniform test rows: relative RMSE (RMSE / std of y), its ratio to the careful
scikit-learn baseline, fit seconds and predict microseconds per row. With ``--ensemble K`` a
``SurrogateEnsemble`` of K default members (seeds s .. s+K-1, so member 0 is the
``SurrogateMLP()`` row's model) joins, its note giving the members' own relative RMSE (mean and
best) next to the ensemble mean's. ``--lbfgs-maxiter`` caps the L-BFGS polish of every
``SurrogateMLP`` (row and members) to shorten a run. The table is printed and
written to ``bench/results/accuracy.md``. The estimator is imported only when its row runs, so a
missing or broken contender fails its own row and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import io
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sklearn
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from training.functions import FUNCTIONS, TestFunction

RESULTS = Path(__file__).parent / "results" / "accuracy.md"
DEFAULT_FUNCTIONS = "borehole,otl_circuit,piston,wing_weight"
TEST_ROWS = 20_000
TIMING_ROWS = 5_000
SMT_MAX_ROWS = 1_000
CAREFUL = "sklearn MLP (64,64) tanh L-BFGS"


@dataclass(frozen=True)
class Contender:
    """A named way to build an unfitted estimator for a seed; ``skip`` may veto a row count."""

    label: str
    build: Callable[[int], object]
    skip: Callable[[int], str | None] = lambda rows: None


@dataclass(frozen=True)
class Result:
    label: str
    rel_rmse: float = float("nan")
    fit_seconds: float = float("nan")
    predict_us: float = float("nan")
    note: str = ""


def surrogate(lbfgs_maxiter="auto") -> Callable[[int], object]:
    """``SurrogateMLP()`` with its defaults (bar ``lbfgs_maxiter``), seeded."""

    def build(seed: int):
        from training.estimator import SurrogateMLP

        return SurrogateMLP(lbfgs_maxiter=lbfgs_maxiter, random_state=seed)

    return build


def ensemble(members: int, n_jobs: int, lbfgs_maxiter="auto") -> Callable[[int], object]:
    """A ``SurrogateEnsemble`` of ``members`` default ``SurrogateMLP`` members, seeded."""

    def build(seed: int):
        from training.ensemble import SurrogateEnsemble
        from training.estimator import SurrogateMLP

        member = SurrogateMLP(lbfgs_maxiter=lbfgs_maxiter)
        return SurrogateEnsemble(member, n_members=members, random_state=seed, n_jobs=n_jobs)

    return build


def scaled_mlp(**params) -> Callable[[int], object]:
    """scikit-learn's MLPRegressor on standardised inputs and targets, as careful users run it."""

    def build(seed: int):
        return TransformedTargetRegressor(
            regressor=make_pipeline(StandardScaler(), MLPRegressor(random_state=seed, **params)),
            transformer=StandardScaler(),
        )

    return build


class KrigingRegressor:
    """SMT's ordinary Kriging (KRG) behind ``fit`` / ``predict``.

    One optimiser start instead of SMT's ten: on these functions it reaches the same accuracy
    (borehole, 200 rows: 3.3e-3 vs 3.9e-3 relative RMSE) in a fifth of the time, which is what
    makes 1000 rows affordable at all.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> KrigingRegressor:
        from smt.surrogate_models import KRG

        self.model_ = KRG(print_global=False, n_start=1, seed=self.seed)
        # SMT prints eigenvalue dumps whenever a trial correlation matrix is not positive definite.
        with contextlib.redirect_stdout(io.StringIO()):
            self.model_.set_training_values(X, y)
            self.model_.train()
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_values(X)


def smt_version() -> str:
    try:
        return f"smt {importlib.metadata.version('smt')}"
    except importlib.metadata.PackageNotFoundError:
        return "smt not installed"


def kriging_skip(rows: int) -> str | None:
    if importlib.util.find_spec("smt") is None:
        return "skipped: smt is not installed (pip install smt)"
    if rows > SMT_MAX_ROWS:
        return f"skipped: KRG costs O(rows^3); run only with --rows <= {SMT_MAX_ROWS}"
    return None


def contenders(args: argparse.Namespace) -> list[Contender]:
    """The rows of every table, the ensemble's when ``--ensemble`` asks for it."""
    rows = [
        Contender("SurrogateMLP()", surrogate(args.lbfgs_maxiter)),
        Contender(
            CAREFUL,
            scaled_mlp(
                hidden_layer_sizes=(64, 64), activation="tanh", solver="lbfgs", max_iter=3000
            ),
        ),
        Contender("sklearn MLPRegressor() defaults", scaled_mlp()),
        Contender("SMT KRG (1 start)", KrigingRegressor, kriging_skip),
    ]
    if args.ensemble:
        label = f"SurrogateEnsemble({args.ensemble} x SurrogateMLP())"
        rows.insert(1, Contender(label, ensemble(args.ensemble, args.n_jobs, args.lbfgs_maxiter)))
    return rows


def relative_rmse(predicted: np.ndarray, y: np.ndarray) -> float:
    """RMSE over std of y per output column, averaged over the columns."""
    predicted = np.asarray(predicted, dtype=np.float64).reshape(y.shape)
    err = np.sqrt(np.mean((predicted - y) ** 2, axis=0)) / np.std(y, axis=0)
    return float(np.mean(err))


def predict_microseconds(model, X: np.ndarray, repeats: int = 3) -> float:
    """Best of ``repeats`` timed calls after a warm-up, in microseconds per row."""
    model.predict(X[:10])
    best = min(_seconds(lambda: model.predict(X)) for _ in range(repeats))
    return best / len(X) * 1e6


def _seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def targets(fn: TestFunction, X: np.ndarray) -> np.ndarray:
    """1-D y for single-output functions (the usual sklearn shape), 2-D otherwise."""
    Y = fn(X)
    return Y[:, 0] if fn.n_outputs == 1 else Y


def run_one(contender: Contender, fn: TestFunction, rows: int, seed: int) -> Result:
    """Fit and score one contender on one function for one seed."""
    reason = contender.skip(rows)
    if reason:
        return Result(contender.label, note=reason)
    X = fn.sample(rows, method="lhs", seed=seed)
    X_test = fn.sample(TEST_ROWS, method="uniform", seed=10_000 + seed)
    try:
        model = contender.build(seed)
        # BLAS threads make L-BFGS several times slower on small machines; all contenders get one.
        with threadpool_limits(1), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            fit_seconds = _seconds(lambda: model.fit(X, targets(fn, X)))
            predicted = model.predict(X_test)
            predict_us = predict_microseconds(model, X_test[:TIMING_ROWS])
    except Exception as exc:  # one broken contender must not sink the others
        return Result(contender.label, note=f"failed: {type(exc).__name__}: {exc}")
    notes = ["not converged"] if any(w.category is ConvergenceWarning for w in caught) else []
    score = relative_rmse(predicted, targets(fn, X_test))
    if hasattr(model, "predict_members"):
        notes.append(member_note(model, X_test, targets(fn, X_test)))
    return Result(contender.label, score, fit_seconds, predict_us, ", ".join(notes))


def member_note(model, X: np.ndarray, y: np.ndarray) -> str:
    """The relative RMSE of an ensemble's members on their own: mean and best."""
    scores = [relative_rmse(predicted, y) for predicted in model.predict_members(X)]
    return f"members alone: mean {np.mean(scores):.3e}, best {min(scores):.3e}"


def combine(results: Sequence[Result]) -> Result:
    """Mean over seeds; notes are kept once each, in order."""
    notes = ", ".join(dict.fromkeys(r.note for r in results if r.note))
    return Result(
        results[0].label,
        float(np.mean([r.rel_rmse for r in results])),
        float(np.mean([r.fit_seconds for r in results])),
        float(np.mean([r.predict_us for r in results])),
        notes,
    )


def _number(value: float, spec: str) -> str:
    return "-" if np.isnan(value) else format(value, spec)


def table(fn: TestFunction, results: Sequence[Result]) -> str:
    """One Markdown table; ratios are against the careful baseline of the same run."""
    baseline = next((r.rel_rmse for r in results if r.label == CAREFUL), float("nan"))
    lines = [
        f"### {fn.name} ({fn.n_inputs} inputs)",
        "",
        "| model | relative RMSE | ratio to careful | fit s | predict us/row | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        cells = (
            r.label,
            _number(r.rel_rmse, ".3e"),
            _number(r.rel_rmse / baseline, ".2f"),
            _number(r.fit_seconds, ".2f"),
            _number(r.predict_us, ".2f"),
            r.note,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def header(args: argparse.Namespace) -> str:
    return "\n".join(
        [
            "# Accuracy benchmark",
            "",
            f"`python -m bench.accuracy {' '.join(args.argv)}`, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
            "",
            f"Training: {args.rows} Latin-hypercube rows; test: {TEST_ROWS} uniform rows; "
            f"relative RMSE = RMSE / std(y), mean over {args.seeds} seed(s); predict timed on "
            f"{TIMING_ROWS} rows; one BLAS thread. Python {platform.python_version()}, "
            f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, {smt_version()}, "
            f"{os.cpu_count()} CPUs ({platform.machine()}).",
            "",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__)
    parser.add_argument("--rows", type=int, default=1000, help="training rows (LHS)")
    parser.add_argument("--functions", default=DEFAULT_FUNCTIONS, help="comma-separated names")
    parser.add_argument("--seeds", type=int, default=1, help="seeds to average over")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Markdown report path")
    parser.add_argument("--ensemble", type=int, default=0, metavar="K",
                        help="add a SurrogateEnsemble of K members (K >= 2)")
    parser.add_argument("--n-jobs", type=int, default=-1,
                        help="ensemble members fitted at a time (-1: one per core)")
    parser.add_argument("--lbfgs-maxiter", type=_iterations, default="auto",
                        help="cap on SurrogateMLP's L-BFGS iterations (default: auto)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.ensemble == 1 or args.ensemble < 0:
        parser.error(f"--ensemble needs at least 2 members, got {args.ensemble}")
    unknown = set(args.functions.split(",")) - set(FUNCTIONS)
    if unknown:
        parser.error(f"unknown functions {sorted(unknown)}; choose from {sorted(FUNCTIONS)}")
    return args


def _iterations(text: str):
    if text == "auto":
        return text
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sections = [header(args)]
    print(sections[0])
    for name in args.functions.split(","):
        fn = FUNCTIONS[name]
        results = []
        for contender in contenders(args):
            print(f"  {name}: {contender.label} ...", file=sys.stderr, flush=True)
            runs = [run_one(contender, fn, args.rows, seed) for seed in range(args.seeds)]
            results.append(combine(runs))
        sections.append(table(fn, results))
        print(sections[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(sections), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
