"""Dynamic batching over a real ONNX Runtime session, from many threads at once.

Long delays with ``max_rows`` equal to the rows the test sends make a batch run exactly when the
last request joins it, so the batching itself is asserted without timing. ``WAIT`` only bounds
how long a broken batcher could hang a test.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.batching import Batcher
from service.devices import CPU
from service.repository import BundleRef
from service.runtime import OnnxModel
from service.settings import Settings
from tests.bundles import make_bundle

WAIT = 30.0
MAIN = ("outputs",)
BOTH = ("outputs", "jacobian")


class CountingRun:
    """``OnnxModel.run``, recording the row count of every call."""

    def __init__(self, model: OnnxModel):
        self.model, self.rows, self._lock = model, [], threading.Lock()

    def __call__(self, x, names):
        with self._lock:
            self.rows.append(len(x))
        return self.model.run(x, names)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> OnnxModel:
    bundle = make_bundle(tmp_path_factory.mktemp("models"), "m", n_inputs=3, n_outputs=2,
                         jacobian=True)
    return OnnxModel.load(BundleRef("m", 1, bundle.path), Settings(), [CPU])


def rows_of(request: int, n: int) -> np.ndarray:
    """``n`` rows no other request has: the request number is in every value."""
    base = np.arange(n * 3, dtype=np.float32).reshape(n, 3) / 100
    return base + np.float32(request)


def submit_all(batcher: Batcher, inputs: list[np.ndarray], names=MAIN) -> list:
    """Submit every input from its own thread at once; the results (or errors) in order."""
    def call(x):
        try:
            return batcher.submit(x, names)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(inputs)) as pool:
        futures = [pool.submit(call, x) for x in inputs]
        return [f.result(timeout=WAIT) for f in futures]


def assert_same(result, expected):
    assert len(result) == len(expected)
    for got, want in zip(result, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_full_batch_runs_once_and_each_caller_gets_its_own_rows(model):
    run = CountingRun(model)
    inputs = [rows_of(i, n) for i, n in enumerate([1, 3, 2, 1, 4, 1, 2, 2])]
    batcher = Batcher(run, max_delay_s=WAIT, max_rows=sum(len(x) for x in inputs))
    results = submit_all(batcher, inputs, BOTH)
    assert run.rows == [16]
    for x, result in zip(inputs, results, strict=True):
        assert result[1].shape == (len(x), 2, 3)  # the jacobian is split by rows too
        assert_same(result, model.run(x, BOTH))


def test_many_threads_many_requests_every_answer_is_exact(model):
    run = CountingRun(model)
    batcher = Batcher(run, max_delay_s=0.002, max_rows=64)
    rng = np.random.default_rng(0)
    inputs = [rows_of(i, int(rng.integers(1, 6))) for i in range(400)]
    names = [BOTH if i % 3 == 0 else MAIN for i in range(400)]

    def call(i):
        return batcher.submit(inputs[i], names[i])

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(400), timeout=WAIT))
    for x, wanted, result in zip(inputs, names, results, strict=True):
        assert_same(result, model.run(x, wanted))
    assert sum(run.rows) == sum(len(x) for x in inputs)  # every row ran exactly once
    assert len(run.rows) < 400  # and some ran together


def test_requests_for_different_outputs_are_not_mixed(model):
    run = CountingRun(model)
    batcher = Batcher(run, max_delay_s=WAIT, max_rows=4)
    inputs = [rows_of(i, 2) for i in range(4)]

    def call(i):
        return batcher.submit(inputs[i], MAIN if i % 2 else BOTH)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(4), timeout=WAIT))
    assert run.rows == [4, 4]
    for i, result in enumerate(results):
        assert_same(result, model.run(inputs[i], MAIN if i % 2 else BOTH))


def test_a_bad_request_fails_alone_and_its_batch_mates_succeed(model):
    run = CountingRun(model)
    good = [rows_of(i, 2) for i in range(3)]
    bad = np.ones((2, 5), dtype=np.float32)  # 5 columns: the model takes 3
    batcher = Batcher(run, max_delay_s=WAIT, max_rows=8)
    results = submit_all(batcher, [good[0], bad, good[1], good[2]])
    assert isinstance(results[1], Exception)
    for x, result in zip(good, [results[0], *results[2:]], strict=True):
        assert_same(result, model.run(x, MAIN))
    assert sorted(run.rows) == [2, 2, 2, 2]  # the combined input failed: each ran alone


def test_a_run_that_fails_for_the_whole_batch_is_retried_per_request(model):
    calls = []

    def flaky(x, names):
        calls.append(len(x))
        if len(x) > 1:
            raise RuntimeError("too big for this device")
        return model.run(x, names)

    inputs = [rows_of(i, 1) for i in range(3)]
    results = submit_all(Batcher(flaky, max_delay_s=WAIT, max_rows=3), inputs)
    assert calls == [3, 1, 1, 1]
    for x, result in zip(inputs, results, strict=True):
        assert_same(result, model.run(x, MAIN))


def test_a_request_of_max_rows_or_more_runs_alone_at_once(model):
    run = CountingRun(model)
    batcher = Batcher(run, max_delay_s=3600, max_rows=4)
    x = rows_of(7, 10)
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(batcher.submit, x, MAIN).result(timeout=WAIT)
    assert run.rows == [10]
    assert_same(result, model.run(x, MAIN))


def test_a_request_that_would_overflow_the_batch_sends_it_on(model):
    run = CountingRun(model)
    batcher = Batcher(run, max_delay_s=3600, max_rows=5)
    first, second = rows_of(1, 3), rows_of(2, 3)
    with ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(batcher.submit, first, MAIN)
        wait_until(lambda: batcher.waiting == 1)
        later = pool.submit(batcher.submit, second, MAIN)
        assert_same(waiting.result(timeout=WAIT), model.run(first, MAIN))
        assert run.rows == [3]
        batcher.close()
        assert_same(later.result(timeout=WAIT), model.run(second, MAIN))
    assert run.rows == [3, 3]


def wait_until(condition) -> None:
    """Poll ``condition`` (a state another thread reaches) until true, failing after WAIT."""
    deadline = threading.Event()
    timer = threading.Timer(WAIT, deadline.set)
    timer.start()
    try:
        while not condition():
            assert not deadline.wait(0.001), "condition not reached"
    finally:
        timer.cancel()


def test_close_runs_waiting_batches_and_later_requests_run_unbatched(model):
    run = CountingRun(model)
    batcher = Batcher(run, max_delay_s=3600, max_rows=1000)
    inputs = [rows_of(i, 1) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(batcher.submit, x, MAIN) for x in inputs]
        wait_until(lambda: batcher.waiting == 6)
        batcher.close()
        results = [f.result(timeout=WAIT) for f in futures]
    assert run.rows == [6]
    for x, result in zip(inputs, results, strict=True):
        assert_same(result, model.run(x, MAIN))
    assert_same(batcher.submit(inputs[0], MAIN), model.run(inputs[0], MAIN))
    assert run.rows == [6, 1]


def test_zero_delay_never_batches(model):
    run = CountingRun(model)
    inputs = [rows_of(i, 1) for i in range(8)]
    results = submit_all(Batcher(run, max_delay_s=0, max_rows=1000), inputs)
    assert run.rows == [1] * 8
    for x, result in zip(inputs, results, strict=True):
        assert_same(result, model.run(x, MAIN))


@pytest.mark.parametrize(("delay", "rows", "match"), [(-1, 8, "max_delay_s"), (0.1, 0, "max_rows")])
def test_bad_settings_are_refused(delay, rows, match):
    with pytest.raises(ValueError, match=match):
        Batcher(lambda x, names: [x], delay, rows)


def test_dynamic_batching_through_the_app(tmp_path):
    """With SURROGATE_BATCH_DELAY_MS set, concurrent V2 requests each get their own rows."""
    from service import create_app

    bundle = make_bundle(tmp_path, "lin", n_inputs=2, n_outputs=1)
    app = create_app(Settings(model_repository=tmp_path, batch_delay_ms=20, access_log=False))
    model = app.extensions["surrogate.registry"].get("lin")
    assert model._batcher is not None

    def ask(i: int):
        x = [[i / 100, 1.0 - i / 100]]
        body = {"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32", "data": x}]}
        response = app.test_client().post("/v2/models/lin/infer", json=body)
        return x, response.get_json()["outputs"][0]["data"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(64)))
    for x, data in answers:
        np.testing.assert_allclose(data, bundle.predict(x).ravel(), rtol=1e-6)


@pytest.mark.parametrize("action", ["unload", "replace"])
def test_a_version_leaving_service_runs_its_waiting_batch_at_once(tmp_path, action):
    """An hour of batch delay: the request waiting in the batch returns as soon as its version
    is unloaded, or replaced by a new bundle in its directory, not an hour later."""
    from service.registry import ModelRegistry

    bundle = make_bundle(tmp_path, "lin", n_inputs=2, n_outputs=1)
    settings = Settings(model_repository=tmp_path, batch_delay_ms=3_600_000, batch_max_rows=100,
                        warmup=False)
    registry = ModelRegistry.from_settings(settings)
    model = registry.get("lin")
    x = np.array([[0.25, 0.5]], dtype=np.float32)
    answers = []
    # A daemon thread: if the batch kept waiting, the test fails after WAIT instead of hanging.
    waiting = threading.Thread(target=lambda: answers.append(model.run(x)), daemon=True)
    waiting.start()
    wait_until(lambda: model._batcher.waiting == 1)
    if action == "unload":
        registry.unload("lin")
    else:
        # version 1 rewritten with other weights
        make_bundle(tmp_path, "lin", n_inputs=2, n_outputs=1, weights=([[2.0], [3.0]], [1.0]))
        registry.load("lin")
        assert registry.get("lin") is not model
    waiting.join(WAIT)
    assert answers, "the waiting request did not return when its version left service"
    np.testing.assert_allclose(answers[0][0], bundle.predict(x), rtol=1e-6)
    # Requests still reaching the retired version run at once, unbatched.
    np.testing.assert_allclose(model.run(x)[0], bundle.predict(x), rtol=1e-6)
