"""``python -m bench.hotpath``: our service's per-request CPU cost in-process, and where it goes.

Calls the WSGI app directly with prepared environs (no sockets, no gunicorn, no test client), so
the figures are the application's own work per request: decode, validate, run, encode. With
``--profile`` each scenario also runs under cProfile and prints its costliest functions.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path

from bench.models import Models, build
from bench.scenarios import OURS, load_for

SCENARIOS = ("single_v2", "single_v1", "rows1000_v2", "rows1000_v1", "rows1000_v1col",
             "binary100k")
RESULTS = Path(__file__).with_name("results")


def environ_for(one, app_url: str = "http://bench") -> dict:
    """A WSGI environ of ``one`` (a bench Load), input stream excluded."""
    from werkzeug.test import EnvironBuilder

    path = one.url.split("://", 1)[1].split("/", 1)[1]
    builder = EnvironBuilder(path="/" + path, base_url=app_url, method="POST",
                             headers=dict(one.headers), data=one.body)
    try:
        return builder.get_environ()
    finally:
        builder.close()


def call(app, environ: dict, body: bytes) -> int:
    """One request through ``app``; the status code."""
    status = []
    env = dict(environ, **{"wsgi.input": io.BytesIO(body)})
    chunks = app(env, lambda s, h, exc_info=None: status.append(s))
    for _ in chunks:
        pass
    getattr(chunks, "close", lambda: None)()
    return int(status[0].split()[0])


def measure(app, environ: dict, body: bytes, seconds: float) -> tuple[float, int]:
    """Median microseconds per request over ``seconds`` of back-to-back requests."""
    times, stop = [], time.perf_counter() + seconds
    while time.perf_counter() < stop or len(times) < 5:
        started = time.process_time()
        code = call(app, environ, body)
        times.append(time.process_time() - started)
        if code != 200:
            raise RuntimeError(f"status {code}")
    times.sort()
    return times[len(times) // 2] * 1e6, len(times)


def profile(app, environ: dict, body: bytes, n: int, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call(app, environ, body)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="a SURROGATE_* setting for the app, e.g. SURROGATE_ACCESS_LOG=false")
    args = p.parse_args(argv)
    models: Models = build(RESULTS / "work")
    app = _app(models, dict(kv.split("=", 1) for kv in args.env))
    for scenario in args.scenarios.split(","):
        one = load_for(OURS, scenario, "http://bench", models)
        environ = environ_for(one)
        us, n = measure(app, environ, one.body, args.seconds)
        print(f"{scenario:12} {us:10.1f} us CPU per request (median of {n})")
        if args.profile:
            print(profile(app, environ, one.body, max(20, min(n, 3000)), args.top))


def _app(models: Models, env: dict[str, str]):
    from service import create_app
    from service.settings import Settings

    environ = {"SURROGATE_MODEL_REPOSITORY": str(models.repository),
               "SURROGATE_ACCESS_LOG": "false", "SURROGATE_LOG_LEVEL": "WARNING", **env}
    settings = Settings.from_env(environ)
    if settings.access_log and "SURROGATE_LOG_LEVEL" not in env:
        # Measured, the access line must be written: at WARNING it is dropped unformatted.
        settings = Settings.from_env({**environ, "SURROGATE_LOG_LEVEL": "INFO"})
    return create_app(settings)


if __name__ == "__main__":
    main()
