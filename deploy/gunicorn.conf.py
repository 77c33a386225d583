"""Gunicorn settings for containers: ``gunicorn -c deploy/gunicorn.conf.py 'service:create_app()'``.

Every setting and hook lives in ``service.gunicorn_config``, which ships with the serving
install and documents the ``SURROGATE_*`` variables; this file re-exports it so that containers
and ``surrogate serve`` cannot drift apart.
"""

from service.gunicorn_config import *  # noqa: F403
