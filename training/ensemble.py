"""``SurrogateEnsemble``: a deep ensemble of ``SurrogateMLP`` members trained with different seeds.

The members are fitted in parallel through ``joblib.Parallel``, the engine the sweeps use, so
local processes (loky) are the default and a ``joblib.parallel_config(backend="dask")`` context
sends the fits to a Dask cluster. The prediction is the mean of the members' physical
predictions; ``return_std=True`` adds their spread, the population standard deviation
(``ddof=0``) over members, in physical units, as the exported ``std`` output does.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from training.errors import ParameterError
from training.estimator import SurrogateMLP

__all__ = ["SurrogateEnsemble", "members"]

_SEED_LIMIT = 2**31 - 1


class SurrogateEnsemble(RegressorMixin, BaseEstimator):
    """Mean and spread of ``n_members`` copies of an estimator fitted with different seeds.

    Parameters
    ----------
    estimator : SurrogateMLP or None, default=None
        The member template, cloned for every member with its own ``random_state``; None is
        ``SurrogateMLP()``.
    n_members : int, default=5
        Number of members, at least 2.
    random_state : int, RandomState instance or None, default=None
        An int ``s`` seeds the members ``s, s+1, ..., s+n_members-1`` (member 0 is then the
        single model ``SurrogateMLP(random_state=s)`` would fit); otherwise the seeds are drawn
        from ``check_random_state(random_state)``.
    n_jobs : int or None, default=None
        Parallel member fits, joblib's meaning: None is 1 unless a ``joblib.parallel_config``
        context says otherwise, -1 is one per core.

    Attributes
    ----------
    estimators_ : list of SurrogateMLP
        The fitted members, in seed order.
    seeds_ : list of int
        The ``random_state`` of every member.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string column names.
    n_outputs_ : int
    """

    def __init__(self, estimator=None, n_members=5, random_state=None, n_jobs=None):
        self.estimator = estimator
        self.n_members = n_members
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y):
        """Fit every member on ``(X, y)`` (shapes and units as for :meth:`SurrogateMLP.fit`),
        each with its own seed; returns ``self``."""
        import joblib

        if not isinstance(self.n_members, Integral) or isinstance(self.n_members, bool) or (
            self.n_members < 2
        ):
            raise ParameterError(f"n_members must be an integer >= 2, got {self.n_members!r}")
        template = SurrogateMLP() if self.estimator is None else self.estimator
        X, _ = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        seeds = self._seeds()
        fitted = joblib.Parallel(n_jobs=self.n_jobs)(
            joblib.delayed(_fit_member)(clone(template), seed, X, y) for seed in seeds
        )
        self.estimators_, self.seeds_ = list(fitted), seeds
        self.n_outputs_ = self.estimators_[0].n_outputs_
        return self

    def predict(self, X, return_std=False):
        """Mean prediction of the members, in physical units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False
            Also return the spread: the population standard deviation over members.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        y_std : ndarray of the same shape
            Only with ``return_std=True``.
        """
        predictions = self._member_predictions(X)
        mean = predictions.mean(axis=0)
        return (mean, predictions.std(axis=0)) if return_std else mean

    def predict_members(self, X):
        """Every member's prediction, shape ``(n_members, n_samples[, n_outputs])``."""
        return self._member_predictions(X)

    def predict_jacobian(self, X):
        """Derivative of the mean prediction with respect to the inputs: the mean of the
        members' :meth:`SurrogateMLP.predict_jacobian`, shape (n_samples, n_outputs, n_features)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return np.mean([member.predict_jacobian(X) for member in self.estimators_], axis=0)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _member_predictions(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return np.stack([member.predict(X) for member in self.estimators_])

    def _seeds(self) -> list[int]:
        if isinstance(self.random_state, Integral) and not isinstance(self.random_state, bool):
            return [int(self.random_state) + i for i in range(self.n_members)]
        rng = check_random_state(self.random_state)
        return [int(seed) for seed in rng.randint(0, _SEED_LIMIT, size=self.n_members)]


def _fit_member(member: SurrogateMLP, seed: int, X: np.ndarray, y) -> SurrogateMLP:
    return member.set_params(random_state=seed).fit(X, y)


def members(model) -> list[SurrogateMLP]:
    """The networks behind a fitted model: an ensemble's members, or the model itself."""
    return list(model.estimators_) if isinstance(model, SurrogateEnsemble) else [model]
