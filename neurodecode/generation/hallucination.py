"""Hallucination score: how much the predicted clean image still moves during the last sampling steps.

Mode-interpolation paper (Aithal, Maini, Lipton, Kolter, NeurIPS 2024, arXiv 2406.09358): samples that fall
between the modes of the data distribution show a high variance of the model's prediction of the clean
sample ``x0_hat`` over the final reverse steps, while in-support samples have settled. Our score is that
variance, per dimension, averaged over dimensions, over the last ``k`` steps of whichever scheduler is used.

The paper's evidence is for 1000-step ancestral DDPM; with few-step samplers (DDIM with 20-50 steps) ``k``
and the flagging threshold must be re-chosen, so both are calibrated on held-out data per scheduler
(:func:`calibrate`) and stored with the weights.

Direction. The paper flags *high* variance. Conditioning of unseen image classes does raise the variance
here, but conditioning the denoiser barely responds to (e.g. Gaussian vectors with the embeddings'
per-dimension statistics, which look like the isotropic noise added to the conditioning during training)
gives a trajectory that settles *faster* than usual, which a high-variance rule misses. The calibration
therefore chooses among four rules on held-out data:

* ``"high"``: the variance (the paper's rule);
* ``"low"``: minus the variance;
* ``"two-sided"``: ``|log(variance) - c|`` with ``c`` the median in-distribution log-variance;
* ``"band"``: the two-sided distance measured in units of the in-distribution's own tail on each side,
  ``max((l - c) / (q95 - c), (c - l) / (c - q05))`` with ``l`` the log-variance and ``q05``/``q95`` its
  held-out in-distribution quantiles, so that a skewed in-distribution spread does not favour one side.

With several kinds of held-out out-of-distribution conditioning, the rule and ``k`` maximise the *worst*
AUROC over the kinds, so the detector is not tuned to one kind of failure. The raw variance is always
reported.
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
    rule : {"high", "low", "two-sided", "band"}
        Statistic compared with ``threshold`` (see the module notes).
    center : float | None
        Median in-distribution log-variance (two-sided and band rules).
    spread_low, spread_high : float | None
        ``center - q05`` and ``q95 - center`` of the in-distribution log-variance (band rule).
    validation_auroc_per_kind : dict | None
        Calibration-split AUROC per kind of out-of-distribution conditioning, for the chosen rule and ``k``.
    """

    scheduler: str
    num_inference_steps: int
    k: int
    threshold: float
    false_flag_rate: float
    validation_auroc: float | None = None
    rule: str = "high"
    center: float | None = None
    spread_low: float | None = None
    spread_high: float | None = None
    validation_auroc_per_kind: dict | None = None

    def to_dict(self):
        return asdict(self)

    def score(self, x0_trajectory):
        return trajectory_variance(x0_trajectory, self.k)

    def statistic(self, scores):
        """The quantity compared with the threshold, from raw variance scores."""
        return rule_statistic(scores, self.rule, self.center, self.spread_low, self.spread_high)

    def flag(self, scores):
        return self.statistic(scores) > self.threshold


def atypicality(scores, center):
    """Two-sided deviation ``|log(score) - center|`` of variance scores from the in-distribution median."""
    return np.abs(np.log(np.asarray(scores, float) + 1e-20) - center)


RULES = ("high", "low", "two-sided", "band")


def rule_statistic(scores, rule, center=None, spread_low=None, spread_high=None):
    """Map raw variance scores to the statistic of ``rule`` (larger = more suspicious)."""
    v = np.asarray(scores, float)
    if rule == "high":
        return v
    if rule == "low":
        return -v
    if rule == "two-sided":
        return atypicality(v, center)
    if rule == "band":
        d = np.log(v + 1e-20) - center
        return np.maximum(d / spread_high, -d / spread_low)
    raise UsageError(f"Invalid hallucination rule {rule!r}: expected one of {', '.join(RULES)}.")


