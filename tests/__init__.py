"""The test suite. Helpers shared across its parts live here, at the top:

- ``tests.bundles``: real ONNX bundles written to a directory (``make_bundle``).
- ``tests.tables``: small training tables (CSV) for the CLI tests.
- ``tests.v2``: V2 request bodies, JSON and binary, and response readers.
- ``tests.fuzzing``: bounded schemathesis runs of the OpenAPI description (in-process and e2e).
- ``tests.conftest``: the ``repo`` -> ``settings`` -> ``app`` -> ``client`` fixtures.

``tests.e2e.server`` runs real gunicorn servers for the end-to-end tests.
"""
