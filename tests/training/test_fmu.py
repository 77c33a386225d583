"""FMU export, checked with FMPy (validation, simulation in both interfaces, the FMI calls) and
the system C compiler, against the bundle's graphs run in onnxruntime.

Tolerances: onnxruntime runs the hidden layers in float32, the unit in double, so values agree
to a few 1e-7 of an output's spread and derivatives to a few 1e-7 of their magnitude (the
formula tests' argument); the bars are 1e-5, as the issue sets them.
"""

from __future__ import annotations

import ctypes
import hashlib
import subprocess
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import fmpy
import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from fmpy.fmi2 import FMU2Model, FMU2Slave
from fmpy.fmi3 import FMU3Slave
from fmpy.validation import validate_fmu

from tests.training.test_ensemble import plane  # two inputs, two positive outputs
from training.activations import ACTIVATIONS
from training.bundle import write_bundle
from training.cli import main
from training.cli.demo import DEMOS, _dataset, _units
from training.ensemble import SurrogateEnsemble
from training.estimator import SurrogateMLP
from training.fmu import FmuError, export_fmu
from training.formula import read_outputs
from training.formula_code import render_c_tangent

TOLERANCE = 1e-5
FMI = (2, 3)


def _specs(X: np.ndarray, inputs, outputs, units: dict[str, str]):
    return ([{"name": n, "unit": units.get(n, ""), "min": float(X[:, i].min()),
              "max": float(X[:, i].max())} for i, n in enumerate(inputs)],
            [{"name": n, "unit": units.get(n, "")} for n in outputs])  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The demo models' architectures on their tables (a few epochs: these tests are about the
    unit, not the fit), an ensemble, and a model with log-scaled outputs."""
    repo = tmp_path_factory.mktemp("repo")
    for spec in DEMOS:
        data = _dataset(spec, 0)
        params = {k: v for k, v in spec.params.items() if k != "time_budget"}
        model = SurrogateMLP(**params, solver="adam", max_iter=5, random_state=0)
        inputs, outputs = _specs(data.X, data.inputs, data.outputs, _units(spec.function))
        write_bundle(model.fit(data.X, data.Y), repo, spec.name, inputs=inputs,
                     outputs=outputs, metrics={}, training_info={},
                     description=spec.description)  # fmt: skip
    X, Y = plane()
    inputs, outputs = _specs(X, ("d", "T-in"), ("Q", "class"), {"d": "m", "T-in": "K"})
    member = SurrogateMLP(hidden_layer_sizes=(8, 8), solver="adam", max_iter=30, alpha=1e-6)
    ensemble = SurrogateEnsemble(member, n_members=3, random_state=0).fit(X, Y)
    write_bundle(ensemble, repo, "ensemble", inputs=inputs, outputs=outputs, metrics={},
                 training_info={})  # fmt: skip
    logged = SurrogateMLP(hidden_layer_sizes=(6,), activation="softplus", y_scaling="log",
                          solver="adam", max_iter=30, random_state=0).fit(X, Y)
    write_bundle(logged, repo, "logscaled", inputs=inputs, outputs=outputs, metrics={},
                 training_info={})  # fmt: skip
    return repo


MODELS = ("borehole", "thermal_actuator", "surface", "ensemble", "logscaled")


@pytest.fixture(scope="module")
def units(repo, tmp_path_factory) -> dict[tuple[str, int], Path]:
    out = tmp_path_factory.mktemp("fmus")
    return {(name, fmi): export_fmu(repo, name, out / f"{name}{fmi}.fmu", fmi=fmi)
            for name in MODELS for fmi in FMI}  # fmt: skip


def _onnx(repo: Path, name: str, X: np.ndarray, file: str = "model.onnx") -> dict:
    session = ort.InferenceSession(repo / name / "1" / file, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"inputs": X.astype(np.float32)}), strict=True))


def _card(repo: Path, name: str) -> dict:
    import json

    return json.loads((repo / name / "1" / "model.json").read_text())


@pytest.mark.parametrize("fmi", FMI)
@pytest.mark.parametrize("name", MODELS)
def test_every_unit_validates(units, name, fmi):
    assert validate_fmu(str(units[name, fmi])) == []


@pytest.mark.parametrize("fmi", FMI)
def test_model_description(repo, units, fmi):
    description = fmpy.read_model_description(str(units["ensemble", fmi]))
    card = _card(repo, "ensemble")
    variables = {v.name: v for v in description.modelVariables}
    for spec in card["inputs"]:
        v = variables[spec["name"]]
        assert (v.causality, v.variability, v.unit) == ("input", "continuous", spec["unit"])
        assert float(v.min) == spec["min"] and float(v.max) == spec["max"]
        assert float(v.start) == pytest.approx((spec["min"] + spec["max"]) / 2)
    for spec in card["outputs"]:
        for name in (spec["name"], spec["name"] + "_std"):
            assert variables[name].causality == "output"
            assert variables[name].type in ("Real", "Float64")
    assert variables["in_domain"].type == "Boolean"
    assert variables["in_domain"].causality == "output"
    inputs = [variables[s["name"]] for s in card["inputs"]]
    for unknown in description.outputs:
        assert unknown.dependencies == inputs
    assert {u.name for u in description.unitDefinitions} == {"m", "K"}
    assert description.generationTool.startswith("surrogate-serving")
    with zipfile.ZipFile(units["ensemble", fmi]) as archive:
        xml = archive.read("modelDescription.xml").decode()
        assert "documentation/model.json" in archive.namelist()
    root = ElementTree.fromstring(xml)
    flag = "providesDirectionalDerivative" + ("" if fmi == 2 else "s")
    assert [root.find(i).get(flag) for i in ("ModelExchange", "CoSimulation")] == ["true"] * 2
    sha = hashlib.sha256((repo / "ensemble" / "1" / "model.onnx").read_bytes()).hexdigest()
    assert f'sha256="{sha}"' in xml


def _sweep(card: dict, n: int = 41) -> np.ndarray:
    """Inputs over time from 30% of each range below it to 30% above (so every input leaves its
    range at both ends), in a different phase per input."""
    low = np.array([s["min"] for s in card["inputs"]])
    high = np.array([s["max"] for s in card["inputs"]])
    t = np.linspace(0.0, 1.0, n)
    phase = (t[:, None] + np.arange(len(low)) / (2 * len(low))) % 1.0
    return t, low + (high - low) * (-0.3 + 1.6 * phase)


def _inside(card: dict, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each row is in the training box, and whether that is clear (no input within a
    millionth of its range of a bound, where an event's exact time decides)."""
    low = np.array([s["min"] for s in card["inputs"]])
    high = np.array([s["max"] for s in card["inputs"]])
    inside = ((X >= low) & (X <= high)).all(axis=1)
    margin = np.minimum(np.abs(X - low), np.abs(X - high)) / (high - low)
    return inside, (margin > 1e-6).all(axis=1)


