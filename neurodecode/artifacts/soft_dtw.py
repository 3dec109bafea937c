"""Soft-DTW (Cuturi & Blondel, ICML 2017) in plain torch, vectorised over anti-diagonals.

Why our own: the PyPI options checked (``pysdtw`` 0.0.5, ``tslearn`` 0.10) run their CPU
path through numba loops (a new compiled dependency, JIT time on every fresh process) and
tslearn's torch loss loops over the batch in Python. Here the dynamic programme runs one
anti-diagonal at a time; every cell of an anti-diagonal depends only on the two previous
ones, so each step is a handful of tensor ops over ``(n_pairs, diagonal_length)``. The
backward pass is the closed-form recursion of the paper (no autograd through the loop), so
memory is a few ``(T1 + T2, T1, n_pairs)`` float tensors.

Cost: O(n_pairs * T1 * T2) arithmetic and O(T1 + T2) Python steps. Keep ``T`` in the low
hundreds (hvEEGNet here uses 1 s windows at 128 Hz, ``T = 128``).
"""

import torch

__all__ = ["soft_dtw", "SoftDTW", "soft_dtw_reference"]

_FLOOR = -80.0  # lowest exp() argument used (see _forward_dp)


def _skew_index(t1, t2, device):
    """Flat index into the anti-diagonal layout for each cell ``(i, j)`` of a padded matrix.

    The padded matrix has shape ``(t1 + 2, t2 + 2)``; the anti-diagonal layout has shape
    ``(t1 + t2 + 3, t1 + 2)`` with row ``k = i + j`` and column ``i``.
    """
    i = torch.arange(t1 + 2, device=device)[:, None]
    j = torch.arange(t2 + 2, device=device)[None, :]
    return ((i + j) * (t1 + 2) + i).reshape(-1)


def _skew(mat, fill):
    """(N, t1 + 2, t2 + 2) -> (t1 + t2 + 3, t1 + 2, N) anti-diagonal layout.

    The pair axis is last so that a slice of one anti-diagonal is contiguous in memory.
    """
    n, a, b = mat.shape
    t1, t2 = a - 2, b - 2
    out = mat.new_full(((t1 + t2 + 3) * (t1 + 2), n), fill)
    out[_skew_index(t1, t2, mat.device)] = mat.reshape(n, -1).T
    return out.reshape(t1 + t2 + 3, t1 + 2, n)


def _unskew(diag, t1, t2):
    """Inverse of :func:`_skew`: (t1 + t2 + 3, t1 + 2, N) -> (N, t1 + 2, t2 + 2)."""
    n = diag.shape[-1]
    return diag.reshape(-1, n)[_skew_index(t1, t2, diag.device)].T.reshape(n, t1 + 2, t2 + 2)


def _forward_dp(cost, gamma):
    """Soft-DTW accumulated cost in the anti-diagonal layout.

    Parameters
    ----------
    cost : Tensor, shape (N, T1, T2)
    gamma : float

    Returns
    -------
    value : Tensor, shape (N,)
    r_diag : Tensor, shape (T1 + T2 + 3, T1 + 2, N)
    """
    n, t1, t2 = cost.shape
    d_diag = _skew(torch.nn.functional.pad(cost, (1, 1, 1, 1)), 0.0)
    r_diag = torch.full_like(d_diag, float("inf"))
    r_diag[0, 0] = 0.0
    inv = 1.0 / gamma
    for k in range(2, t1 + t2 + 1):
        lo, hi = max(1, k - t2), min(t1, k - 1)  # valid rows i on this anti-diagonal
        # neighbours of (i, j): (i-1, j-1) on k-2, (i-1, j) and (i, j-1) on k-1
        a, b, c = r_diag[k - 2, lo - 1:hi], r_diag[k - 1, lo - 1:hi], r_diag[k - 1, lo:hi + 1]
        m = torch.minimum(torch.minimum(a, b), c)  # always finite: every cell has a finite path
        # exp arguments are clamped at -80: far-off paths then cost a tiny ~1e-35 weight instead
        # of an exp() underflow, which is many times slower on CPU
        s = ((m - a) * inv).clamp_(min=_FLOOR).exp_()
        s += ((m - b) * inv).clamp_(min=_FLOOR).exp_()
        s += ((m - c) * inv).clamp_(min=_FLOOR).exp_()
        torch.sub(d_diag[k, lo:hi + 1] + m, s.log_().mul_(gamma), out=r_diag[k, lo:hi + 1])
    return r_diag[t1 + t2, t1].clone(), r_diag


