"""Euclidean alignment (He & Wu, IEEE TBME 2020), as used by DBConformer.

Each domain (a subject, or a set of training trials) is whitened by the inverse square root of
its mean spatial covariance, so that after alignment every domain's mean covariance is the
identity. Only the trials' signals are used, never their labels; which trials form a domain's
reference is decided by the protocol (see :mod:`neurodecode.training.protocols`).
"""

import numpy as np


def reference_matrix(X):
    """Return the mean spatial covariance of trials ``X`` (n_trials, n_chans, n_times) -> (n_chans, n_chans)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3 or len(X) == 0:
        raise ValueError(f"Euclidean alignment needs trials shaped (n_trials, n_chans, n_times), got {X.shape}.")
    covs = np.einsum("nct,ndt->ncd", X, X) / X.shape[2]
    return covs.mean(axis=0)


def inv_sqrtm(R, eps=1e-10):
    """Inverse matrix square root of a symmetric positive (semi-)definite matrix; tiny eigenvalues are floored."""
    w, V = np.linalg.eigh(R)
    w = np.maximum(w, eps * max(w.max(), eps))
    return (V / np.sqrt(w)) @ V.T


class EuclideanAlignment:
    """Align trials with a reference computed from some trials (sklearn-style, label-free).

    Examples
    --------
    >>> ea = EuclideanAlignment().fit(X_subject)     # doctest: +SKIP
    >>> Xa = ea.transform(X_subject)                  # mean covariance of Xa is the identity
    """

    def fit(self, X, y=None):
        """Compute ``whitener_`` (n_chans, n_chans) from trials ``X``; ``y`` is ignored."""
        self.whitener_ = inv_sqrtm(reference_matrix(X))
        return self

    def transform(self, X):
        """Return ``whitener_ @ X`` for every trial, float32, same shape as ``X``."""
        return np.einsum("cd,ndt->nct", self.whitener_, np.asarray(X, dtype=np.float64)).astype(np.float32)

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)


def align_per_group(X, groups):
    """Align each group (e.g. subject) of ``X`` with its own reference; returns a new float32 array."""
    out = np.empty(X.shape, dtype=np.float32)
    for g in dict.fromkeys(np.asarray(groups).tolist()):
        idx = np.flatnonzero(np.asarray(groups) == g)
        out[idx] = EuclideanAlignment().fit_transform(X[idx])
    return out