@pytest.mark.parametrize("interface", ["CoSimulation", "ModelExchange"])
@pytest.mark.parametrize("fmi", FMI)
@pytest.mark.parametrize("name", ["thermal_actuator", "ensemble", "logscaled"])
def test_simulation_equals_onnxruntime(repo, units, name, fmi, interface):
    card = _card(repo, name)
    t, X = _sweep(card)
    input_names = [s["name"] for s in card["inputs"]]
    signal = np.array([tuple(row) for row in np.column_stack([t, X])],
                      dtype=[("time", float)] + [(n, float) for n in input_names])
    outputs = [s["name"] for s in card["outputs"]]
    if name == "ensemble":
        outputs += [f"{o}_std" for o in outputs]
    result = fmpy.simulate_fmu(str(units[name, fmi]), fmi_type=interface, input=signal,
                               output=[*input_names, *outputs, "in_domain"], stop_time=1.0,
                               output_interval=0.025)  # fmt: skip
    # The unit's outputs are those of the inputs it held when they were recorded.
    held = np.column_stack([result[n] for n in input_names])
    assert len(held) >= 41 and np.ptp(held, axis=0).min() > 0
    expected = _onnx(repo, name, held)
    got = np.column_stack([result[o] for o in outputs])
    want = np.column_stack([expected["outputs"]] + (
        [expected["std"]] if name == "ensemble" else []))
    spread = np.ptp(want, axis=0)
    assert (np.abs(got - want) <= TOLERANCE * spread).all(), np.abs(got - want).max(axis=0)
    inside, clear = _inside(card, held)
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(result["in_domain"][clear], inside[clear])


def _slave(unit: Path, fmi: int, workdir: Path, instance: str = "a"):
    unzipped = workdir / f"unzipped{fmi}"
    if not unzipped.exists():
        fmpy.extract(str(unit), str(unzipped))
    description = fmpy.read_model_description(str(unzipped))
    cls = FMU2Slave if fmi == 2 else FMU3Slave
    slave = cls(guid=description.guid, unzipDirectory=str(unzipped),
                modelIdentifier=description.coSimulation.modelIdentifier, instanceName=instance)
    slave.instantiate()
    if fmi == 2:
        slave.setupExperiment(startTime=0.0)
    slave.enterInitializationMode()
    slave.exitInitializationMode()
    return slave, {v.name: v.valueReference for v in description.modelVariables}


