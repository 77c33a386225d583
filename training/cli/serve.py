"""``surrogate serve``: run the service under gunicorn with ``service.gunicorn_config``.

Each option is taken from its flag, else its environment variable, else ``--config``, else its
default; the command exports the result as ``SURROGATE_*`` variables, checks them as gunicorn's
config and every worker will read them (``service.settings``: ``ServerSettings`` and
``Settings``, and the device's provider, ``service.devices``), so that a bad value stops the
start with one line rather than in every worker, and replaces itself with gunicorn, so Ctrl-C
and SIGTERM reach the gunicorn master directly (SIGTERM drains in-flight requests). Only the
serving install is needed: nothing here imports scikit-learn, scipy or onnx.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from service.settings import DEVICES
from training.cli.common import CliError, CliUsageError, load_config

APP = "service:create_app()"
CONFIG = "python:service.gunicorn_config"


@click.command()
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=load_config, help="TOML file with the same keys as these flags; flags win.")
@click.option("--repo", default="models", show_default=True, envvar="SURROGATE_MODEL_REPOSITORY",
              type=click.Path(exists=True, file_okay=False), help="Model repository to serve.")
@click.option("--bind", envvar="SURROGATE_BIND", default=None,
              help="HOST:PORT to listen on [default: 0.0.0.0:$PORT if PORT is set, "
                   "else 127.0.0.1:8000].")
@click.option("--workers", envvar="SURROGATE_WORKERS", type=click.IntRange(min=1), default=None,
              help="Worker processes [default: usable CPUs, clamped to 2..4].")
@click.option("--threads", envvar="SURROGATE_THREADS", type=click.IntRange(min=1), default=None,
              help="Request threads per worker [default: 4].")
@click.option("--device", envvar="SURROGATE_DEVICE", default=None,
              type=click.Choice(DEVICES),
              help="ONNX Runtime device; auto uses CUDA when its provider is available "
                   "[default: cpu].")
@click.option("--intra-op-threads", envvar="SURROGATE_INTRA_OP_THREADS",
              type=click.IntRange(min=0), default=None,
              help="ONNX Runtime threads per operator, 0 = all cores [default: 1].")
def serve(repo, bind, workers, threads, device, intra_op_threads) -> None:
    """Serve a model repository over the V2 inference protocol, under gunicorn."""
    settings = {
        "SURROGATE_MODEL_REPOSITORY": str(Path(repo).resolve()),
        "SURROGATE_BIND": bind,
        "SURROGATE_WORKERS": workers,
        "SURROGATE_THREADS": threads,
        "SURROGATE_DEVICE": device,
        "SURROGATE_INTRA_OP_THREADS": intra_op_threads,
    }
    os.environ.update({name: str(value) for name, value in settings.items() if value is not None})
    _check(os.environ)
    argv = [sys.executable, "-m", "gunicorn", "-c", CONFIG, APP]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def _check(environ) -> None:
    """Refuse, in one line, what gunicorn's config or the workers would refuse after the start."""
    from service.settings import ConfigurationError, DeviceUnavailable, ServerSettings, Settings

    try:
        ServerSettings.from_env(environ)
        settings = Settings.from_env(environ)
        if settings.device != "cpu":
            import onnxruntime

            from service.devices import select_providers

            select_providers(settings.device, onnxruntime.get_available_providers())
    except DeviceUnavailable as exc:  # the machine, not the command line: a failure
        raise CliError(str(exc)) from None
    except ConfigurationError as exc:
        raise CliUsageError(str(exc)) from None
