"""The models every system under test serves, built once and cached in the work directory.

- ``bench``: an 8-64-64-1 tanh MLP (``training.SurrogateMLP``, briefly trained on the borehole
  function), written with ``training.bundle.write_bundle`` into a model repository beside the
  demo models (``surrogate demo``), so the service's memory is measured with those loaded.
- ``pipeline.joblib``: the naive peers' model, scikit-learn's ``MLPRegressor`` of the same shape
  in a ``StandardScaler`` pipeline, pickled (what MLServer's sklearn runtime loads too).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service import bundle_format as fmt

MODEL = "bench"
FUNCTION = "borehole"
HIDDEN = (64, 64)
TRAIN_ROWS = 2000
SEED = 0


@dataclass(frozen=True)
class Models:
    repository: Path
    pipeline: Path
    low: np.ndarray
    high: np.ndarray

    @property
    def onnx_path(self) -> Path:
        return self.version_dir / fmt.MODEL_FILE

    @property
    def version_dir(self) -> Path:
        """The newest version directory of the bench model."""
        return fmt.version_dir(self.repository, MODEL)

    def card(self) -> dict:
        return fmt.read_card(self.version_dir)

    def rows(self, n: int, seed: int = 1) -> np.ndarray:
        """``n`` float32 input rows inside the training range."""
        unit = np.random.default_rng(seed).random((n, len(self.low)))
        return (self.low + unit * (self.high - self.low)).astype(np.float32)


def build(workdir: Path, rebuild: bool = False, demo: bool = True) -> Models:
    """The repository and the pickled pipeline under ``workdir``, training what is missing."""
    from training.functions import FUNCTIONS

    fn = FUNCTIONS[FUNCTION]
    repository, pipeline = workdir / "models", workdir / "pipeline.joblib"
    X = fn.sample(TRAIN_ROWS, method="lhs", seed=SEED)
    y = fn(X)[:, 0]
    if rebuild or not (repository / MODEL).is_dir():
        _write_bench_bundle(repository, X, y, fn)
    if rebuild or not pipeline.is_file():
        _write_pipeline(pipeline, X, y)
    if demo:
        _ensure_demo_models(repository)
    return Models(repository, pipeline, fn.lower.astype(np.float32), fn.upper.astype(np.float32))


def _write_bench_bundle(repository: Path, X: np.ndarray, y: np.ndarray, fn) -> None:
    from training.bundle import write_bundle
    from training.estimator import SurrogateMLP

    model = SurrogateMLP(hidden_layer_sizes=HIDDEN, activation="tanh", solver="adam",
                         max_iter=30, random_state=SEED).fit(X, y)
    write_bundle(
        model, repository, MODEL,
        inputs=[{"name": name, "unit": unit, "min": float(lo), "max": float(hi)}
                for name, unit, lo, hi in fn.inputs],
        outputs=[{"name": name, "unit": unit} for name, unit in fn.outputs],
        metrics={"split": "none", "rows": 0, "per_output": {}},
        training_info={"rows": len(X), "purpose": "benchmark"},
        description="Benchmark model: 8-64-64-1 tanh MLP, briefly trained on borehole.",
    )


def _write_pipeline(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    import joblib
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scale = y.std()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # brief on purpose
    pipeline = make_pipeline(
        StandardScaler(),
        MLPRegressor(hidden_layer_sizes=HIDDEN, activation="tanh", max_iter=30,
                     random_state=SEED),
    )
    pipeline.fit(X, y / scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, path)


def _ensure_demo_models(repository: Path) -> None:
    command = [str(Path(sys.executable).with_name("surrogate")), "demo", "--repo",
               str(repository), "--if-missing"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
