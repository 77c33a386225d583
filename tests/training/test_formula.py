"""Formula export: expression, Python and C forms agree with the ONNX model run in onnxruntime.

Tolerance: onnxruntime evaluates the hidden layers in float32 (rounding 2**-24 ~ 6e-8 per
operation, a few 1e-7 after the sums and activations of two small layers), the exported code in
double. So the forms must agree with onnxruntime to 1e-5 of each output's largest magnitude on
the probe points, which leaves a margin of ten over that rounding, while a wrong weight, sign,
constant or activation shows as an error of 1e-3 or more.
"""

from __future__ import annotations

import ctypes
import json
import math
import re
import subprocess
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from training.activations import ACTIVATIONS
from training.bundle import write_bundle
from training.cli import main
from training.cli.export import FORMATS
from training.estimator import SurrogateMLP
from training.formula import RENDERERS, FormulaError, export_formula, read_network
from training.graph import GraphBuilder, float_tensor
from training.parameters import X_SCALINGS
from training.scaling import SCALINGS

# Names that are not identifiers, or are reserved in one target, so every test also checks that
# the exported code renames them consistently.
INPUTS = ("T-in", "exp")
OUTPUTS = ("Q", "class")
LOW, HIGH = np.array([0.05, 10.0]), np.array([0.15, 30.0])
TOLERANCE = 1e-5
BIG = 10**6  # max_terms that lets every test network through in expression form


