"""Trivial baseline: class-conditional coloured noise with each class's real spectrum.

For every class and channel an autoregressive model AR(p) is fitted by Yule-Walker on the
pooled training windows; the innovations of all channels are drawn jointly from a Gaussian with
the residual channel covariance, so the baseline reproduces each class's per-channel PSD and
zero-lag channel covariance but none of the transient structure (no blink shape, no bursts).
"""

import numpy as np
from scipy.linalg import solve_toeplitz
from scipy.signal import lfilter

from ._common import LABELS, label_ids


class ARBaseline:
    """Per-class, per-channel AR(p) noise generator.

    Parameters
    ----------
    order : int
        AR order (16 at 128 Hz resolves the alpha peak).
    burn_in : int
        Samples discarded at the start of each generated series (filter transient).
    """

    def __init__(self, order=16, burn_in=256):
        self.order = order
        self.burn_in = burn_in

    def fit(self, X, y):
        """Fit on windows ``X`` (n, n_chans, n_times) in µV with labels ``y`` (n,); returns self."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 3 or len(X) != len(y):
            raise ValueError(f"X must be (n, n_chans, n_times) with one label per window; got {X.shape}, {y.shape}.")
        p = self.order
        self.classes_ = np.unique(y)
        self.coef_, self.noise_cov_, self.mean_ = {}, {}, {}
        for c in self.classes_:
            Xc = X[y == c]
            mu = Xc.mean(axis=(0, 2))
            Z = Xc - mu[None, :, None]
            n_ch, T = Z.shape[1], Z.shape[2]
            coefs = np.zeros((n_ch, p))
            resid = []
            for ch in range(n_ch):
                s = Z[:, ch]
                r = np.array([np.mean(np.sum(s[:, : T - k] * s[:, k:], 1)) / T for k in range(p + 1)])
                a = solve_toeplitz(r[:p], r[1 : p + 1])
                coefs[ch] = a
                e = lfilter(np.r_[1.0, -a], [1.0], s, axis=1)[:, p:]
                resid.append(e.ravel())
            self.coef_[int(c)] = coefs
            self.noise_cov_[int(c)] = np.cov(np.stack(resid))
            self.mean_[int(c)] = mu
        self.n_chans_, self.n_times_ = X.shape[1], X.shape[2]
        return self

    def sample(self, labels, *, seed=0):
        """Generate windows, shape (n, n_chans, n_times), float32 µV."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("ARBaseline is not fitted: call fit(X, y) first.")
        ids = label_ids(labels, max(int(c) for c in self.classes_) + 1, LABELS)
        rng = np.random.default_rng(seed)
        T = self.n_times_ + self.burn_in
        out = np.zeros((len(ids), self.n_chans_, self.n_times_))
        for c in np.unique(ids):
            if int(c) not in self.coef_:
                raise ValueError(f"class {int(c)} was not seen in fit().")
            idx = np.flatnonzero(ids == c)
            L = np.linalg.cholesky(self.noise_cov_[int(c)] + 1e-9 * np.eye(self.n_chans_))
            e = rng.standard_normal((len(idx), T, self.n_chans_)) @ L.T  # correlated innovations
            for ch in range(self.n_chans_):
                a = self.coef_[int(c)][ch]
                s = lfilter([1.0], np.r_[1.0, -a], e[:, :, ch], axis=1)
                out[idx, ch] = s[:, self.burn_in :] + self.mean_[int(c)][ch]
        return out.astype(np.float32)


__all__ = ["ARBaseline"]