def _rule_params(v_in):
    log_in = np.log(np.asarray(v_in, float) + 1e-20)
    c = float(np.median(log_in))
    lo, hi = np.quantile(log_in, [0.05, 0.95])
    # Floors keep a degenerate (constant) in-distribution spread from dividing by zero.
    return c, max(c - float(lo), 1e-6), max(float(hi) - c, 1e-6)


def calibrate(trajectory_in, trajectory_out=None, *, scheduler, num_inference_steps, ks=(2, 3, 5, 10),
              false_flag_rate=0.05, rules=RULES):
    """Choose ``k``, the rule and the threshold on held-out data.

    ``k`` and the rule (see the module notes) maximise the worst AUROC over the kinds of held-out
    out-of-distribution trajectories when some are given (otherwise the smallest candidate ``k`` and the
    paper's "high" rule). The threshold is the ``1 - false_flag_rate`` quantile of the in-distribution
    statistic, so that about ``false_flag_rate`` of trustworthy reconstructions are flagged.

    Parameters
    ----------
    trajectory_in : array, shape (n_steps, n_in, ...)
        x0 predictions for held-out, in-distribution conditioning.
    trajectory_out : array (n_steps, n_out, ...), or dict {kind: array} | None
        x0 predictions for out-of-distribution conditioning on the same held-out split (never the test
        split); a dict gives several kinds (e.g. noise vectors and unseen image classes).
    scheduler : str
    num_inference_steps : int
    ks : tuple of int
        Candidate ``k`` (those above the number of steps are skipped).
    false_flag_rate : float
        Target fraction of in-distribution samples flagged, in (0, 1).
    rules : tuple of str
        Candidate rules.

    Returns
    -------
    HallucinationCalibration
    """
    if not 0 < false_flag_rate < 1:
        raise UsageError(f"Invalid value for 'false_flag_rate': expected a number in (0, 1), but got {false_flag_rate}.")
    bad = [r for r in rules if r not in RULES]
    if bad or not rules:
        raise UsageError(f"Invalid 'rules' {tuple(rules)}: expected some of {', '.join(RULES)}.")
    n_steps = np.shape(trajectory_in)[0]
    cands = [int(k) for k in ks if 2 <= int(k) <= n_steps]
    if not cands:
        raise UsageError(f"Invalid 'ks': none of {tuple(ks)} lies between 2 and the {n_steps} recorded steps.")
    outs = trajectory_out if isinstance(trajectory_out, dict) else (
        {} if trajectory_out is None else {"out": trajectory_out})
    best = (cands[0], "high" if "high" in rules else rules[0], None, None)
    for k in cands:
        v_in = trajectory_variance(trajectory_in, k)
        params = _rule_params(v_in)
        v_outs = {kind: trajectory_variance(t, k) for kind, t in outs.items()}
        for rule in rules:
            stat = lambda v: rule_statistic(v, rule, *params)  # noqa: E731
            per = {kind: auroc(stat(v_in), stat(v)) for kind, v in v_outs.items()}
            worst = min(per.values()) if per else None
            if worst is not None and (best[2] is None or worst > best[2]):
                best = (k, rule, worst, per)
    k, rule, auc, per = best
    c, lo, hi = _rule_params(trajectory_variance(trajectory_in, k))
    cal = HallucinationCalibration(scheduler=scheduler, num_inference_steps=int(num_inference_steps), k=k,
                                   threshold=0.0, false_flag_rate=0.0, validation_auroc=auc, rule=rule,
                                   center=c if rule in ("two-sided", "band") else None,
                                   spread_low=lo if rule == "band" else None, spread_high=hi if rule == "band" else None,
                                   validation_auroc_per_kind=per if isinstance(trajectory_out, dict) else None)
    stat = cal.statistic(trajectory_variance(trajectory_in, k))
    cal.threshold = float(np.quantile(stat, 1 - false_flag_rate))
    cal.false_flag_rate = float((stat > cal.threshold).mean())
    return cal
