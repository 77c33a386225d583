"""Shared fixtures: a model repository in ``tmp_path`` -> ``app`` -> ``client``.

``make_bundle`` (from ``tests.bundles``) writes real ONNX bundles; use it directly or through the
``repo`` fixture, which already holds two models: ``linear`` (2 inputs, 1 output) and ``wide``
(3 inputs, 2 outputs).
"""

from __future__ import annotations

import pytest

from tests.bundles import Bundle, make_bundle


@pytest.fixture
def bundles(tmp_path) -> dict[str, Bundle]:
    """The bundles of ``repo``, with their weights, so tests can compute expected answers."""
    root = tmp_path / "models"
    return {
        "linear": make_bundle(root, "linear", n_inputs=2, n_outputs=1),
        "wide": make_bundle(root, "wide", n_inputs=3, n_outputs=2),
    }


@pytest.fixture
def repo(bundles):
    """A model repository with ``linear`` version 1 and ``wide`` version 1."""
    return bundles["linear"].path.parents[1]


@pytest.fixture
def settings(repo):
    from service.settings import Settings

    return Settings(model_repository=repo, warmup=True)


@pytest.fixture
def app(settings):
    from service import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()
