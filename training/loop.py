"""``surrogate loop``: design the first simulations, run them, train an ensemble, ask it where it
is least sure, simulate there, retrain, until the simulation budget is spent or the
cross-validated error reaches a target; unattended, and resumable at any point.

The simulator is any command. For each chunk of rows it gets a CSV of input rows (its path in
``$SURROGATE_INPUT`` and as the command's last argument) and writes the same rows with output
columns added to ``$SURROGATE_OUTPUT`` (CSV). A row is finished when the output holds it with
every output finite; any other row (the command failed, the row is missing, an output is NaN)
is a failed row, listed with its reason. Chunks run ``n_jobs`` at a time in threads of this
process (the simulator is a process of its own) or as tasks on a Dask cluster.

Everything lives in the loop directory, each file replaced whole (never half written):

``loop.json``
    the settings and, per round, the rows it trained on, the model version and its
    cross-validated error;
``table.csv``, ``failed.csv``, ``pending.csv``
    the finished rows (inputs and outputs), the failed rows (inputs and ``reason``), and the
    rows planned but not yet simulated;
``round-<k>.csv``, ``report.md``, ``error.png``
    each round's table, and the report with the error against the number of simulations.

Saving follows every chunk, so an interruption (Ctrl-C, a killed process) loses at most the
chunks under way; resuming simulates what is still pending, trains a round whose training did
not finish, and carries on to the same budget. Failed rows count against the budget (they were
simulations) and are not suggested again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.atomic import replace_whole
from training.design import Factor, design
from training.errors import TrainingError
from training.signals import sigint_held

__all__ = ["ChunkResult", "Loop", "LoopError", "LoopSettings", "simulate_chunk"]

LOOP_FILE, TABLE_FILE, FAILED_FILE, PENDING_FILE = (
    "loop.json", "table.csv", "failed.csv", "pending.csv")
REPORT_FILE, PLOT_FILE = "report.md", "error.png"
FORMAT = 1
# Fewest finished rows a round trains on.
MIN_ROWS = 4


class LoopError(TrainingError):
    """The loop cannot go on; the message says why in one line."""


@dataclass
class LoopSettings:
    """What ``surrogate loop`` was started with (kept in ``loop.json``)."""

    name: str
    repo: str
    simulator: str
    factors: list[dict]  # Factor fields
    initial: int
    batch: int
    budget: int
    outputs: list[str] | None = None  # None: the simulator's columns that are not inputs
    target: float | None = None  # largest cross-validated relative RMSE over the outputs
    ensemble: int = 5
    params: dict = field(default_factory=dict)  # SurrogateMLP keyword arguments
    seed: int = 0
    n_jobs: int = 1
    scheduler: str | None = None
    chunk: int = 10
    timeout: float | None = None  # seconds per simulator call

    def factor_list(self) -> list[Factor]:
        return [Factor(**spec) for spec in self.factors]

    @property
    def inputs(self) -> list[str]:
        return [spec["name"] for spec in self.factors]


@dataclass
class ChunkResult:
    """One simulator call: the finished rows, their outputs, the failed rows and why."""

    x: np.ndarray
    y: np.ndarray
    outputs: list[str]
    failed_x: np.ndarray
    reasons: list[str]


# The simulator processes under way in this process, so an interruption can stop them.
_RUNNING: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()


def simulate_chunk(command: str, inputs: Sequence[str], rows: np.ndarray,
                   outputs: Sequence[str] | None, timeout: float | None = None) -> ChunkResult:
    """Run the simulator on ``rows``; never raises for a failing simulator."""
    with tempfile.TemporaryDirectory(prefix="surrogate-sim-") as work:
        source, target = Path(work) / "input.csv", Path(work) / "output.csv"
        source.write_text(_csv_text(list(inputs), rows), encoding="utf-8")
        env = {**os.environ, "SURROGATE_INPUT": str(source), "SURROGATE_OUTPUT": str(target)}
        status, message = _run(shlex.split(command) + [str(source)], env, timeout)
        if target.exists():
            header, table = _read_csv(target)
        else:
            header, table = [], []
    return _match(list(inputs), rows, outputs, header, table, status, message)


def _run(argv: list[str], env: dict, timeout: float | None) -> tuple[int | None, str]:
    """The exit status (None: it could not start or timed out) and the last line of stderr."""
    try:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
    except OSError as exc:
        return None, f"cannot run the simulator {argv[0]!r}: {exc.strerror or exc}"
    with _RUNNING_LOCK:
        _RUNNING.add(process)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return None, f"the simulator took longer than {timeout:g} s"
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(process)
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    return process.returncode, lines[-1][:200] if lines else ""


def stop_simulators() -> None:
    """Terminate the simulator processes this process started and that still run."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for process in running:
        process.terminate()


