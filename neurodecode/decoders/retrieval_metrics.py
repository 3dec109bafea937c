"""Retrieval metrics: where does the image a person saw rank among candidate images?

Given predicted embeddings (one per test trial) and the embeddings of all candidate images, the
candidates are ranked by cosine similarity. ``rank`` is 1 for the best.

Reported as in the THINGS-EEG/MEG literature: top-1 and top-5 accuracy over all candidates,
median rank, mean reciprocal rank (UBP's "mAP"), and k-way top-1 (the true image among k - 1
random distractors, averaged over draws).
"""

from __future__ import annotations

import numpy as np

from ..utils import UsageError

__all__ = ["cosine_similarity", "retrieval_ranks", "retrieval_scores", "kway_top1", "chance_scores"]


def _l2n(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def cosine_similarity(pred, candidates):
    """Cosine similarity matrix.

    Parameters
    ----------
    pred : array-like, shape (n, d)
    candidates : array-like, shape (m, d)

    Returns
    -------
    ndarray, shape (n, m)
    """
    pred, candidates = np.asarray(pred), np.asarray(candidates)
    if pred.ndim != 2 or candidates.ndim != 2 or pred.shape[1] != candidates.shape[1]:
        raise UsageError(
            f"Invalid embeddings: expected pred (n, d) and candidates (m, d) with the same d, "
            f"got {pred.shape} and {candidates.shape}."
        )
    return _l2n(pred) @ _l2n(candidates).T


def retrieval_ranks(pred, candidates, target):
    """Rank (1 = best) of each trial's true candidate.

    Parameters
    ----------
    pred : array-like, shape (n, d)
        Predicted embeddings.
    candidates : array-like, shape (m, d)
        Candidate image embeddings.
    target : array-like of int, shape (n,)
        Row of ``candidates`` that trial ``i`` saw.

    Returns
    -------
    ndarray of int, shape (n,)
        Ties count against the prediction (pessimistic), so a constant prediction ranks last.
    """
    target = np.asarray(target)
    sim = cosine_similarity(pred, candidates)
    if target.shape != (len(sim),) or target.min(initial=0) < 0 or target.max(initial=0) >= sim.shape[1]:
        raise UsageError(
            f"Invalid value for the 'target' parameter: expected {len(sim)} indices in [0, {sim.shape[1]}), "
            f"got shape {target.shape}."
        )
    true = sim[np.arange(len(sim)), target][:, None]
    return (sim >= true).sum(1)


def kway_top1(pred, candidates, target, k, *, n_draws=20, seed=0):
    """k-way top-1 accuracy: the true image against ``k - 1`` random other candidates.

    Returns
    -------
    float
        Mean over trials and ``n_draws`` random distractor sets.
    """
    sim = cosine_similarity(pred, candidates)
    n, m = sim.shape
    if not 2 <= k <= m:
        raise UsageError(f"Invalid value for the 'k' parameter: expected 2 <= k <= {m}, got {k}.")
    rng = np.random.default_rng(seed)
    target = np.asarray(target)
    hits = 0
    for _ in range(n_draws):
        for i in range(n):
            others = np.delete(np.arange(m), target[i])
            d = rng.choice(others, k - 1, replace=False)
            hits += sim[i, target[i]] > sim[i, d].max()
    return hits / (n * n_draws)


def retrieval_scores(pred, candidates, target, *, ks=(2, 10, 50), seed=0):
    """Top-1, top-5, median rank, mean reciprocal rank and k-way top-1.

    Parameters
    ----------
    pred : array-like, shape (n, d)
    candidates : array-like, shape (m, d)
    target : array-like of int, shape (n,)
    ks : tuple of int
        k-way sizes (those larger than ``m`` are skipped).

    Returns
    -------
    dict
        ``top1``, ``top5`` (fractions), ``median_rank``, ``mrr``, ``n_candidates``, ``n_trials`` and
        ``kway_<k>`` for each k.
    """
    ranks = retrieval_ranks(pred, candidates, target)
    m = len(candidates)
    out = {
        "top1": float(np.mean(ranks <= 1)),
        "top5": float(np.mean(ranks <= 5)),
        "median_rank": float(np.median(ranks)),
        "mrr": float(np.mean(1.0 / ranks)),
        "n_candidates": int(m),
        "n_trials": int(len(ranks)),
    }
    for k in ks:
        if k <= m:
            out[f"kway_{k}"] = float(kway_top1(pred, candidates, target, k, seed=seed))
    return out


def chance_scores(n_candidates):
    """Expected top-1, top-5 and median rank of a random ranking among ``n_candidates``."""
    m = int(n_candidates)
    return {"top1": 1 / m, "top5": min(5, m) / m, "median_rank": (m + 1) / 2}
