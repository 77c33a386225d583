"""The bench harness's own parts: the Python load generator's counting, and the report."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import load, report
from bench.scenarios import BARE, HELLO, NAIVE, OURS


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 500 if body == b"fail" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("body", "all_fail"), [(b"fine", False), (b"fail", True)])
def test_python_generator_counts_non_2xx_as_failures(url, body, all_fail):
    result = load.drive(load.Load(url, body), connections=2, seconds=0.3, tool="python")
    assert result.requests > 0
    assert result.failures == (result.requests if all_fail else 0)
    assert (result.rps == 0) == all_fail


def test_python_generator_counts_refused_connections():
    port = _closed_port()
    result = load.drive(load.Load(f"http://127.0.0.1:{port}/", b"x"), 1, 0.2, tool="python")
    assert result.requests > 0 and result.failures == result.requests


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _record(system, scenario, connections, rps, round_no=1, p50=1.0, p99=2.0, failures=0):
    return {"system": system, "scenario": scenario, "connections": connections, "rps": rps,
            "round": round_no, "p50_ms": p50, "p99_ms": p99, "failures": failures,
            "requests": 100}


def test_summary_takes_medians_over_rounds_and_sums_failures():
    records = [_record(OURS, "single_v2", 16, rps, i, failures=i)
               for i, rps in enumerate([100, 300, 200])]
    summary = report.summarise(records)[(OURS, "single_v2", 16)]
    assert summary["rps"] == 200 and summary["min"] == 100 and summary["max"] == 300
    assert summary["failures"] == 3 and summary["rounds"] == 3


def test_markdown_gives_ratios_against_the_peers_measured_in_the_same_run():
    records = [_record(OURS, "single_v2", 16, 3000), _record(HELLO, "single_v2", 16, 4000),
               _record(NAIVE, "single_v2", 16, 1500), _record(OURS, "rows1000_v2", 16, 900),
               _record(NAIVE, "rows1000_v2", 16, 300), _record(OURS, "binary100k", 1, 50)]
    text = report.markdown(report.summarise(records),
                           {"ort_rows_per_s_1_threads": 6_250_000.0}, [], {"when": "now"})
    single = next(line for line in text.splitlines() if line.startswith("| single-row V2"))
    assert "0.75x" in single and "2.00x" in single  # vs the ceiling, vs naive
    rows1000 = next(line for line in text.splitlines() if line.startswith("| 1000-row V2"))
    assert "3.00x" in rows1000 and "900,000" in rows1000
    binary = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert "5,000,000" in binary and "0.80x" in binary


def test_plan_runs_each_variant_of_ours_right_after_ours():
    from bench.scenarios import plan

    runs = plan((OURS, "ours-sync", HELLO), ("single_v2",), connections=64)
    assert [(r.system, r.connections) for r in runs] == [
        (HELLO, 64), (OURS, 64), ("ours-sync", 64), (HELLO, 1), (OURS, 1), ("ours-sync", 1)]


def test_every_run_reports_cpu_per_request_of_server_and_load_generator():
    records = [_record(OURS, "single_v2", 16, 3000) | {"server_cpu_us": cpu, "client_cpu_us": 40}
               for cpu in (500, 700, 600)]
    text = report.markdown(report.summarise(records), {}, [], {"when": "now"})
    run = next(line for line in text.splitlines()
               if line.startswith("| surrogate-serving | single-row V2 JSON | 16 |"))
    assert run.endswith("| 600 | 40.0 |")


def test_many_models_reports_memory_ready_time_and_latency_per_repository_size(tmp_path, capsys):
    from bench import many_models

    out = tmp_path / "many.md"
    many_models.main(["--counts", "3", "--workers", "1", "--workdir", str(tmp_path / "work"),
                      "--out", str(out)])
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert [int(row[0]) for row in rows] == [1, 3]
    assert len(list((tmp_path / "work" / "repo-3").glob("m*/1/model.onnx"))) == 3
    for row in rows:
        ready, rss, pss = float(row[1]), float(row[2]), float(row[3])
        assert 0 < ready < 120 and rss > pss > 0
        assert all(float(ms) > 0 for ms in row[5:8])  # p50, p99, jacobian p50
    assert rows[0][4].strip() == "nan" and float(rows[1][4]) == float(rows[1][4])  # a number
    assert out.read_text() == capsys.readouterr().out


def test_server_cpu_is_compared_with_the_bare_peer_for_every_json_scenario():
    cpu = {"client_cpu_us": 40}
    records = [_record(OURS, "single_v2", 16, 3000) | cpu | {"server_cpu_us": 330},
               _record(BARE, "single_v2", 16, 3600) | cpu | {"server_cpu_us": 300},
               _record(OURS, "rows1000_v2", 16, 1000) | cpu | {"server_cpu_us": 900},
               _record(BARE, "rows1000_v2", 16, 1100) | cpu | {"server_cpu_us": 800},
               _record(OURS, "rows1000_v1col", 16, 1200) | cpu | {"server_cpu_us": 750}]
    lines = report.markdown(report.summarise(records), {}, [], {"when": "now"}).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## Server CPU"))
    table = {line.split(" | ")[0][2:]: line for line in lines[start + 4:start + 7]}
    assert table["single-row V2 JSON"].endswith("| 330 | 300 | 1.10x | 1.10 | 1.00x |")
    assert table["1000-row V2 JSON"].endswith("| 900 | 800 | 1.12x | 1.12 | 1.00x |")
    assert table["1000-row V1 columnar JSON"].endswith("| 750 | 800 | 0.94x | 0.94 | 1.20x |")


def test_server_cpu_ratios_are_also_paired_round_by_round():
    """The medians of a drifting machine can mislead; each round's own ratio does not."""
    records = [_record(system, "single_v2", 16, 3000, round_no) | {"server_cpu_us": cpu}
               for round_no, (ours, bare) in enumerate([(600, 500), (900, 880), (640, 560)], 1)
               for system, cpu in ((OURS, ours), (BARE, bare))]
    lines = report.markdown(report.summarise(records), {}, [], {"when": "now"}).splitlines()
    row = next(line for line in lines if line.startswith("| single-row V2 JSON | 640 "))
    assert "| 640 | 560 | 1.14x | 1.20 / 1.02 / 1.14 |" in row


