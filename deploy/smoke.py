"""Smoke-check a running V2 inference server that serves the demo models.

``python3 deploy/smoke.py http://127.0.0.1:8080 [--timeout 120] [--metrics]`` waits (bounded) for
``/v2/health/ready``, then sends V2 JSON inference requests: borehole predictions are compared
with the borehole formula, thermal_actuator must answer finite numbers of shape [n, 2]. With
``--metrics`` it also expects Prometheus text at ``/metrics``. Standard library only, so it runs
on a bare CI host; the requests are plain V2, so it checks Triton serving the same repository too.
Exits non-zero with one line per failed check; prints the seconds until the server was ready.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import urllib.error
import urllib.request

# The borehole function's inputs in model order, with their training ranges (training/functions.py).
BOREHOLE = {
    "rw": (0.05, 0.15),
    "r": (100.0, 50_000.0),
    "Tu": (63_070.0, 115_600.0),
    "Hu": (990.0, 1110.0),
    "Tl": (63.1, 116.0),
    "Hl": (700.0, 820.0),
    "L": (1120.0, 1680.0),
    "Kw": (9855.0, 12_045.0),
}
RELATIVE_TOLERANCE = 0.05


def borehole(rw, r, Tu, Hu, Tl, Hl, L, Kw):
    log_ratio = math.log(r / rw)
    return (
        2
        * math.pi
        * Tu
        * (Hu - Hl)
        / (log_ratio * (1 + 2 * L * Tu / (log_ratio * rw**2 * Kw) + Tu / Tl))
    )


def request(url: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(base: str, timeout: float) -> float:
    """Seconds until /v2/health/ready answered 200; SystemExit when the deadline passes."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout:
        try:
            status, _ = request(f"{base}/v2/health/ready", timeout=2.0)
            if status == 200:
                return time.monotonic() - start
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.2)
    raise SystemExit(f"FAIL: {base}/v2/health/ready not ready after {timeout:.0f} s ({last})")


def infer(base: str, model: str, rows: list[list[float]]) -> tuple[list[int], list[float]]:
    body = {
        "inputs": [
            {
                "name": "inputs",
                "datatype": "FP32",
                "shape": [len(rows), len(rows[0])],
                "data": [x for row in rows for x in row],
            }
        ]
    }
    status, raw = request(f"{base}/v2/models/{model}/infer", body)
    if status != 200:
        raise AssertionError(f"{model}: infer answered HTTP {status}: {raw[:300]!r}")
    outputs = {o["name"]: o for o in json.loads(raw)["outputs"]}
    if "outputs" not in outputs:
        raise AssertionError(f"{model}: no tensor named 'outputs' in {sorted(outputs)}")
    return outputs["outputs"]["shape"], outputs["outputs"]["data"]


def check_borehole(base: str) -> str:
    rng = random.Random(0)
    # The inner 80% of the training box: the held-out error near the corners is no test of
    # the image, and the formula's extremes are where a small MLP is least accurate.
    rows = [
        [lo + (hi - lo) * rng.uniform(0.1, 0.9) for lo, hi in BOREHOLE.values()] for _ in range(32)
    ]
    shape, data = infer(base, "borehole", rows)
    if shape != [len(rows), 1] or len(data) != len(rows):
        raise AssertionError(f"borehole: shape {shape}, expected [{len(rows)}, 1]")
    errors = [abs(y - borehole(*row)) / borehole(*row) for row, y in zip(rows, data, strict=True)]
    if not max(errors) <= RELATIVE_TOLERANCE:
        raise AssertionError(
            f"borehole: max relative error {max(errors):.3g} vs the formula "
            f"(limit {RELATIVE_TOLERANCE})"
        )
    return f"borehole: {len(rows)} predictions within {max(errors):.2%} of the formula"


def check_thermal_actuator(base: str) -> str:
    rows = [[1.0, 100.0], [3.0, 200.0], [5.0, 300.0]]
    shape, data = infer(base, "thermal_actuator", rows)
    if shape != [3, 2] or len(data) != 6 or not all(math.isfinite(x) for x in data):
        raise AssertionError(
            f"thermal_actuator: shape {shape}, data {data}; "
            "expected 6 finite numbers of shape [3, 2]"
        )
    return "thermal_actuator: finite [3, 2] answer"


def check_metrics(base: str) -> str:
    status, raw = request(f"{base}/metrics")
    if status != 200 or b"# TYPE" not in raw:
        raise AssertionError(f"/metrics answered HTTP {status} without Prometheus text")
    return f"/metrics: {len(raw.splitlines())} lines of Prometheus text"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--timeout", type=float, default=120.0, help="readiness deadline (s)")
    parser.add_argument("--metrics", action="store_true", help="also check /metrics")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    print(f"ready after {wait_ready(base, args.timeout):.2f} s")
    checks = [check_borehole, check_thermal_actuator] + ([check_metrics] if args.metrics else [])
    failures = 0
    for check in checks:
        try:
            print(f"ok   {check(base)}")
        except (AssertionError, OSError, ValueError, KeyError) as exc:
            failures += 1
            print(f"FAIL {exc}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