def _set(slave, fmi: int, refs: list[int], values) -> None:
    (slave.setReal if fmi == 2 else slave.setFloat64)(refs, list(map(float, values)))


def _get(slave, fmi: int, refs: list[int]) -> np.ndarray:
    return np.array((slave.getReal if fmi == 2 else slave.getFloat64)(refs))


@pytest.mark.parametrize("fmi", FMI)
@pytest.mark.parametrize("name", ["thermal_actuator", "borehole", "ensemble", "logscaled"])
def test_directional_derivatives_equal_jacobian_onnx(repo, units, tmp_path, name, fmi):
    card = _card(repo, name)
    slave, refs = _slave(units[name, fmi], fmi, tmp_path)
    inputs = [refs[s["name"]] for s in card["inputs"]]
    outputs = [refs[s["name"]] for s in card["outputs"]]
    low = np.array([s["min"] for s in card["inputs"]])
    high = np.array([s["max"] for s in card["inputs"]])
    points = np.random.default_rng(3).uniform(low - 0.2 * (high - low), high + 0.2 * (high - low),
                                              (8, len(low)))  # fmt: skip
    jacobian = _onnx(repo, name, points, "jacobian.onnx")["jacobian"]  # [N, out, in]
    got = []
    for point in points:
        _set(slave, fmi, inputs, point)
        columns = [slave.getDirectionalDerivative(outputs, inputs, list(np.eye(len(inputs))[j]))
                   for j in range(len(inputs))]  # fmt: skip
        got.append(np.array(columns).T)
        if fmi == 3:  # the adjoint is the transpose: seed e_0 on the outputs gives row 0
            row = slave.getAdjointDerivative(outputs, inputs, list(np.eye(len(outputs))[0]),
                                             nSensitivity=len(inputs))  # one per known
            np.testing.assert_allclose(row, got[-1][0], rtol=1e-12, atol=1e-300)
    scale = np.abs(jacobian).max(axis=(0, 2))[None, :, None]  # per output, over the probe
    assert (np.abs(np.array(got) - jacobian) <= TOLERANCE * scale).all()
    slave.terminate()
    slave.freeInstance()


@pytest.mark.parametrize("fmi", FMI)
def test_two_instances_in_one_process_do_not_interfere(repo, units, tmp_path, fmi):
    card = _card(repo, "thermal_actuator")
    first, refs = _slave(units["thermal_actuator", fmi], fmi, tmp_path, "first")
    second, _ = _slave(units["thermal_actuator", fmi], fmi, tmp_path, "second")
    inputs = [refs[s["name"]] for s in card["inputs"]]
    outputs = [refs[s["name"]] for s in card["outputs"]]
    low = np.array([s["min"] for s in card["inputs"]])
    high = np.array([s["max"] for s in card["inputs"]])
    a, b = low + 0.25 * (high - low), low + 0.8 * (high - low)
    _set(first, fmi, inputs, a)
    _set(second, fmi, inputs, b)
    for slave in (first, second):
        slave.doStep(0.0, 0.1)
    expected = _onnx(repo, "thermal_actuator", np.vstack([a, b]))["outputs"]
    spread = np.abs(expected[0] - expected[1])
    assert (spread > 0).all()
    for slave, want in ((second, expected[1]), (first, expected[0])):
        assert (np.abs(_get(slave, fmi, outputs) - want) <= TOLERANCE * spread).all()
    for slave in (first, second):
        slave.terminate()
        slave.freeInstance()


@pytest.mark.parametrize("fmi", FMI)
def test_fmu_states_are_saved_restored_and_serialized(repo, units, tmp_path, fmi):
    from fmpy.fmi1 import FMICallException

    card = _card(repo, "thermal_actuator")
    slave, refs = _slave(units["thermal_actuator", fmi], fmi, tmp_path)
    inputs = [refs[s["name"]] for s in card["inputs"]]
    outputs = [refs[s["name"]] for s in card["outputs"]]
    low = np.array([s["min"] for s in card["inputs"]])
    high = np.array([s["max"] for s in card["inputs"]])
    get, set_, free = ((slave.getFMUstate, slave.setFMUstate, slave.freeFMUstate) if fmi == 2
                       else (slave.getFMUState, slave.setFMUState, slave.freeFMUState))
    load = slave.deSerializeFMUstate if fmi == 2 else slave.deserializeFMUState
    _set(slave, fmi, inputs, low + 0.3 * (high - low))
    first = _get(slave, fmi, outputs)
    saved = get()
    serialized = slave.serializeFMUState(saved)
    _set(slave, fmi, inputs, low + 0.9 * (high - low))
    assert not np.allclose(_get(slave, fmi, outputs), first)
    set_(saved)
    np.testing.assert_array_equal(_get(slave, fmi, outputs), first)
    _set(slave, fmi, inputs, high)
    restored = load(serialized)
    set_(restored)
    np.testing.assert_array_equal(_get(slave, fmi, inputs), low + 0.3 * (high - low))
    np.testing.assert_array_equal(_get(slave, fmi, outputs), first)
    with pytest.raises(FMICallException):  # bytes of another unit
        load(b"\x00" * len(serialized))
    for state in (saved, restored):
        free(state)
    slave.terminate()
    slave.freeInstance()


