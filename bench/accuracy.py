"""Accuracy and speed of the default SurrogateMLP against its peers, measured in one run.

    python -m bench.accuracy [--cases borehole,borehole@0.01,...] [--rows 1000] [--seeds 1]
                             [--sizes 30,100,1000,10000,100000] [--big] [--no-sizes]
                             [--contenders ours,careful,default,kriging]
                             [--ensemble K [--n-jobs N]] [--quick]

Two parts, both in the same run and the same process:

- **Cases**: every case (a test function, ``@level`` adds relative noise ``y (1 + level e)``,
  ``e`` standard normal, to the *training* rows only) is fitted by every contender on the same
  Latin-hypercube training rows and scored on the same 20,000 uniform, noise-free test rows:
  relative RMSE (RMSE / std of y), its ratio to the careful scikit-learn baseline, fit seconds
  and predict microseconds per row. The default cases: noise-free engineering functions with 3
  to 30 inputs (periodic, sparse, wide ones among them) and noisy variants at 1% and 5%.
- **Sizes**: the default estimators on borehole at 30, 100, 1000, 10,000 and 100,000 rows
  (1,000,000 with ``--big``): fit time and error per size, and a log-log plot of error against
  rows (``bench/results/accuracy-sizes.png``).

Contenders: our default ``SurrogateMLP()``; careful scikit-learn (``MLPRegressor((64, 64),
tanh, lbfgs, max_iter=3000)`` on standardized X and y); scikit-learn's ``MLPRegressor()``
defaults (standardized); SMT's ordinary Kriging ``KRG`` when installed, up to 1000 rows (its
cost grows as rows cubed) and 10 inputs, with SMT's default tiny nugget on noise-free cases and
``eval_noise=True`` (the noise variance estimated with the other hyper-parameters, from four
optimiser starts) on noisy ones.
Tables go to ``bench/results/accuracy.md``. A contender that fails is a row with its reason.
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

from training.functions import FUNCTIONS

RESULTS = Path(__file__).parent / "results" / "accuracy.md"
DEFAULT_CASES = (
    "borehole,otl_circuit,piston,wing_weight,ishigami,friedman,periodic8,welch,sparse30,"
    "borehole@0.01,borehole@0.05,piston@0.01,piston@0.05,friedman@0.01,friedman@0.05,"
    "welch@0.01,welch@0.05"
)
QUICK_CASES = "borehole,ishigami,welch,borehole@0.01"
DEFAULT_SIZES = "30,100,1000,10000,100000"
QUICK_SIZES = "30,100,1000"
SIZE_FUNCTION = "borehole"
TEST_ROWS = 20_000
TIMING_ROWS = 5_000
SMT_MAX_ROWS = 1_000
# ... and up to this many inputs: its hyper-parameter search fits one length scale per input,
# and on Welch's 20 inputs (1000 rows, one start) it had not finished after 10 minutes, where
# Friedman's 10 took 3 (smt 2.15).
SMT_MAX_INPUTS = 10
# Optimiser starts of the Kriging contender where it estimates the noise (KrigingRegressor).
NOISY_STARTS = 4
OURS, CAREFUL, DEFAULT, KRIGING = ("SurrogateMLP()", "sklearn MLP (64,64) tanh L-BFGS",
                                   "sklearn MLPRegressor() defaults", "SMT KRG")
CONTENDER_KEYS = {"ours": OURS, "careful": CAREFUL, "default": DEFAULT, "kriging": KRIGING}


@dataclass(frozen=True)
class Case:
    """A test function, and the relative noise on its training outputs."""

    function: str
    noise: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Case:
        name, _, level = text.partition("@")
        if name not in FUNCTIONS:
            raise ValueError(f"unknown function {name!r}; choose from {sorted(FUNCTIONS)}")
        return cls(name, float(level) if level else 0.0)

    @property
    def label(self) -> str:
        fn = FUNCTIONS[self.function]
        noise = f", {100 * self.noise:g}% noise" if self.noise else ""
        return f"{self.function} ({fn.n_inputs} inputs{noise})"

    def training(self, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        fn = FUNCTIONS[self.function]
        X = fn.sample(rows, method="lhs", seed=seed)
        y = targets(fn, X)
        if self.noise:
            e = np.random.default_rng(1_000 + seed).standard_normal(y.shape)
            y = y * (1.0 + self.noise * e)
        return X, y

    def test(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        fn = FUNCTIONS[self.function]
        X = fn.sample(TEST_ROWS, method="uniform", seed=10_000 + seed)
        return X, targets(fn, X)


@dataclass(frozen=True)
class Contender:
    """A named way to build an unfitted estimator for (case, seed); ``skip`` may veto a case
    at a row count (its reason is the row's note)."""

    label: str
    build: Callable[[Case, int], object]
    skip: Callable[[Case, int], str | None] = lambda case, rows: None


@dataclass(frozen=True)
class Result:
    label: str
    rel_rmse: float = float("nan")
    fit_seconds: float = float("nan")
    predict_us: float = float("nan")
    note: str = ""


def surrogate(case: Case, seed: int):
    from training.estimator import SurrogateMLP

    return SurrogateMLP(random_state=seed)


def ensemble(members: int, n_jobs: int) -> Callable[[Case, int], object]:
    """A ``SurrogateEnsemble`` of ``members`` default ``SurrogateMLP`` members, seeded."""

    def build(case: Case, seed: int):
        from training.ensemble import SurrogateEnsemble
        from training.estimator import SurrogateMLP

        return SurrogateEnsemble(SurrogateMLP(), n_members=members, random_state=seed,
                                 n_jobs=n_jobs)

    return build


def scaled_mlp(**params) -> Callable[[Case, int], object]:
    """scikit-learn's MLPRegressor on standardised inputs and targets, as careful users run it."""

    def build(case: Case, seed: int):
        return TransformedTargetRegressor(
            regressor=make_pipeline(StandardScaler(), MLPRegressor(random_state=seed, **params)),
            transformer=StandardScaler(),
        )

    return build


class KrigingRegressor:
    """SMT's ordinary Kriging (KRG) behind ``fit`` / ``predict``.

    On noise-free tables one optimiser start instead of SMT's ten: on these functions it
    reaches the same accuracy (borehole, 200 rows: 3.3e-3 vs 3.9e-3 relative RMSE) in a fifth
    of the time, which is what makes 1000 rows affordable at all. ``eval_noise`` estimates a
    noise variance (a nugget fitted with the other hyper-parameters) instead of SMT's fixed tiny
    nugget, from :data:`NOISY_STARTS` starts: from one, the estimate fell to about 1e-13 and the
    model interpolated the noise (1000 rows, 1% noise, relative RMSE with one start / four:
    piston 7.5e-2 / 2.2e-2, borehole 4.6e-2 / 6.9e-3, in 17 / 35 s).
    """

    def __init__(self, seed: int, eval_noise: bool = False) -> None:
        self.seed, self.eval_noise = seed, eval_noise

    @property
    def starts(self) -> int:
        return NOISY_STARTS if self.eval_noise else 1

    def fit(self, X: np.ndarray, y: np.ndarray) -> KrigingRegressor:
        from smt.surrogate_models import KRG

        self.model_ = KRG(print_global=False, n_start=self.starts, seed=self.seed,
                          eval_noise=self.eval_noise)
        # SMT prints eigenvalue dumps whenever a trial correlation matrix is not positive definite.
        with contextlib.redirect_stdout(io.StringIO()):
            self.model_.set_training_values(X, y)
            self.model_.train()
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_values(X)


def kriging(case: Case, seed: int) -> KrigingRegressor:
    return KrigingRegressor(seed, eval_noise=bool(case.noise))


def smt_version() -> str:
    try:
        return f"smt {importlib.metadata.version('smt')}"
    except importlib.metadata.PackageNotFoundError:
        return "smt not installed"


def kriging_skip(case: Case, rows: int) -> str | None:
    if rows > SMT_MAX_ROWS:
        return f"skipped: KRG costs O(rows^3); run only up to {SMT_MAX_ROWS} rows"
    if FUNCTIONS[case.function].n_inputs > SMT_MAX_INPUTS:
        return (f"skipped: KRG's search over one length scale per input is run only up to "
                f"{SMT_MAX_INPUTS} inputs")
    if importlib.util.find_spec("smt") is None:
        return "skipped: smt is not installed (pip install smt)"
    return None


def contenders(args: argparse.Namespace) -> list[Contender]:
    """The rows of every table, in order; ``--contenders`` picks a subset."""
    every = {
        OURS: Contender(OURS, surrogate),
        CAREFUL: Contender(CAREFUL, scaled_mlp(hidden_layer_sizes=(64, 64), activation="tanh",
                                               solver="lbfgs", max_iter=3000)),
        DEFAULT: Contender(DEFAULT, scaled_mlp()),
        KRIGING: Contender(KRIGING, kriging, kriging_skip),
    }
    rows = [every[CONTENDER_KEYS[key]] for key in args.contenders]
    if args.ensemble:
        label = f"SurrogateEnsemble({args.ensemble} x SurrogateMLP())"
        rows.insert(1, Contender(label, ensemble(args.ensemble, args.n_jobs)))
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


def targets(fn, X: np.ndarray) -> np.ndarray:
    """1-D y for single-output functions (the usual sklearn shape), 2-D otherwise."""
    Y = fn(X)
    return Y[:, 0] if fn.n_outputs == 1 else Y


def run_one(contender: Contender, case: Case, rows: int, seed: int) -> Result:
    """Fit and score one contender on one case for one seed."""
    reason = contender.skip(case, rows)
    if reason:
        return Result(contender.label, note=reason)
    X, y = case.training(rows, seed)
    X_test, y_test = case.test(seed)
    try:
        model = contender.build(case, seed)
        # BLAS threads make L-BFGS several times slower on small machines; all contenders get one.
        with threadpool_limits(1), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            fit_seconds = _seconds(lambda: model.fit(X, y))
            predicted = model.predict(X_test)
            predict_us = predict_microseconds(model, X_test[:TIMING_ROWS])
    except Exception as exc:  # one broken contender must not sink the others
        return Result(contender.label, note=f"failed: {type(exc).__name__}: {exc}")
    notes = ["not converged"] if any(w.category is ConvergenceWarning for w in caught) else []
    if contender.label == KRIGING:
        nugget = "noise estimated" if model.eval_noise else "default nugget"
        notes.append(f"{nugget}, {model.starts} optimiser start(s)")
    chosen = getattr(model, "best_params_", None)
    if chosen:
        activation = chosen.get("activation")
        notes.append(f"{activation + ', ' if activation else ''}alpha {chosen['alpha']:g} "
                     f"({chosen['path']})")
    scaler = getattr(model, "y_scaler_", None)
    if scaler is not None and scaler.method == "log":
        notes.append("log outputs")
    if hasattr(model, "predict_members"):
        notes.append(member_note(model, X_test, y_test))
    return Result(contender.label, relative_rmse(predicted, y_test), fit_seconds, predict_us,
                  ", ".join(notes))


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


def table(title: str, results: Sequence[Result]) -> str:
    """One Markdown table; ratios are against the careful baseline of the same run."""
    baseline = next((r.rel_rmse for r in results if r.label == CAREFUL), float("nan"))
    lines = [
        f"### {title}",
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


def summary(cases: Sequence[Case], tables: Sequence[Sequence[Result]]) -> str:
    """One row per case: every contender's relative RMSE and ours over careful."""
    labels = [r.label for r in tables[0]]
    lines = ["### Summary: relative RMSE (ratio = ours / careful)", "",
             "| case | " + " | ".join(labels) + " | ratio |",
             "|---|" + "---:|" * (len(labels) + 1)]
    for case, results in zip(cases, tables, strict=True):
        by = {r.label: r.rel_rmse for r in results}
        ratio = by.get(OURS, np.nan) / by.get(CAREFUL, np.nan)
        lines.append(f"| {case.label} | " + " | ".join(_number(by[label], ".3e")
                                                       for label in labels)
                     + f" | {_number(ratio, '.2f')} |")
    return "\n".join(lines) + "\n"


def sizes_table(sizes: Sequence[int], results: dict[int, list[Result]]) -> str:
    labels = [r.label for r in results[sizes[0]]]
    lines = [f"### Table size: {SIZE_FUNCTION}, noise-free", "",
             "| rows | " + " | ".join(f"{label} relRMSE | fit s" for label in labels) + " |",
             "|---:|" + "---:|---:|" * len(labels)]
    for rows in sizes:
        cells = [f"{_number(r.rel_rmse, '.3e')} | {_number(r.fit_seconds, '.1f')}"
                 for r in results[rows]]
        lines.append(f"| {rows} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sizes_png(sizes: Sequence[int], results: dict[int, list[Result]], path: Path) -> None:
    """Relative RMSE against rows, log-log, one line per contender."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for k, label in enumerate(r.label for r in results[sizes[0]]):
        points = [(rows, r.rel_rmse) for rows in sizes for r in results[rows]
                  if r.label == label and np.isfinite(r.rel_rmse)]
        if points:
            ax.loglog(*zip(*points, strict=True), marker="o", color=f"C{k}", label=label)
    ax.set_xlabel("training rows")
    ax.set_ylabel("relative RMSE on 20,000 test rows")
    ax.set_title(f"{SIZE_FUNCTION}: error against table size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)


def header(args: argparse.Namespace) -> str:
    return "\n".join(
        [
            "# Accuracy benchmark",
            "",
            f"`python -m bench.accuracy {' '.join(args.argv)}`, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
            "",
            f"Cases: {args.rows} Latin-hypercube training rows (relative noise on the training "
            f"outputs only where a case says so); test: {TEST_ROWS} uniform noise-free rows; "
            f"relative RMSE = RMSE / std(y), mean over {args.seeds} seed(s); predict timed on "
            f"{TIMING_ROWS} rows; one BLAS thread. Python {platform.python_version()}, "
            f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, {smt_version()}, "
            f"{os.cpu_count()} CPUs ({platform.machine()}).",
            "",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=None,
                        help=f"comma-separated FUNCTION[@NOISE] (default: {DEFAULT_CASES})")
    parser.add_argument("--functions", dest="cases", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=1000, help="training rows of the cases")
    parser.add_argument("--seeds", type=int, default=1, help="seeds to average over")
    parser.add_argument("--sizes", default=None,
                        help=f"row counts of the size sweep (default: {DEFAULT_SIZES})")
    parser.add_argument("--big", action="store_true", help="add 1,000,000 rows to the sweep")
    parser.add_argument("--no-sizes", action="store_true", help="skip the size sweep")
    parser.add_argument("--no-cases", action="store_true", help="skip the cases")
    parser.add_argument("--quick", action="store_true",
                        help=f"cases {QUICK_CASES} and sizes {QUICK_SIZES}")
    parser.add_argument("--contenders", default="ours,careful,default,kriging",
                        help="subset of ours,careful,default,kriging")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Markdown report path")
    parser.add_argument("--ensemble", type=int, default=0, metavar="K",
                        help="add a SurrogateEnsemble of K members (K >= 2)")
    parser.add_argument("--n-jobs", type=int, default=-1,
                        help="ensemble members fitted at a time (-1: one per core)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.ensemble == 1 or args.ensemble < 0:
        parser.error(f"--ensemble needs at least 2 members, got {args.ensemble}")
    cases = args.cases or (QUICK_CASES if args.quick else DEFAULT_CASES)
    try:
        args.cases = [Case.parse(item.strip()) for item in cases.split(",") if item.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    args.sizes = [int(s) for s in sizes.split(",") if s.strip()] + ([1_000_000] if args.big
                                                                    else [])
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(args.contenders) - set(CONTENDER_KEYS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; choose from {sorted(CONTENDER_KEYS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sections = [header(args)]
    print(sections[0], flush=True)
    runners = contenders(args)
    if not args.no_cases:
        tables = []
        for case in args.cases:
            results = []
            for contender in runners:
                print(f"  {case.label}: {contender.label} ...", file=sys.stderr, flush=True)
                runs = [run_one(contender, case, args.rows, s) for s in range(args.seeds)]
                results.append(combine(runs))
            tables.append(results)
            sections.append(table(case.label, results))
            print(sections[-1], flush=True)
        sections.insert(1, summary(args.cases, tables))
        print(sections[1], flush=True)
    if not args.no_sizes:
        case, by_size = Case(SIZE_FUNCTION), {}
        for rows in args.sizes:
            by_size[rows] = []
            for contender in runners:
                print(f"  {SIZE_FUNCTION} {rows} rows: {contender.label} ...", file=sys.stderr,
                      flush=True)
                by_size[rows].append(combine([run_one(contender, case, rows, s)
                                              for s in range(args.seeds)]))
            print(sizes_table(args.sizes[: len(by_size)], by_size), flush=True)
        sections.append(sizes_table(args.sizes, by_size))
        png = args.out.with_name(args.out.stem + "-sizes.png")
        png.parent.mkdir(parents=True, exist_ok=True)
        sizes_png(args.sizes, by_size, png)
        sections.append(f"![error against rows]({png.name})\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(sections), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
