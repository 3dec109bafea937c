"""Hallucination score: how much the predicted clean image still moves during the last sampling steps.

Mode-interpolation paper (Aithal, Maini, Lipton, Kolter, NeurIPS 2024, arXiv 2406.09358): samples that fall
between the modes of the data distribution show a high variance of the model's prediction of the clean
sample ``x0_hat`` over the final reverse steps, while in-support samples have settled. Our score is that
variance, per dimension, averaged over dimensions, over the last ``k`` steps of whichever scheduler is used.

The paper's evidence is for 1000-step ancestral DDPM; with few-step samplers (DDIM with 20-50 steps) ``k``
and the flagging threshold must be re-chosen, so both are calibrated on held-out data per scheduler
(:func:`calibrate`) and stored with the weights.
"""

from dataclasses import asdict, dataclass

import numpy as np

from ..utils import UsageError


def trajectory_variance(x0_trajectory, k):
    """Hallucination score of each sample.

    Parameters
    ----------
    x0_trajectory : Tensor or ndarray, shape (n_steps, batch, ...)
        Predicted clean samples, one per reverse step, in sampling order.
    k : int
        Number of final steps the variance is taken over (2 <= k <= n_steps).

    Returns
    -------
    ndarray, shape (batch,)
    """
    x = np.asarray(x0_trajectory.detach().cpu() if hasattr(x0_trajectory, "detach") else x0_trajectory, float)
    if x.ndim < 2:
        raise UsageError(f"Invalid 'x0_trajectory': expected shape (n_steps, batch, ...), but got {x.shape}.")
    if not 2 <= int(k) <= x.shape[0]:
        raise UsageError(
            f"Invalid value for the 'k' parameter: expected an integer between 2 and the {x.shape[0]} recorded "
            f"steps, but got {k}."
        )
    last = x[-int(k):].reshape(int(k), x.shape[1], -1)
    return last.var(axis=0).mean(axis=1)


def auroc(scores_negative, scores_positive):
    """Area under the ROC curve for telling positives (higher scores expected) from negatives."""
    from sklearn.metrics import roc_auc_score

    neg = np.asarray(scores_negative, float).ravel()
    pos = np.asarray(scores_positive, float).ravel()
    y = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
    return float(roc_auc_score(y, np.r_[neg, pos]))


@dataclass
class HallucinationCalibration:
    """Calibrated detector for one scheduler and number of sampling steps.

    Attributes
    ----------
    scheduler : str
        Scheduler class name the calibration holds for.
    num_inference_steps : int
    k : int
        Final steps the variance is taken over.
    threshold : float
        Scores above it are flagged.
    false_flag_rate : float
        Fraction of held-out in-distribution reconstructions above the threshold (by construction).
    validation_auroc : float | None
        AUROC against held-out out-of-distribution conditioning on the calibration split, when given.
    """

    scheduler: str
    num_inference_steps: int
    k: int
    threshold: float
    false_flag_rate: float
    validation_auroc: float | None = None

    def to_dict(self):
        return asdict(self)

    def score(self, x0_trajectory):
        return trajectory_variance(x0_trajectory, self.k)

    def flag(self, scores):
        return np.asarray(scores) > self.threshold


def calibrate(trajectory_in, trajectory_out=None, *, scheduler, num_inference_steps, ks=(2, 3, 5, 10), false_flag_rate=0.05):
    """Choose ``k`` and the threshold on held-out data.

    ``k`` maximises the AUROC between in-distribution and out-of-distribution trajectories when the latter
    are given (otherwise the smallest candidate). The threshold is the ``1 - false_flag_rate`` quantile of
    in-distribution scores, so that about ``false_flag_rate`` of trustworthy reconstructions are flagged.

    Parameters
    ----------
    trajectory_in : array, shape (n_steps, n_in, ...)
        x0 predictions for held-out, in-distribution conditioning.
    trajectory_out : array, shape (n_steps, n_out, ...) | None
        x0 predictions for out-of-distribution conditioning on the same held-out split.
    scheduler : str
    num_inference_steps : int
    ks : tuple of int
        Candidate ``k`` (those above the number of steps are skipped).
    false_flag_rate : float
        Target fraction of in-distribution samples flagged, in (0, 1).

    Returns
    -------
    HallucinationCalibration
    """
    if not 0 < false_flag_rate < 1:
        raise UsageError(f"Invalid value for 'false_flag_rate': expected a number in (0, 1), but got {false_flag_rate}.")
    n_steps = np.shape(trajectory_in)[0]
    cands = [int(k) for k in ks if 2 <= int(k) <= n_steps]
    if not cands:
        raise UsageError(f"Invalid 'ks': none of {tuple(ks)} lies between 2 and the {n_steps} recorded steps.")
    best_k, best_auc = cands[0], None
    if trajectory_out is not None:
        for k in cands:
            auc = auroc(trajectory_variance(trajectory_in, k), trajectory_variance(trajectory_out, k))
            if best_auc is None or auc > best_auc:
                best_k, best_auc = k, auc
    s_in = trajectory_variance(trajectory_in, best_k)
    thr = float(np.quantile(s_in, 1 - false_flag_rate))
    return HallucinationCalibration(
        scheduler=scheduler,
        num_inference_steps=int(num_inference_steps),
        k=best_k,
        threshold=thr,
        false_flag_rate=float((s_in > thr).mean()),
        validation_auroc=best_auc,
    )