def test_model_exchange_reports_the_range_at_events(repo, units, tmp_path):
    """in_domain changes at an event: the event indicators are the distances to the range."""
    card = _card(repo, "thermal_actuator")
    unzipped = tmp_path / "me"
    fmpy.extract(str(units["thermal_actuator", 2]), str(unzipped))
    description = fmpy.read_model_description(str(unzipped))
    assert description.numberOfEventIndicators == 2 * len(card["inputs"])
    model = FMU2Model(guid=description.guid, unzipDirectory=str(unzipped),
                      modelIdentifier=description.modelExchange.modelIdentifier)
    model.instantiate()
    model.setupExperiment(startTime=0.0)
    model.enterInitializationMode()
    model.exitInitializationMode()
    refs = {v.name: v.valueReference for v in description.modelVariables}
    first = refs[card["inputs"][0]["name"]]
    model.newDiscreteStates()
    model.enterContinuousTimeMode()
    assert model.getBoolean([refs["in_domain"]]) == [True]
    model.setReal([first], [card["inputs"][0]["max"] + 1.0])
    indicators = (ctypes.c_double * description.numberOfEventIndicators)()
    model.getEventIndicators(indicators, len(indicators))
    assert indicators[1] == pytest.approx(-1.0) and min(indicators) == indicators[1]
    assert model.getBoolean([refs["in_domain"]]) == [True]  # not before the event
    model.enterEventMode()
    model.newDiscreteStates()
    assert model.getBoolean([refs["in_domain"]]) == [False]
    model.terminate()
    model.freeInstance()


@pytest.mark.parametrize("fmi", FMI)
def test_sources_only_unit_builds_with_fmpy_and_agrees(repo, tmp_path, fmi):
    from fmpy.build import build_platform_binary

    unit = export_fmu(repo, "ensemble", tmp_path / "src.fmu", fmi=fmi, sources_only=True)
    with zipfile.ZipFile(unit) as archive:
        assert not [n for n in archive.namelist() if n.startswith("binaries/")]
    unzipped = tmp_path / "unzipped"
    fmpy.extract(str(unit), str(unzipped))
    (tmp_path / "build").mkdir()
    build_platform_binary(unzipped, build_dir=tmp_path / "build")
    assert validate_fmu(str(unzipped)) == []
    card = _card(repo, "ensemble")
    t, X = _sweep(card, 11)
    names = [s["name"] for s in card["inputs"]]
    signal = np.array([tuple(row) for row in np.column_stack([t, X])],
                      dtype=[("time", float)] + [(n, float) for n in names])
    result = fmpy.simulate_fmu(str(unzipped), input=signal, output=[*names, "Q", "Q_std"],
                               stop_time=1.0, output_interval=0.1)  # fmt: skip
    expected = _onnx(repo, "ensemble", np.column_stack([result[n] for n in names]))
    for got, want in ((result["Q"], expected["outputs"][:, 0]),
                      (result["Q_std"], expected["std"][:, 0])):
        assert (np.abs(got - want) <= TOLERANCE * np.ptp(want)).all()