def _match(inputs, rows, outputs, header, table, status, message) -> ChunkResult:
    """Each input row's outputs, from the output table's row with the same inputs (or the same
    position, when the simulator does not repeat its inputs and keeps every row)."""
    why_all = ""
    if status != 0:
        why_all = (f"simulator exited with status {status}" if status is not None
                   else "simulator did not finish") + (f": {message}" if message else "")
    if outputs is None:
        outputs = [name for name in header if name not in inputs]
    columns = {name: index for index, name in enumerate(header)}
    missing = [name for name in outputs if name not in columns]
    found: list[list[float] | None] = [None] * len(rows)
    if not missing and outputs:
        values = np.array([[_number(r, columns[name]) for name in outputs] for r in table]
                          ).reshape(len(table), len(outputs))  # fmt: skip
        if all(name in columns for name in inputs):
            echoed = np.array([[_number(r, columns[name]) for name in inputs] for r in table]
                              ).reshape(len(table), len(inputs))  # fmt: skip
            used = np.zeros(len(table), dtype=bool)
            for i, row in enumerate(rows):
                same = np.flatnonzero(~used & np.isclose(echoed, row, rtol=1e-9, atol=0.0
                                                         ).all(axis=1))  # fmt: skip
                if same.size:
                    used[same[0]] = True
                    found[i] = list(values[same[0]])
        elif len(table) == len(rows):
            found = [list(v) for v in values]
    done_x, done_y, failed_x, reasons = [], [], [], []
    for row, result in zip(rows, found, strict=True):
        if result is not None and all(math.isfinite(v) for v in result):
            done_x.append(row)
            done_y.append(result)
            continue
        failed_x.append(row)
        if not header:
            reason = "the simulator wrote no output"
        elif missing or not outputs:
            reason = (f"the simulator's output has no column {', '.join(missing)}" if missing
                      else "the simulator's output has no column besides the inputs")
        elif result is None:
            reason = "row missing from the simulator's output"
        else:
            bad = [name for name, v in zip(outputs, result, strict=True) if not math.isfinite(v)]
            reason = f"output {', '.join(bad)} is not a finite number"
        reasons.append(f"{reason} ({why_all})" if why_all else reason)
    n_in, n_out = len(inputs), len(outputs)
    return ChunkResult(np.array(done_x, dtype=float).reshape(len(done_x), n_in),
                       np.array(done_y, dtype=float).reshape(len(done_y), n_out), list(outputs),
                       np.array(failed_x, dtype=float).reshape(len(failed_x), n_in), reasons)


def _number(row: list[str], index: int) -> float:
    try:
        return float(row[index])
    except (IndexError, ValueError):
        return math.nan


def _csv_text(header: list[str], rows, extra: list[str] | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header + (["reason"] if extra is not None else []))
    for index, row in enumerate(rows):
        writer.writerow([repr(float(v)) for v in row] + ([extra[index]] if extra is not None
                                                          else []))  # fmt: skip
    return buffer.getvalue()


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = [row for row in csv.reader(file) if row]
    except (OSError, UnicodeDecodeError, csv.Error):
        return [], []
    return ([name.strip() for name in rows[0]], rows[1:]) if rows else ([], [])


def _key(row: np.ndarray) -> tuple:
    return tuple(float(v) for v in row)