def _table(n_rows: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.uniform(LOW, HIGH, (n_rows, 2))
    u = (X - LOW) / (HIGH - LOW)
    return X, np.column_stack([np.exp(u[:, 0] + u[:, 1]), 2.0 + np.sin(3 * u[:, 0]) * u[:, 1]])


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("repo")


INPUT_SPECS = [
    {"name": n, "unit": "m", "min": low, "max": high}
    for n, low, high in zip(INPUTS, LOW, HIGH, strict=True)
]
OUTPUT_SPECS = [{"name": n, "unit": "K"} for n in OUTPUTS]


def _mlp(**params) -> SurrogateMLP:
    return SurrogateMLP(hidden_layer_sizes=(6, 5), solver="adam", max_iter=5, random_state=0,
                        **params)  # fmt: skip


@cache
def _bundle(repo: Path, name: str, **params) -> Path:
    model = _mlp(**params).fit(*_table())
    return write_bundle(model, repo, name, inputs=INPUT_SPECS, outputs=OUTPUT_SPECS, metrics={},
                        training_info={})  # fmt: skip


def _probe() -> np.ndarray:
    """Points in the training box and in the box three times as wide, where kinks and clips act."""
    rng = np.random.default_rng(1)
    width = HIGH - LOW
    points = np.vstack([rng.uniform(LOW, HIGH, (64, 2)), rng.uniform(LOW - width, HIGH + width,
                                                                     (64, 2))])  # fmt: skip
    return points.astype(np.float32)


def _onnxruntime(version_dir: Path, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(version_dir / "model.onnx", providers=["CPUExecutionProvider"])
    return session.run(["outputs"], {"inputs": X})[0].astype(np.float64)


def _safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _run_expression(text: str, X: np.ndarray) -> np.ndarray:
    """Evaluate each ``name(args) = expression`` line; the dialect is a subset of Python's."""
    functions = {"exp": _safe_exp, "log": math.log, "tanh": math.tanh, "sin": math.sin,
                 "erf": math.erf, "max": max, "min": min, "abs": abs}  # fmt: skip
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    columns = []
    for line in lines:
        match = re.fullmatch(r"(\w+)\(([\w, ]*)\) = (.+)", line)
        assert match, line
        names = match.group(2).split(", ")
        code = compile(match.group(3), "<expression>", "eval")
        columns.append([eval(code, {**functions, **dict(zip(names, row, strict=True))})
                        for row in X.tolist()])  # fmt: skip
    return np.array(columns).T


def _run_layered(text: str, X: np.ndarray) -> np.ndarray:
    """Evaluate the ``name = expression`` lines in order, each row in a namespace of its own; the
    outputs are the last lines, one per output."""
    functions = {"exp": _safe_exp, "log": math.log, "tanh": math.tanh, "sin": math.sin,
                 "erf": math.erf, "max": max, "min": min, "abs": abs}  # fmt: skip
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    steps = []
    for line in lines:
        match = re.fullmatch(r"(\w+) = (.+)", line)
        assert match, line
        steps.append((match.group(1), compile(match.group(2), "<layered>", "eval")))
    inputs = [name.replace("-", "_") if name != "exp" else "exp_" for name in INPUTS]
    rows = []
    for row in X.tolist():
        namespace = {**functions, **dict(zip(inputs, row, strict=True))}
        for name, code in steps:
            assert name not in namespace, f"{name} defined twice or shadows a function"
            namespace[name] = eval(code, namespace)
        rows.append([namespace[name] for name, _ in steps[-len(OUTPUTS):]])
    return np.array(rows)


def _run_python(text: str, function: str, X: np.ndarray) -> np.ndarray:
    namespace: dict = {}
    exec(compile(text, "<export>", "exec"), namespace)
    return np.array([namespace[function](*row) for row in X.tolist()])


def _run_c(text: str, function: str, X: np.ndarray, workdir: Path) -> np.ndarray:
    source, library = workdir / f"{function}.c", workdir / f"lib{function}.so"
    source.write_text(text)
    subprocess.run(
        ["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", "-shared", "-fPIC",
         "-o", str(library), str(source), "-lm"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    predict = getattr(ctypes.CDLL(str(library)), function)
    predict.argtypes = [ctypes.POINTER(ctypes.c_double)] * 2
    predict.restype = None
    out = (ctypes.c_double * len(OUTPUTS))()
    rows = []
    for row in X.tolist():
        predict((ctypes.c_double * len(row))(*row), out)
        rows.append(list(out))
    return np.array(rows)


def _run(fmt: str, repo: Path, name: str, X: np.ndarray, workdir: Path) -> np.ndarray:
    text = export_formula(repo, name, fmt, max_terms=BIG)
    if fmt == "expression":
        return _run_expression(text, X)
    if fmt == "layered":
        return _run_layered(text, X)
    if fmt == "python":
        return _run_python(text, name, X)
    return _run_c(text, name, X, workdir)


def _assert_agrees(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    scale = np.abs(expected).max(axis=0)
    deviation = (np.abs(got - expected) / scale).max()
    assert deviation <= TOLERANCE, f"deviation {deviation:.3g} x max |output|"


@pytest.mark.parametrize("fmt", RENDERERS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_agrees_with_onnxruntime(repo, tmp_path, activation, fmt):
    name = f"act_{activation}"
    version_dir = _bundle(repo, name, activation=activation)
    X = _probe()
    _assert_agrees(_run(fmt, repo, name, X, tmp_path), _onnxruntime(version_dir, X))


@pytest.mark.parametrize("fmt", RENDERERS)
@pytest.mark.parametrize("y_scaling", SCALINGS)
@pytest.mark.parametrize("x_scaling", X_SCALINGS)
def test_every_scaling_agrees_with_onnxruntime(repo, tmp_path, x_scaling, y_scaling, fmt):
    name = f"scale_{x_scaling}_{y_scaling}"
    version_dir = _bundle(repo, name, activation=("gelu", "prelu"), x_scaling=x_scaling,
                          y_scaling=y_scaling)  # fmt: skip
    X = _probe()
    _assert_agrees(_run(fmt, repo, name, X, tmp_path), _onnxruntime(version_dir, X))


def _hand_made_bundle(repo: Path) -> Path:
    """A graph using the ops the exporter does not write today: MatMul, Constant, Clip, Mean
    (as an ensemble combines its members), LeakyRelu, Neg, Abs and tanh-approximated Gelu."""
    rng = np.random.default_rng(2)
    g = GraphBuilder()
    x = g.op("Div", g.op("Sub", "inputs", g.const(LOW)), g.const(HIGH - LOW))
    w = g.const(rng.normal(size=(2, 3)))
    first = g.op("Gelu", g.op("MatMul", x, w), approximate="tanh")
    second = g.op("LeakyRelu", g.op("Neg", g.op("Gemm", x, w, g.const(rng.normal(size=3)),
                                                 alpha=0.5, beta=2.0)), alpha=0.2)  # fmt: skip
    low = g.op("Constant", value=numpy_helper.from_array(np.float32(-0.3)))
    third = g.op("Clip", g.op("Abs", first), low, g.const(np.float32(0.4)))
    mean = g.op("Mean", first, second, third)
    g.rename(g.op("MatMul", mean, g.const(rng.normal(size=(3, 2)))), "outputs")
    model = g.make_model([float_tensor("inputs", 2)], [float_tensor("outputs", 2)], "hand")
    onnx.checker.check_model(model, full_check=True)
    version_dir = repo / "hand" / "1"
    version_dir.mkdir(parents=True)
    onnx.save(model, version_dir / "model.onnx")
    card = {"name": "hand", "version": 1, "inputs": INPUT_SPECS, "outputs": OUTPUT_SPECS}
    (version_dir / "model.json").write_text(json.dumps(card))
    return version_dir


@pytest.mark.parametrize("fmt", RENDERERS)
def test_ops_beyond_the_exporter_agree_with_onnxruntime(tmp_path, fmt):
    version_dir = _hand_made_bundle(tmp_path / "repo")
    X = _probe()
    _assert_agrees(_run(fmt, tmp_path / "repo", "hand", X, tmp_path),
                   _onnxruntime(version_dir, X))  # fmt: skip


def test_cli_formats_are_the_renderers_and_the_fmu():
    assert set(FORMATS) == {*RENDERERS, "fmu"}


def test_expression_reads_like_comsol(repo):
    _bundle(repo, "small", activation="tanh")
    text = export_formula(repo, "small", "expression")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert [line.split(" = ")[0] for line in lines] == ["Q(T_in, exp_)", "class_(T_in, exp_)"]
    assert "tanh(" in lines[0] and "#   T_in: T-in [m], trained on 0.05 .. 0.15\n" in text


def test_expression_too_large_is_refused_and_suggests_code(repo):
    _bundle(repo, "small", activation="tanh")
    with pytest.raises(FormulaError, match=r"would hold \d+ terms \(limit 50\).*--format layered"):
        export_formula(repo, "small", "expression", max_terms=50)


def test_layered_names_every_unit_and_grows_with_the_weights(repo):
    """A 2-16-16-2 tanh network (the thermal actuator's shape) exports in both forms; the layered
    one is a line per scaled input, per unit and per output, each under one line's length."""
    model = SurrogateMLP(hidden_layer_sizes=(16, 16), activation="tanh", solver="adam",
                         max_iter=5, random_state=0).fit(*_table())  # fmt: skip
    write_bundle(model, repo, "actuator", inputs=INPUT_SPECS, outputs=OUTPUT_SPECS, metrics={},
                 training_info={})  # fmt: skip
    export_formula(repo, "actuator", "expression")  # within the default limit
    text = export_formula(repo, "actuator", "layered")
    names = [line.split(" = ")[0] for line in text.splitlines() if not line.startswith("#")]
    units = [f"h0_{i}" for i in (1, 2)] + [f"h{k}_{j}" for k in (1, 2) for j in range(1, 17)]
    assert names == [*units, "Q", "class_"]
    assert max(len(line) for line in text.splitlines()) < 16 * 40
    X = _probe()
    _assert_agrees(_run_layered(text, X), _onnxruntime(repo / "actuator" / "1", X))


def _with_extra_output(model: onnx.ModelProto, op_type: str) -> onnx.ModelProto:
    """``model`` plus an output ``std`` = op_type(outputs), as an ensemble's extra output."""
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    extended.graph.node.append(helper.make_node(op_type, ["outputs"], ["std"], name="spread"))
    extended.graph.output.append(
        helper.make_tensor_value_info("std", TensorProto.FLOAT, ["N", len(OUTPUTS)])
    )
    return extended


def test_only_outputs_is_exported_and_unknown_ops_are_named(repo):
    model = onnx.load(_bundle(repo, "small", activation="tanh") / "model.onnx")
    extended = _with_extra_output(model, "Atan")
    assert read_network(extended).steps.keys() == read_network(model).steps.keys()
    with pytest.raises(FormulaError, match=r"ONNX op 'Atan' \(node 'spread'\).*supported ops"):
        read_network(extended, "std")


def test_cli_writes_the_file(repo, tmp_path):
    _bundle(repo, "small", activation="tanh")
    target = tmp_path / "small.py"
    args = ["export", "--format", "python", "small", "--repo", str(repo), "--output", str(target)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    X = _probe()
    _assert_agrees(_run_python(target.read_text(), "small", X),
                   _onnxruntime(repo / "small" / "1", X))  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing"], "no model 'missing' in the repository"),
        (["../small"], "invalid model name '../small'"),
        (["small", "--version", "7"], "model 'small' has no version 7 (latest is 1)"),
        (["small", "--version", "0"], "model 'small' has no version 0 (latest is 1)"),
        (["small", "--max-terms", "50"], "would hold"),
    ],
)
def test_cli_bad_requests_exit_1_with_one_line(repo, args, message):
    _bundle(repo, "small", activation="tanh")
    result = CliRunner().invoke(
        main, ["export", "--format", "expression", "--repo", str(repo), *args]
    )
    assert result.exit_code == 1
    assert message in result.output and result.output.count("\n") == 1, result.output