@pytest.mark.parametrize(("env", "lines"), [({}, 0), ({"SURROGATE_ACCESS_LOG": "true"}, 1)])
def test_hotpath_writes_the_access_line_only_when_it_is_measured(repo, caplog, env, lines):
    import json
    from types import SimpleNamespace

    from werkzeug.test import EnvironBuilder

    from bench.hotpath import _app, call
    from tests.v2 import json_request

    app = _app(SimpleNamespace(repository=repo), env)
    body = json.dumps(json_request([1.0, 2.0], [1, 2])).encode()
    environ = EnvironBuilder(path="/v2/models/linear/infer", method="POST", data=body,
                             content_type="application/json").get_environ()
    caplog.clear()
    assert call(app, environ, body) == 200
    assert len([r for r in caplog.records if r.name == "service.access"]) == lines


def test_paired_measures_ours_and_the_bare_peer_in_the_same_server(tmp_path, capsys):
    from bench import paired

    paired.main(["--rounds", "2", "--seconds", "0.5", "--workers", "1", "--threads", "2",
                 "--scenarios", "single_v1,rows1000_v2", "--workdir", str(tmp_path / "work")])
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    for label in ("single-row V1 JSON", "1000-row V2 JSON"):
        ours, bare, ratio, per_round = rows[label]
        assert float(ours) > 0 and float(bare) > 0
        assert len(per_round.split(" / ")) == 2
        assert abs(float(ratio) - float(ours) / float(bare)) < 0.5  # a median of ratios


def test_the_paired_app_answers_bare_paths_with_the_peer_and_the_rest_with_ours(repo,
                                                                                monkeypatch):
    import orjson
    from werkzeug.test import Client

    from bench.peers import paired

    monkeypatch.setenv("SURROGATE_MODEL_REPOSITORY", str(repo))
    monkeypatch.setenv("BENCH_ONNX", str(repo / "linear" / "1" / "model.onnx"))
    client = Client(paired.create_app())
    body = orjson.dumps({"inputs": [{"name": "inputs", "shape": [1, 2], "datatype": "FP32",
                                     "data": [1.0, 2.0]}]})
    headers = {"Content-Type": "application/json"}
    ours = client.post("/v2/models/linear/infer", data=body, headers=headers)
    bare = client.post("/bare/v2/models/linear/infer", data=body, headers=headers)
    assert ours.status_code == bare.status_code == 200
    assert "X-Request-ID" in ours.headers and "X-Request-ID" not in bare.headers
    answers = [orjson.loads(r.data)["outputs"][0]["data"] for r in (ours, bare)]
    assert answers[0] == answers[1]