def _backward_dp(cost, r_diag, gamma):
    """Gradient of soft-DTW with respect to the cost matrix, shape (N, T1, T2)."""
    n, t1, t2 = cost.shape
    r = _unskew(r_diag, t1, t2)
    r[:, t1 + 1, :] = -float("inf")
    r[:, :, t2 + 1] = -float("inf")
    r[:, t1 + 1, t2 + 1] = r[:, t1, t2]
    rb = _skew(r, -float("inf"))
    db = _skew(torch.nn.functional.pad(cost, (1, 1, 1, 1)), 0.0)
    rb.sub_(db)  # every use below is R[successor] - D[successor]
    e = torch.zeros_like(rb)
    e[t1 + t2 + 2, t1 + 1] = 1.0
    inv = 1.0 / gamma
    for k in range(t1 + t2, 1, -1):
        lo, hi = max(1, k - t2), min(t1, k - 1)
        rc = rb[k, lo:hi + 1] + db[k, lo:hi + 1]  # R(i, j) itself
        # successors of (i, j): (i+1, j) and (i, j+1) on k+1, (i+1, j+1) on k+2
        a = ((rb[k + 1, lo + 1:hi + 2] - rc) * inv).clamp_(min=_FLOOR).exp_()
        b = ((rb[k + 1, lo:hi + 1] - rc) * inv).clamp_(min=_FLOOR).exp_()
        c = ((rb[k + 2, lo + 1:hi + 2] - rc) * inv).clamp_(min=_FLOOR).exp_()
        e[k, lo:hi + 1] = e[k + 1, lo + 1:hi + 2] * a + e[k + 1, lo:hi + 1] * b + e[k + 2, lo + 1:hi + 2] * c
    return _unskew(e, t1, t2)[:, 1:t1 + 1, 1:t2 + 1]


class _SoftDTWFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cost, gamma):
        with torch.no_grad():
            value, r_diag = _forward_dp(cost.detach(), gamma)
        ctx.save_for_backward(cost, r_diag)
        ctx.gamma = gamma
        return value

    @staticmethod
    def backward(ctx, grad_output):
        cost, r_diag = ctx.saved_tensors
        with torch.no_grad():
            grad = _backward_dp(cost.detach(), r_diag, ctx.gamma)
        return grad * grad_output[:, None, None], None


def _pairwise_sq(x, y):
    """Squared Euclidean cost between every step of x and y.

    x : (N, T1) or (N, T1, d); y : (N, T2) or (N, T2, d) -> (N, T1, T2)
    """
    if x.ndim == 2:
        return (x[:, :, None] - y[:, None, :]) ** 2
    return ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)


def soft_dtw(x, y, gamma=1.0, normalize=False):
    """Soft-DTW discrepancy between paired sequences.

    Parameters
    ----------
    x : Tensor, shape (N, T1) or (N, T1, d)
        N sequences (for EEG: one per window and channel, as in hvEEGNet).
    y : Tensor, shape (N, T2) or (N, T2, d)
    gamma : float
        Smoothing; ``gamma -> 0`` gives classic DTW.
    normalize : bool
        Return the soft-DTW divergence ``sdtw(x, y) - (sdtw(x, x) + sdtw(y, y)) / 2``
        (Blondel et al. 2021), which is >= 0 and 0 for identical inputs.

    Returns
    -------
    Tensor, shape (N,)
        Differentiable with respect to ``x`` and ``y``.
    """
    if x.ndim not in (2, 3) or y.ndim != x.ndim or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"soft_dtw expects x and y of shape (N, T) or (N, T, d) with the same N, got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if gamma <= 0:
        raise ValueError(f"soft_dtw: gamma must be > 0, got {gamma}.")
    value = _SoftDTWFunction.apply(_pairwise_sq(x, y), float(gamma))
    if normalize:
        value = value - 0.5 * (
            _SoftDTWFunction.apply(_pairwise_sq(x, x), float(gamma))
            + _SoftDTWFunction.apply(_pairwise_sq(y, y), float(gamma))
        )
    return value


class SoftDTW(torch.nn.Module):
    """Module form of :func:`soft_dtw` (same parameters)."""

    def __init__(self, gamma=1.0, normalize=False):
        super().__init__()
        self.gamma = gamma
        self.normalize = normalize

    def forward(self, x, y):
        return soft_dtw(x, y, self.gamma, self.normalize)


def soft_dtw_reference(x, y, gamma=1.0):
    """Plain double loop over one pair of 1-D numpy sequences (for tests only)."""
    import numpy as np

    t1, t2 = len(x), len(y)
    r = np.full((t1 + 1, t2 + 1), np.inf)
    r[0, 0] = 0.0
    for i in range(1, t1 + 1):
        for j in range(1, t2 + 1):
            prev = np.array([r[i - 1, j - 1], r[i - 1, j], r[i, j - 1]])
            m = prev.min()
            softmin = m - gamma * np.log(np.exp(-(prev - m) / gamma).sum())
            r[i, j] = (x[i - 1] - y[j - 1]) ** 2 + softmin
    return r[t1, t2]
