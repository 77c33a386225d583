"""Execution-provider selection and what ``OnnxModel`` precomputes at load."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from service.devices import CPU, CUDA, check_session_providers, select_providers
from service.repository import BundleRef
from service.runtime import IO_BINDING_MIN_ROWS, OnnxModel, session_options
from service.settings import DeviceUnavailable, Settings
from tests.bundles import make_bundle

WITH_CUDA = ["TensorrtExecutionProvider", CUDA, CPU]
CPU_ONLY = ["AzureExecutionProvider", CPU]


@pytest.mark.parametrize(
    ("device", "available", "expected"),
    [
        ("cpu", WITH_CUDA, [CPU]),
        ("cpu", CPU_ONLY, [CPU]),
        ("cuda", WITH_CUDA, [CUDA, CPU]),
        ("auto", WITH_CUDA, [CUDA, CPU]),
        ("auto", CPU_ONLY, [CPU]),
    ],
)
def test_select_providers(device, available, expected):
    assert select_providers(device, available) == expected


def test_cuda_without_cuda_provider_is_a_clear_error():
    with pytest.raises(DeviceUnavailable, match="SURROGATE_DEVICE=cuda.*onnxruntime-gpu"):
        select_providers("cuda", CPU_ONLY)


@pytest.mark.parametrize(
    ("device", "actual", "fails"),
    [("cuda", [CPU], True), ("cuda", [CUDA, CPU], False), ("auto", [CPU], False),
     ("cpu", [CPU], False)],
)
def test_a_session_that_silently_fell_back_from_cuda_is_refused(device, actual, fails):
    if fails:
        with pytest.raises(DeviceUnavailable, match="could not start its CUDA provider"):
            check_session_providers(device, actual)
    else:
        check_session_providers(device, actual)


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="device must be one of"):
        select_providers("tpu", WITH_CUDA)


def test_create_app_fails_fast_when_cuda_is_unavailable(repo):
    import onnxruntime as ort

    from service import create_app

    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the failure path needs a CPU-only build")
    with pytest.raises(DeviceUnavailable):
        create_app(Settings(model_repository=repo, device="cuda"))
    assert create_app(Settings(model_repository=repo, device="auto")) is not None


def test_missing_repository_fails_fast(tmp_path):
    from service import create_app
    from service.settings import RepositoryNotFound

    with pytest.raises(RepositoryNotFound, match="not a directory"):
        create_app(Settings(model_repository=tmp_path / "typo"))


@pytest.mark.parametrize("warmup", [True, False])
def test_onnx_model_precomputes_hot_path_facts(tmp_path, warmup):
    bundle = make_bundle(tmp_path, "m", n_inputs=3, n_outputs=2, extra_outputs=("std",))
    settings = Settings(model_repository=tmp_path, intra_op_threads=2, warmup=warmup)
    model = OnnxModel.load(BundleRef("m", 1, bundle.path), settings, [CPU])
    assert (model.input_name, model.input_width) == ("inputs", 3)
    assert model.feature_names == ("x0", "x1", "x2")
    assert model.target_names == ("y0", "y1")
    assert model.output_names == ("outputs", "std")
    assert dict(model.output_types) == {"outputs": "tensor(float)", "std": "tensor(float)"}
    assert dict(model.output_shapes) == {"outputs": [-1, 2], "std": [-1, 2]}
    assert model.feature_index["x2"] == 2
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    outputs, std = model.run(x)
    np.testing.assert_allclose(outputs, bundle.predict(x))
    np.testing.assert_allclose(std, 2 * bundle.predict(x))


def test_io_binding_path_gives_the_same_answers(tmp_path):
    """The CUDA I/O-binding path, exercised on the CPU device (no GPU here): same results."""
    bundle = make_bundle(tmp_path, "bound", n_inputs=3, n_outputs=2, jacobian=True)
    model = OnnxModel.load(BundleRef("bound", 1, bundle.path), Settings(), ["CPUExecutionProvider"])
    assert model.io_binding_device is None  # CPU sessions run plainly
    x = np.random.default_rng(1).uniform(0, 2, (IO_BINDING_MIN_ROWS + 5, 3)).astype(np.float32)
    plain = model.run(x, ["outputs", "jacobian"])
    model.io_binding_device = "cpu"
    bound = model.run(x, ["outputs", "jacobian"])
    for a, b in zip(plain, bound, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(bound[0], bundle.predict(x), rtol=1e-6)


def _jacobian_model(tmp_path, **overrides):
    bundle = make_bundle(tmp_path, "lazy", n_inputs=3, n_outputs=2, jacobian=True,
                         card_overrides=overrides or None)
    settings = Settings(warmup=True)
    return bundle, OnnxModel.load(BundleRef("lazy", 1, bundle.path), settings, [CPU])


def test_the_jacobian_session_is_created_on_first_use_once(tmp_path):
    bundle, model = _jacobian_model(tmp_path)
    # Loaded, warmed up and described without it: the card declares its outputs.
    assert model.sessions_open == 1
    assert model.output_types["jacobian"] == "tensor(float)"
    assert model.output_shapes["jacobian"] == [-1, 2, 3]
    x = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]], dtype=np.float32)
    model.run(x)
    assert model.sessions_open == 1
    graph = model._extra_graphs[0]
    opened = []
    real_open = graph._open
    graph._open = lambda: opened.append(1) or real_open()  # counts the sessions created
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: model.run(x, ["outputs", "jacobian"]), range(32)))
    assert opened == [1] and model.sessions_open == 2
    W = bundle.weights
    for outputs, jacobian in answers:
        np.testing.assert_allclose(outputs, bundle.predict(x), rtol=1e-6)
        np.testing.assert_allclose(jacobian, np.broadcast_to(W.T, (2, 2, 3)), rtol=1e-6)


def test_a_card_without_datatypes_has_the_graph_read_at_load_and_let_go(tmp_path):
    old = {"tensors": {"outputs": [{"name": "outputs", "shape": [-1, 2]},
                                   {"name": "jacobian", "file": "jacobian.onnx"}]}}
    _, model = _jacobian_model(tmp_path, **old)
    assert model.sessions_open == 1
    assert model.output_shapes["jacobian"] == [-1, 2, 3]
    assert model.output_types["jacobian"] == "tensor(float)"
    x = np.ones((1, 3), dtype=np.float32)
    assert model.run(x, ["jacobian"])[0].shape == (1, 2, 3)
    assert model.sessions_open == 2


def test_cpu_sessions_share_one_arena_and_cuda_sessions_keep_their_own():
    cpu = session_options(Settings(), [CPU])
    assert cpu.get_session_config_entry("session.use_env_allocators") == "1"
    cuda = session_options(Settings(), [CUDA, CPU])  # no GPU here: only the options are checked
    with pytest.raises(RuntimeError, match="does not have configuration"):
        cuda.get_session_config_entry("session.use_env_allocators")
    assert session_options(Settings(), [CPU]).get_session_config_entry(
        "session.use_env_allocators") == "1"  # registering twice in a process is fine


def test_graph_optimization_is_basic_unless_set(tmp_path):
    level = ort.GraphOptimizationLevel
    assert session_options(Settings(), [CPU]).graph_optimization_level == level.ORT_ENABLE_BASIC
    chosen = Settings.from_env({"SURROGATE_GRAPH_OPTIMIZATION": "ALL"})
    assert session_options(chosen, [CPU]).graph_optimization_level == level.ORT_ENABLE_ALL
    # Every level serves the same answers.
    bundle = make_bundle(tmp_path, "m", n_inputs=3)
    x = np.linspace(0.1, 0.9, 12, dtype=np.float32).reshape(4, 3)
    answers = [OnnxModel.load(BundleRef("m", 1, bundle.path),
                              Settings(model_repository=tmp_path, graph_optimization=name),
                              [CPU]).run(x)[0] for name in ("disable", "basic", "all")]
    np.testing.assert_allclose(answers[0], answers[1], rtol=1e-6)
    np.testing.assert_allclose(answers[2], answers[1], rtol=1e-6)


@pytest.mark.parametrize("bounded", [True, False])
def test_the_quick_check_agrees_with_the_full_ones(tmp_path, bounded):
    """Requests of a few rows are checked in Python, larger ones in numpy: at every size, on
    the bounds, just past them, for NaN and infinities, with and without a training range,
    plainly_inside says what the finiteness and domain checks would."""
    bundle = make_bundle(tmp_path, "m", n_inputs=3)
    model = OnnxModel.load(BundleRef("m", 1, bundle.path), Settings(model_repository=tmp_path),
                           [CPU])  # fmt: skip
    low, high = model.domain_low, model.domain_high
    if not bounded:  # a card without a training range: only NaN and infinities fail
        inputs = [{k: v for k, v in spec.items() if k not in ("min", "max")}
                  for spec in model.card["inputs"]]
        model = OnnxModel(BundleRef("m", 1, bundle.path), {**model.card, "inputs": inputs},
                          model._session)
        assert np.isinf(model.domain_low).all() and np.isinf(model.domain_high).all()
    rng = np.random.default_rng(0)
    edges = np.array([low, high, np.nextafter(low, -np.inf), np.nextafter(high, np.inf),
                      np.full(3, np.nan), np.full(3, np.inf), np.full(3, -np.inf)],
                     dtype=np.float32)  # fmt: skip
    for rows in range(1, 9):
        for _ in range(40):
            x = rng.uniform(low - 0.2 * (high - low), high + 0.2 * (high - low), (rows, 3))
            x = x.astype(np.float32)
            picks = rng.integers(0, len(edges), (rows, 3))
            mask = rng.random((rows, 3)) < 0.5
            x[mask] = edges[picks, np.arange(3)][mask]
            full = bool(np.isfinite(x).all() and not model.out_of_domain(x).any())
            assert model.plainly_inside(x) == full, x


@pytest.mark.parametrize("rows", [5, 1000, 2729, 2730, 2731, 6000])
def test_the_quick_check_finds_one_value_outside_anywhere_in_a_long_request(tmp_path, rows):
    """Long requests are compared flat against the bounds repeated over whole rows (2730 rows
    of 3 inputs at a time, then the rest): one value just outside, NaN or infinite, in the
    first row, the last, or either side of where a repeat ends, is found."""
    bundle = make_bundle(tmp_path, "m", n_inputs=3)
    model = OnnxModel.load(BundleRef("m", 1, bundle.path), Settings(model_repository=tmp_path),
                           [CPU])  # fmt: skip
    low, high = model.domain_low, model.domain_high
    x = np.random.default_rng(1).uniform(low, high, (rows, 3)).astype(np.float32)
    x[0], x[-1] = low, high  # the bounds themselves are inside
    assert model.plainly_inside(x)
    for row in {0, 2729 % rows, 2730 % rows, rows - 1}:
        for col, bad in enumerate([np.nextafter(low[0], -np.inf), np.nextafter(high[1], np.inf),
                                   np.nan, np.inf]):
            y = x.copy()
            y[row, col % 3] = bad
            assert not model.plainly_inside(y), (row, col, bad)


@pytest.mark.parametrize(("ranges", "proves"), [
    ([(2.0, 3.0), (10.0, 20.0)], True),     # holds neither 0 nor 1
    ([(0.25, 0.75), (-5.0, -1.0)], True),   # between them, and below both
    ([(0.0, 2.0), (10.0, 20.0)], False),    # holds 0 and 1
    ([(2.0, 3.0), (1.0, 1.5)], False),      # starts at 1
    ([(2.0, 3.0), (-0.5, 0.0)], False),     # ends at 0
    ([(2.0, 3.0), (1e19, 2e19)], False),    # reaches integers beyond 64 bits
    ([(2.0, 3.0), (10.0, None)], False),    # open: any size
])
def test_a_range_proves_inside_rows_plain_only_without_0_1_and_huge_values(tmp_path, ranges,
                                                                          proves):
    """``inside_proves_plain``: rows plainly inside can then hold no JSON true/false (read as
    1 and 0) and no integer of 2**63 or more, so the codecs need not look for them."""
    inputs = [{"name": f"x{i}", "unit": "m", "min": low, **({} if high is None else {"max": high})}
              for i, (low, high) in enumerate(ranges)]
    bundle = make_bundle(tmp_path, "m", n_inputs=2, card_overrides={"inputs": inputs})
    model = OnnxModel.load(BundleRef("m", 1, bundle.path), Settings(model_repository=tmp_path),
                           [CPU])  # fmt: skip
    assert model.inside_proves_plain is proves
