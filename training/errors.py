"""The errors of the training side: one base the CLI reports in a line, and how it does.

Every error the training code raises on purpose (a bad table, a bad parameter, a fit that
diverged, an export that failed its checks, a tracking server that refuses) is a
:class:`TrainingError`; the ones about a value given by the caller are also ``ValueError``, as
scikit-learn's parameter checks are. Anything else escaping the training code is a bug and is
shown as one. ``first_line`` is the one rule for a message in a line, shared with the service.
"""

from __future__ import annotations

from service.messages import first_line

__all__ = ["DataError", "ParameterError", "TrainingError", "first_line"]


class TrainingError(Exception):
    """Something the user can act on went wrong; the message says what in its first line."""


class ParameterError(TrainingError, ValueError):
    """A parameter (of an estimator, a job, a grid) has a value it cannot take."""


class DataError(TrainingError, ValueError):
    """The table cannot be used as given; the message says what and where."""
