"""The model browser in a real browser: Debian's chromium, headless, driven through chromedriver
(Selenium) against `surrogate serve` under gunicorn. Screenshots of the pages are written to
``test-artifacts/ui/`` at the repository root.

The repository: a thermal-actuator model (the demo's inputs, outputs and units, a short fit), an
ensemble, a model whose description is HTML meant to run, and a broken bundle.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.e2e.browser import css, screenshot, wait_for_model_list, wait_in
from tests.e2e.server import running_server
from training.bundle import write_bundle
from training.ensemble import SurrogateEnsemble
from training.estimator import SurrogateMLP
from training.functions import FUNCTIONS

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 2"> & done'
THERMAL = FUNCTIONS["thermal_actuator"]


def _publish(repo: Path, name: str, model, fn, X, description: str = "") -> None:
    """A bundle as `surrogate train` writes one: the card, and its two plots."""
    from training.ensemble import members
    from training.report import convergence_png, parity_png

    inputs = [{"name": n, "unit": u, "min": lo, "max": hi} for n, u, lo, hi in fn.inputs]
    outputs = [{"name": n, "unit": u} for n, u in fn.outputs]
    y = fn(X)
    model.fit(X, y)
    names = [o["name"] for o in outputs]
    plots = {"parity.png": parity_png(y, model.predict(X), names, name),
             "convergence.png": convergence_png(members(model)[0].loss_curve_, [], name)}
    write_bundle(model, repo, name, inputs=inputs, outputs=outputs,
                 metrics={"split": "cv", "per_output": {n: {"relative_rmse": 0.01}
                                                        for n in names}},
                 training_info={}, description=description, extra_files=plots)  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("ui-repo")
    X = THERMAL.sample(200, seed=0)
    small = {"hidden_layer_sizes": (8, 8), "solver": "adam", "max_iter": 50, "random_state": 0}
    _publish(repo, "thermal_actuator", SurrogateMLP(**small), THERMAL, X,
             "Electrothermal actuator: two inputs, two outputs.")
    _publish(repo, "ensemble", SurrogateEnsemble(SurrogateMLP(**small), n_members=2,
                                                 random_state=0), THERMAL, X)  # fmt: skip
    _publish(repo, "hostile", SurrogateMLP(**small), THERMAL, X, HOSTILE)
    broken = repo / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.json").write_text('{"inputs": [', encoding="utf-8")
    return repo


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    with running_server(repo, tmp_path_factory.mktemp("log") / "server.log") as server:
        yield server


def _open_model(browser, server, name: str) -> None:
    browser.get(f"{server.url}/ui/models/{name}")
    wait_in(browser, lambda b: css(b, "#prediction tbody tr[data-output]")
          and css(b, "#curve circle"), f"the {name} page")  # fmt: skip


def _set_input(browser, kind: str, name: str, value: float) -> None:
    """Move a slider (``range``) or type in a number box (``number``), as a user does: the
    value changes and the element fires ``input``."""
    browser.execute_script(
        "const box = document.querySelector(`#controls input[type=${arguments[0]}]"
        "[data-input='${arguments[1]}']`); box.value = arguments[2];"
        "box.dispatchEvent(new Event('input', {bubbles: true}));", kind, name, str(value))


def _shown(browser) -> dict[str, float]:
    """The shown prediction, read in one go (the page rebuilds the table as it updates)."""
    return browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll("
        "'#prediction tbody tr[data-output]')].map((row) => [row.dataset.output,"
        " Number(row.querySelector('.value').dataset.value)]))")


def _v2(server, name: str, row: list[float]) -> np.ndarray:
    body = {"inputs": [{"name": "inputs", "shape": [1, len(row)], "datatype": "FP32",
                        "data": row}]}
    answer = requests.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return np.array(answer.json()["outputs"][0]["data"])


def test_root_sends_browsers_to_the_index_which_lists_every_model(browser, server):
    browser.get(server.url + "/")
    wait_for_model_list(browser)
    assert browser.current_url == server.url + "/ui/"
    rows = {row.get_attribute("data-model"): row.text for row in css(browser, "#models tbody tr")}
    assert set(rows) == {"thermal_actuator", "ensemble", "hostile", "broken"}
    assert "READY" in rows["thermal_actuator"] and "V [V] 1 .. 5" in rows["thermal_actuator"]
    assert "UNAVAILABLE" in rows["broken"] and "model.json is not valid JSON" in rows["broken"]
    assert requests.get(server.url + "/", timeout=5).json() == {"status": "alive"}  # probes
    screenshot(browser, "index")


def test_moving_a_slider_shows_what_the_v2_endpoint_returns(browser, server):
    _open_model(browser, server, "thermal_actuator")
    (low_v, high_v), (low_l, high_l) = [(lo, hi) for _, _, lo, hi in THERMAL.inputs]
    before = _shown(browser)
    moved = low_v + 0.8 * (high_v - low_v)
    _set_input(browser, "range", "V", moved)
    wait_in(browser, lambda b: _shown(b) != before, "the prediction after the slider moved")
    number = css(browser, "#controls input[type=number][data-input='V']")[0]
    shown_v = float(number.get_attribute("value"))
    assert shown_v == pytest.approx(moved, rel=1e-3)  # the slider's step
    expected = _v2(server, "thermal_actuator", [shown_v, (low_l + high_l) / 2])
    got = _shown(browser)
    assert [got["displacement"], got["T_max"]] == pytest.approx(list(expected), rel=1e-6)
    assert not css(browser, "#domain-warning")[0].is_displayed()
    screenshot(browser, "model-thermal_actuator")


def test_the_response_curve_is_the_v1_predictions(browser, server):
    _open_model(browser, server, "thermal_actuator")
    curve = browser.execute_script(
        "const svg = document.getElementById('curve'); return {...svg.dataset, points:"
        " [...svg.querySelectorAll('circle')].map((c) => [c.dataset.x, c.dataset.y]),"
        " declared: svg.dataset.points}")
    assert int(curve["declared"]) == len(curve["points"]) == 61
    assert (curve["input"], curve["output"]) == ("V", "displacement")
    xs = [float(x) for x, _ in curve["points"]]
    ys = [float(y) for _, y in curve["points"]]
    held = [float(b.get_attribute("value"))
            for b in css(browser, "#controls input[type=number]")][1]  # fmt: skip
    body = {"inputs": {"V": xs, "L": [held] * len(xs)}}
    answer = requests.post(f"{server.url}/v1/models/thermal_actuator:predict", json=body,
                           timeout=10)  # fmt: skip
    assert ys == pytest.approx(answer.json()["outputs"]["displacement"], rel=1e-6)
    low, high = THERMAL.inputs[0][2:]
    assert min(xs) < low and max(xs) > high  # past the range, which the band marks
    band = css(browser, "#curve rect.training")[0]
    assert float(band.get_attribute("width")) > 0


def test_an_input_past_its_range_shows_the_domain_warning(browser, server):
    _open_model(browser, server, "thermal_actuator")
    high = THERMAL.inputs[1][3]
    _set_input(browser, "number", "L", high * 1.5)
    wait_in(browser, lambda b: css(b, "#domain-warning")[0].is_displayed(), "the domain warning")
    warning = css(browser, "#domain-warning")[0].text
    assert "Outside the training range: L (trained on" in warning
    box = css(browser, "#controls input[type=number][data-input='L']")[0]
    assert "outside" in box.get_attribute("class")
    _set_input(browser, "number", "L", high * 0.9)
    wait_in(browser, lambda b: not css(b, "#domain-warning")[0].is_displayed(), "no warning")


def test_an_ensemble_shows_its_spread_and_the_map(browser, server):
    _open_model(browser, server, "ensemble")
    stds = css(browser, "#prediction tbody td.std")
    assert stds and all(cell.is_displayed() and float(cell.text) >= 0 for cell in stds)
    assert css(browser, "#curve polygon.band")
    wait_in(browser, lambda b: css(b, "#map")[0].get_attribute("data-cells"), "the map")
    canvas = css(browser, "#map")[0]
    assert int(canvas.get_attribute("data-cells")) == 32 * 32
    assert float(canvas.get_attribute("data-min")) < float(canvas.get_attribute("data-max"))
    screenshot(browser, "model-ensemble")


def test_card_text_is_shown_as_text_and_never_runs(browser, server):
    _open_model(browser, server, "hostile")
    assert css(browser, "#description")[0].text == HOSTILE
    assert browser.execute_script("return window.__xss === undefined")
    assert not css(browser, "#description img, #description script")
    browser.get(f"{server.url}/ui/")
    wait_for_model_list(browser)
    assert browser.execute_script("return window.__xss === undefined")


def test_pages_send_a_strict_policy_and_hold_no_inline_script(server):
    for path in ("/ui/", "/ui/models/thermal_actuator"):
        page = requests.get(server.url + path, timeout=5)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
        assert scripts and all('src="/ui/static/' in attrs and not body.strip()
                               for attrs, body in scripts)  # fmt: skip
        assert not re.search(r"\son[a-z]+\s*=", page.text)  # no inline handlers
        assert not re.search(r"https?://", page.text)  # nothing from another origin
    assert requests.get(server.url + "/ui/static/app.js", timeout=5).status_code == 200
    assert requests.get(server.url + "/ui/static/app.html", timeout=5).status_code == 404


def test_plots_come_from_the_bundle_only(browser, server):
    answer = requests.get(f"{server.url}/ui/plots/thermal_actuator/1/parity.png", timeout=5)
    assert answer.status_code == 200 and answer.content[:4] == b"\x89PNG"
    _open_model(browser, server, "thermal_actuator")
    wait_in(browser, lambda b: css(b, "#parity")[0].get_attribute("naturalWidth") not in
          (None, "0"), "the parity plot")  # fmt: skip
    assert css(browser, "#parity")[0].get_attribute("src").startswith("blob:")
    for path, status in (("thermal_actuator/1/model.json", 404),
                         ("thermal_actuator/1/..%2Fmodel.json", 404),
                         ("thermal_actuator/9/parity.png", 404), ("broken/1/parity.png", 503)):
        answer = requests.get(f"{server.url}/ui/plots/{path}", timeout=5)
        assert answer.status_code == status and "error" in answer.json(), path


def test_with_an_api_key_the_page_asks_for_it_and_keeps_it_in_the_tab(browser, repo, tmp_path):
    with running_server(repo, tmp_path / "server.log", workers=1,
                        env={"SURROGATE_API_KEY": "s3cret"}) as server:  # fmt: skip
        assert requests.get(server.url + "/v1/models", timeout=5).status_code == 401
        assert requests.get(server.url + "/ui/plots/thermal_actuator/1/parity.png",
                            timeout=5).status_code == 401  # fmt: skip
        browser.get(server.url + "/ui/")
        wait_in(browser, lambda b: css(b, "#key-panel")[0].is_displayed(), "the key prompt")
        css(browser, "#key-input")[0].send_keys("s3cret")
        css(browser, "#key-form button")[0].click()
        wait_for_model_list(browser, "the models")
        assert browser.execute_script("return sessionStorage.getItem('surrogate-api-key')") \
            == "s3cret"
        assert browser.execute_script("return localStorage.length") == 0
        _open_model(browser, server, "thermal_actuator")  # the same tab keeps the key
        browser.execute_script("sessionStorage.clear()")


def test_the_browser_is_off_with_surrogate_ui_false(repo, tmp_path):
    with running_server(repo, tmp_path / "server.log", workers=1,
                        env={"SURROGATE_UI": "false"}) as server:  # fmt: skip
        assert requests.get(server.url + "/ui/", timeout=5).status_code == 404
        root = requests.get(server.url + "/", headers={"Accept": "text/html"}, timeout=5,
                            allow_redirects=False)  # fmt: skip
        assert root.status_code == 200 and root.json() == {"status": "alive"}