@pytest.mark.parametrize("fmi", FMI)
def test_sources_compile_without_a_warning(repo, tmp_path, fmi):
    unit = export_fmu(repo, "ensemble", tmp_path / "src.fmu", fmi=fmi, sources_only=True)
    with zipfile.ZipFile(unit) as archive:
        archive.extractall(tmp_path / "u")
    sources = sorted(str(p) for p in (tmp_path / "u" / "sources").glob("*.c"))
    done = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2",
                           "-shared", "-fPIC", "-o", str(tmp_path / "u.so"), *sources, "-lm"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_cli_writes_the_unit(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["export", "thermal_actuator", "--format", "fmu",
                                       "--repo", str(repo), "--fmi", "3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote thermal_actuator.fmu (FMI 3.0" in result.output
    assert validate_fmu(str(tmp_path / "thermal_actuator.fmu")) == []


@pytest.mark.parametrize(("compiler", "message"), [
    ("no-such-compiler", "no C compiler found (looked for $CC=no-such-compiler on the PATH)"),
    ("false", "false could not compile the unit"),
])  # fmt: skip
def test_no_compiler_or_a_failed_build_is_one_line_and_writes_nothing(
        repo, tmp_path, monkeypatch, compiler, message):  # fmt: skip
    monkeypatch.setenv("CC", compiler)
    target = tmp_path / "out" / "unit.fmu"
    result = CliRunner().invoke(main, ["export", "thermal_actuator", "--format", "fmu",
                                       "--repo", str(repo), "--output", str(target)])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not target.exists() and not [p for p in tmp_path.rglob("*") if p.is_file()]
    with pytest.raises(FmuError):
        export_fmu(repo, "thermal_actuator", target)


def test_fmu_options_belong_to_the_fmu_format(repo):
    result = CliRunner().invoke(main, ["export", "thermal_actuator", "--format", "c",
                                       "--repo", str(repo), "--sources-only"])
    assert result.exit_code == 2 and "apply to --format fmu only" in result.output


def _tangent_library(version_dir: Path, workdir: Path, names: list[str]):
    """The unit's network code (values and tangents) compiled alone, called through ctypes:
    ``f(x, dx) -> (values, derivatives)``."""
    import onnx

    network, variables = read_outputs(onnx.load(version_dir / "model.onnx"), names)
    source = workdir / "tangent.c"
    source.write_text("#include <math.h>\n#include <stddef.h>\n\n"
                      + render_c_tangent(network, variables, "evaluate"))
    library = workdir / "libtangent.so"
    done = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2",
                           "-shared", "-fPIC", "-o", str(library), str(source), "-lm"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    function = ctypes.CDLL(str(library)).evaluate
    function.restype = None
    n_values = sum(network.size(v) for v in variables)

    def call(x, dx):
        out, dout = (ctypes.c_double * n_values)(), (ctypes.c_double * n_values)()
        array = ctypes.c_double * len(x)
        function(array(*x), None if dx is None else array(*dx), out, dout)
        return np.array(out), np.array(dout)

    return call


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_tangents_of_every_activation_equal_the_exact_jacobian(tmp_path, activation):
    """Against the estimator's own Jacobian (float64) to 1e-5, and jacobian.onnx to 1e-4: in
    float32, onnxruntime's GELU derivative is 2e-5 off the float64 value, the C one 8e-7."""
    X, Y = plane()
    inputs, outputs = _specs(X, ("d", "T"), ("Q", "P"), {})
    model = SurrogateMLP(hidden_layer_sizes=(6, 5), activation=activation, solver="adam",
                         max_iter=5, random_state=0).fit(X, Y)  # fmt: skip
    path = write_bundle(model, tmp_path / "repo", "m", inputs=inputs, outputs=outputs,
                        metrics={}, training_info={})  # fmt: skip
    call = _tangent_library(path, tmp_path, ["outputs"])
    low, high = X.min(axis=0), X.max(axis=0)
    points = np.random.default_rng(4).uniform(low - (high - low), high + (high - low), (32, 2))
    got = np.array([np.column_stack([call(point, np.eye(2)[j])[1] for j in range(2)])
                    for point in points])  # fmt: skip
    for expected, tolerance in (
        (model.predict_jacobian(points), TOLERANCE),
        (_onnx(tmp_path / "repo", "m", points, "jacobian.onnx")["jacobian"], 10 * TOLERANCE),
    ):  # fmt: skip
        scale = np.abs(expected).max(axis=(0, 2))[None, :, None]  # per output, over the probe
        assert (np.abs(got - expected) <= tolerance * scale).all()


def test_tangent_of_the_ensemble_spread_equals_finite_differences(repo, tmp_path):
    call = _tangent_library(repo / "ensemble" / "1", tmp_path, ["outputs", "std"])
    card = _card(repo, "ensemble")
    low = np.array([s["min"] for s in card["inputs"]])
    high = np.array([s["max"] for s in card["inputs"]])
    for point in np.random.default_rng(5).uniform(low, high, (8, 2)):
        for j in range(2):
            h = 1e-6 * (high[j] - low[j])
            step = np.eye(2)[j] * h
            central = (call(point + step, None)[0] - call(point - step, None)[0]) / (2 * h)
            got = call(point, np.eye(2)[j])[1]
            assert np.abs(got - central).max() <= 1e-5 * np.abs(central).max()
