"""A bounded soak under a real gunicorn: mixed requests at 32 connections, no error, flat memory.

The short version of ``python -m bench.soak --minutes 10 --connections 32`` (same mix, same load
generator, same checks), marked ``slow``: ``pytest -m "not slow"`` leaves it out, the default run
keeps it. An error is a 5xx, any status other than the expected one (the bad requests of the mix
must get their 4xx), a socket error or timeout, or a body unlike the one the same request got
before the load; memory is flat when each worker's mean RSS over the last third of the run is
within ``bench.soak.FLAT_MARGIN_MIB`` of its mean over the first third, after a warm-up.
"""

from __future__ import annotations

import pytest

from bench.soak import FLAT_MARGIN_MIB, memory_growth, mixed_calls, problems, soak, summary
from tests.bundles import make_bundle
from tests.e2e.server import running_server

SECONDS = 40.0
WARMUP_SECONDS = 10.0
CONNECTIONS = 32


@pytest.mark.slow
def test_soak_mixed_requests_no_errors_flat_memory(tmp_path):
    repo = tmp_path / "models"
    linear = make_bundle(repo, "linear")
    make_bundle(repo, "wide", n_inputs=3, n_outputs=2)
    calls = mixed_calls("linear", linear.card)
    with running_server(repo, tmp_path / "server.log", workers=2) as server:
        workers = server.workers()
        outcomes, samples, since = soak(server.url, server.process.pid, calls, SECONDS,
                                        CONNECTIONS, WARMUP_SECONDS)
        assert server.workers() == workers, server.log()  # none died or was replaced

    assert problems(outcomes) == [], problems(outcomes)[:10]
    counts = {call.kind: sum(o.kind == call.kind for o in outcomes) for call in calls}
    assert min(counts.values()) > 0, counts
    growth = memory_growth(samples, since)
    assert growth.keys() == workers, growth
    for pid, (first, last) in growth.items():
        assert last - first <= FLAT_MARGIN_MIB, (pid, first, last)
    report = summary(outcomes, samples, since, {"title": "test"})
    assert f"| all | {len(outcomes)} | 0 |" in report, report
    assert all(f"| {pid} |" in report for pid in workers), report