class Loop:
    """The state of one loop directory; :meth:`run` carries it on."""

    def __init__(self, directory: Path, settings: LoopSettings, rounds: list[dict],
                 outputs: list[str] | None) -> None:  # fmt: skip
        self.directory = directory
        self.settings = settings
        self.rounds = rounds
        self.outputs = outputs
        self.status = "running"
        n_in = len(settings.factors)
        self.x = np.empty((0, n_in))
        self.y = np.empty((0, len(outputs or [])))
        self.failed_x, self.reasons = np.empty((0, n_in)), []
        self.pending = np.empty((0, n_in))
        self._model = None  # the last round's ensemble, once trained in this process

    # -- the directory -----------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str | os.PathLike, settings: LoopSettings) -> Loop:
        directory = Path(directory)
        if (directory / LOOP_FILE).exists():
            raise LoopError(f"{directory} already holds a loop: carry it on with "
                            f"`surrogate loop --resume {directory}`, or choose another --dir")
        if settings.initial < 2 or settings.budget < settings.initial:
            raise LoopError(f"--initial must be at least 2 and at most --budget "
                            f"(got {settings.initial} and {settings.budget})")
        loop = cls(directory, settings, [], settings.outputs)
        loop.save()
        return loop

    @classmethod
    def resume(cls, directory: str | os.PathLike) -> Loop:
        directory = Path(directory)
        try:
            state = json.loads((directory / LOOP_FILE).read_text(encoding="utf-8"))
            settings = LoopSettings(**state["settings"])
        except FileNotFoundError:
            raise LoopError(f"{directory} holds no loop ({LOOP_FILE} is missing)") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise LoopError(f"{directory / LOOP_FILE} is not a loop's state: {exc}") from None
        loop = cls(directory, settings, state.get("rounds", []), state.get("outputs"))
        n_in, inputs = len(settings.factors), settings.inputs
        outputs = loop.outputs or []
        loop.x, loop.y = loop._read_table(TABLE_FILE, inputs + outputs, n_in)
        loop.failed_x, reasons = loop._read_table(FAILED_FILE, inputs, n_in, reasons=True)
        loop.reasons = reasons
        loop.pending, _ = loop._read_table(PENDING_FILE, inputs, n_in)
        done = {_key(r) for r in np.vstack([loop.x, loop.failed_x])}
        loop.pending = loop.pending[[_key(r) not in done for r in loop.pending]].reshape(-1, n_in)
        return loop

    def _read_table(self, file: str, header: list[str], n_in: int, reasons: bool = False):
        columns, rows = _read_csv(self.directory / file)
        expected = header + (["reason"] if reasons else [])
        if not rows and not columns:
            empty = np.empty((0, n_in))
            return (empty, []) if reasons else (empty, np.empty((0, len(header) - n_in)))
        if columns != expected:
            raise LoopError(f"{self.directory / file}: columns {columns}, expected {expected}")
        values = np.array([[float(v) for v in row[:len(header)]] for row in rows]
                          ).reshape(len(rows), len(header))  # fmt: skip
        if reasons:
            return values, [row[len(header)] if len(row) > len(header) else "" for row in rows]
        return values[:, :n_in], values[:, n_in:]

    def save(self) -> None:
        """Every file of the state, each replaced whole; the tables before ``loop.json``.

        A Ctrl-C meanwhile waits until all are written: between the table and the pending list
        it would leave the rows just kept in both."""
        with sigint_held():
            self._write_state()

    def _write_state(self) -> None:
        inputs = self.settings.inputs
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.outputs is not None:
            self._write(TABLE_FILE, _csv_text(inputs + self.outputs, np.hstack([self.x, self.y])))
        self._write(FAILED_FILE, _csv_text(inputs, self.failed_x, self.reasons))
        self._write(PENDING_FILE, _csv_text(inputs, self.pending))
        state = {"format": FORMAT, "settings": asdict(self.settings), "outputs": self.outputs,
                 "status": self.status, "rounds": self.rounds}
        self._write(LOOP_FILE, json.dumps(state, indent=2) + "\n")

    def _write(self, file: str, text: str) -> None:
        replace_whole(self.directory / file, text.encode("utf-8"))

    # -- the loop ----------------------------------------------------------------------------

    @property
    def spent(self) -> int:
        """Simulations done: finished and failed rows."""
        return len(self.x) + len(self.failed_x)

    def run(self, say: Callable[[str], None] = print) -> str:
        """Carry the loop on until the budget is spent or the target reached; the reason.

        KeyboardInterrupt stops the simulators under way and leaves the directory resumable.
        A second loop on the same directory meanwhile is refused (LoopError).
        """
        with _exclusive(self.directory):
            return self._run(say)

    def _run(self, say: Callable[[str], None]) -> str:
        settings = self.settings
        if not self.rounds and not len(self.pending) and not self.spent:
            n = min(settings.initial, settings.budget)
            self.pending = design(settings.factor_list(), n, "lhs", settings.seed)
            self.save()
            say(f"round 0: an optimised LHS design of {n} rows")
        while True:
            if len(self.pending):
                self._simulate(say)
            if not self.rounds or self.rounds[-1]["rows"] != len(self.x):
                self._train(say)
            reason = self._finished()
            if reason:
                self.status = f"done: {reason}"
                self.save()
                self.write_report()
                return reason
            self._plan(say)

    def _finished(self) -> str:
        settings, last = self.settings, self.rounds[-1]
        if settings.target is not None and last["error"] <= settings.target:
            return (f"cross-validated error {last['error']:.3g} reached the target "
                    f"{settings.target:g}")
        if self.spent >= settings.budget:
            return f"the budget of {settings.budget} simulations is spent"
        return ""

    def _simulate(self, say: Callable[[str], None]) -> None:
        import joblib

        settings, inputs = self.settings, self.settings.inputs
        pending = self.pending
        chunks = [pending[i:i + settings.chunk] for i in range(0, len(pending), settings.chunk)]
        where = (f"on the Dask cluster at {settings.scheduler}" if settings.scheduler
                 else f"{settings.n_jobs} at a time")
        say(f"simulating {len(pending)} rows in {len(chunks)} calls ({where})")
        started, failed_before = time.perf_counter(), len(self.failed_x)
        with ExitStack() as stack:
            if settings.scheduler:
                from distributed import Client

                stack.enter_context(Client(settings.scheduler))
                stack.enter_context(joblib.parallel_backend("dask"))
            parallel = joblib.Parallel(
                n_jobs=-1 if settings.scheduler else settings.n_jobs, batch_size=1,
                backend=None if settings.scheduler else "threading",
                return_as="generator_unordered")  # fmt: skip
            results = parallel(
                joblib.delayed(_tagged)(index, settings.simulator, inputs, chunk, self.outputs,
                                        settings.timeout)
                for index, chunk in enumerate(chunks))  # fmt: skip
            remaining = set(range(len(chunks)))
            try:
                for index, result in results:
                    remaining.discard(index)
                    self._keep(result, np.vstack([chunks[i] for i in sorted(remaining)])
                               if remaining else pending[:0])  # fmt: skip
            except BaseException:
                stop_simulators()
                results.close()
                raise
        failed = len(self.failed_x) - failed_before
        say(f"simulated {len(pending)} rows in {time.perf_counter() - started:.1f} s"
            + (f": {failed} failed (see {FAILED_FILE})" if failed else ""))

    def _keep(self, result: ChunkResult, still_pending: np.ndarray) -> None:
        """Add one call's rows to the tables and save (the outputs named on the first); a
        Ctrl-C waits until memory and files agree."""
        with sigint_held():
            self._add(result, still_pending)
            self.save()

    def _add(self, result: ChunkResult, still_pending: np.ndarray) -> None:
        if self.outputs is None and len(result.x):
            if not result.outputs:
                raise LoopError("the simulator wrote no output column (every column of its "
                                "output is an input); name them with --outputs")
            self.outputs = result.outputs
            self.y = np.empty((0, len(self.outputs)))
        if len(result.x):
            order = [result.outputs.index(name) for name in self.outputs]
            self.x = np.vstack([self.x, result.x])
            self.y = np.vstack([self.y, result.y[:, order]])
        self.failed_x = np.vstack([self.failed_x, result.failed_x])
        self.reasons = [*self.reasons, *result.reasons]
        self.pending = still_pending

    def _train(self, say: Callable[[str], None]) -> None:
        from training.data import Dataset
        from training.pipeline import TrainJob, train_and_export

        settings, index = self.settings, len(self.rounds)
        if len(self.x) < MIN_ROWS:
            raise LoopError(f"only {len(self.x)} simulations succeeded, too few to train on (at "
                            f"least {MIN_ROWS}); the reasons are in {self.directory / FAILED_FILE}")
        table = _csv_text(self.settings.inputs + self.outputs, np.hstack([self.x, self.y]))
        self._write(f"round-{index}.csv", table)
        digest = hashlib.sha256(table.encode()).hexdigest()
        data = Dataset(self.x, self.y, tuple(settings.inputs), tuple(self.outputs),
                       source=f"{self.directory / f'round-{index}.csv'}", sha256=digest)
        units = {f.name: f.unit for f in settings.factor_list() if f.unit}
        job = TrainJob(name=settings.name, repo=Path(settings.repo), params=settings.params,
                       units=units, seed=settings.seed + index, ensemble=settings.ensemble,
                       n_jobs=settings.n_jobs,
                       description=f"surrogate loop round {index} on {len(self.x)} rows",
                       extra_training_info={"loop": {"directory": str(self.directory),
                                                     "round": index}})  # fmt: skip
        say(f"round {index}: training an ensemble of {settings.ensemble} on {len(self.x)} rows")
        result = train_and_export(data, job)
        errors = {name: float(m["relative_rmse"])
                  for name, m in result.metrics["per_output"].items()}
        self.rounds.append({
            "round": index, "rows": len(self.x), "failed": len(self.failed_x),
            "simulations": self.spent, "version": int(result.bundle.name),
            "relative_rmse": errors, "error": max(errors.values()),
            "error_source": result.metrics.get("source", ""),
            "fit_seconds": round(result.fit_seconds, 2),
        })  # fmt: skip
        self._model = result.model
        self.save()
        self.write_report()
        say(f"round {index}: {settings.name} version {result.bundle.name}, cross-validated "
            "relative RMSE " + ", ".join(f"{k} {v:.3g}" for k, v in errors.items()))

    def _plan(self, say: Callable[[str], None]) -> None:
        from training.suggest import suggest

        settings = self.settings
        k = min(settings.batch, settings.budget - self.spent)
        chosen = suggest(settings.factor_list(), self._predictor(), k,
                         np.vstack([self.x, self.failed_x]), seed=settings.seed + len(self.rounds))
        self.pending = chosen.x
        self.save()
        say(f"round {len(self.rounds)}: {k} rows suggested where the ensemble is least sure "
            f"(normalised spread {chosen.score.max():.3g} .. {chosen.score.min():.3g})")

    def _predictor(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``x -> (mean, std)``, 2-D, of the last round's ensemble: the one in memory, or the
        bundle it was published as (after a resume)."""
        if self._model is not None:
            model = self._model
            return lambda x: tuple(a.reshape(len(x), -1) for a in model.predict(x, True))
        import onnx

        from service.bundle_format import MODEL_FILE, OUTPUT_TENSOR, STD_TENSOR
        from training.parity import run_onnx

        path = Path(self.settings.repo) / self.settings.name / str(self.rounds[-1]["version"])
        graph = onnx.load(path / MODEL_FILE)

        def predict(x):
            result = run_onnx(graph, x, [OUTPUT_TENSOR, STD_TENSOR])
            return (result[OUTPUT_TENSOR].astype(np.float64),
                    result[STD_TENSOR].astype(np.float64))

        return predict

    # -- the report --------------------------------------------------------------------------

    def write_report(self) -> None:
        from training.report import figure_png

        settings = self.settings
        outputs = self.outputs or []
        lines = [
            f"# surrogate loop: {settings.name}", "",
            f"Simulator `{settings.simulator}`; inputs {', '.join(settings.inputs)}; outputs "
            f"{', '.join(outputs)}. Initial design {settings.initial} rows (LHS), then batches of "
            f"{settings.batch} suggested rows (ensemble of {settings.ensemble}), budget "
            f"{settings.budget} simulations"
            + (f", target relative RMSE {settings.target:g}." if settings.target else "."),
            "", f"Status: {self.status}. Simulations: {self.spent} ({len(self.x)} finished, "
            f"{len(self.failed_x)} failed: `{FAILED_FILE}`), {len(self.pending)} pending.", "",
            "Errors are cross-validated relative RMSE (RMSE / std of the output) of the round's "
            "model on its own table.", "",
            "| round | simulations | rows | failed | version | "
            + " | ".join(outputs) + " |",
            "|" + "---|" * (5 + len(outputs)),
        ]  # fmt: skip
        for r in self.rounds:
            lines.append(f"| {r['round']} | {r['simulations']} | {r['rows']} | {r['failed']} | "
                         f"{r['version']} | "
                         + " | ".join(f"{r['relative_rmse'].get(o, math.nan):.4g}"
                                      for o in outputs) + " |")  # fmt: skip
        lines += ["", f"![error against simulations]({PLOT_FILE})", ""]
        self._write(REPORT_FILE, "\n".join(lines))
        if self.rounds:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 4))
            for output in outputs:
                ax.plot([r["simulations"] for r in self.rounds],
                        [r["relative_rmse"].get(output, math.nan) for r in self.rounds],
                        marker="o", label=output)  # fmt: skip
            if settings.target:
                ax.axhline(settings.target, color="grey", linestyle="--", label="target")
            ax.set_yscale("log")
            ax.set_xlabel("simulations")
            ax.set_ylabel("cross-validated relative RMSE")
            ax.set_title(f"{settings.name}: error against simulations")
            ax.legend()
            replace_whole(self.directory / PLOT_FILE, figure_png(fig))
            plt.close(fig)


@contextmanager
def _exclusive(directory: Path):
    """Hold the loop directory's lock (``.lock``, advisory, released when the process ends)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(directory / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LoopError(f"another surrogate loop is running in {directory}") from None
        yield


def _tagged(index: int, *args) -> tuple[int, ChunkResult]:
    return index, simulate_chunk(*args)
