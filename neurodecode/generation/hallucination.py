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

Several sampling runs. One 10-step trajectory gives a noisy estimate of that variance. The score can pool
the last ``k`` predictions of ``R`` runs of the same conditioning (other initial noise, and other per-step
noise with the stochastic DDPM sampler): :func:`pooled_trajectory_variance`, the variance over the
``R * k`` predictions. It keeps the paper's within-run term and adds the spread between runs, which is
small when the denoiser recognises the conditioning (every run ends on nearly the same image) and large
when it does not. The scoring runs may use another sampler than the image's (e.g. DDPM, or a larger
guidance, under which a conditioning the denoiser ignores leaves the trajectory unusually still); ``R``,
the scoring sampler, ``k`` and the rule are all chosen on held-out data and stored with the calibration.
Each run beyond the image's own costs one more sampling run.
"""

from dataclasses import asdict, dataclass

import numpy as np

from ..utils import UsageError


def _as_array(x):
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, float)


def trajectory_variance(x0_trajectory, k):
    """Hallucination score of each sample.

    Parameters
    ----------
    x0_trajectory : Tensor or ndarray, shape (n_steps, batch, ...), or a list of them
        Predicted clean samples, one per reverse step, in sampling order. A list holds several sampling
        runs (draws of the initial noise, and of the per-step noise for stochastic samplers) of the same
        conditioning; the variance is then pooled over the last ``k`` steps of every draw
        (see :func:`pooled_trajectory_variance`).
    k : int
        Number of final steps the variance is taken over (1 <= k <= n_steps with several draws, else
        2 <= k).

    Returns
    -------
    ndarray, shape (batch,)
    """
    if isinstance(x0_trajectory, (list, tuple)):
        return pooled_trajectory_variance(x0_trajectory, k)
    return pooled_trajectory_variance([x0_trajectory], k)


def pooled_trajectory_variance(x0_trajectories, k):
    """Variance of the predicted clean sample over the last ``k`` steps of ``R`` sampling runs.

    Per dimension, the variance of the ``R * k`` predictions ``x0_hat`` (last ``k`` steps of every run),
    averaged over dimensions. It adds to the paper's within-run term (how much the prediction still moves
    at the end) the spread between runs that started from other noise: for a conditioning the denoiser
    recognises, every run ends on nearly the same image; for one it does not (unseen classes, or noise
    vectors that it treats like a dropped conditioning) the image depends on the starting noise.
    With ``R = 1`` this is the paper's score.

    Parameters
    ----------
    x0_trajectories : list of Tensor/ndarray, each (n_steps, batch, ...)
        One trajectory per run, same shape.
    k : int
        Final steps per run (1 <= k <= n_steps; k = 1 needs R >= 2).

    Returns
    -------
    ndarray, shape (batch,)
    """
    xs = [_as_array(x) for x in x0_trajectories]
    if not xs:
        raise UsageError("Invalid 'x0_trajectories': expected at least one trajectory.")
    x = xs[0]
    if x.ndim < 2:
        raise UsageError(f"Invalid 'x0_trajectory': expected shape (n_steps, batch, ...), but got {x.shape}.")
    if any(y.shape != x.shape for y in xs):
        raise UsageError(
            f"Invalid 'x0_trajectories': every run must have the same shape, but got {sorted({y.shape for y in xs})}."
        )
    lowest = 2 if len(xs) == 1 else 1
    if not lowest <= int(k) <= x.shape[0]:
        raise UsageError(
            f"Invalid value for the 'k' parameter: expected an integer between {lowest} and the {x.shape[0]} "
            f"recorded steps, but got {k}."
        )
    last = np.concatenate([y[-int(k):].reshape(int(k), x.shape[1], -1) for y in xs])
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
    draws : int
        Sampling runs the variance is pooled over (:func:`pooled_trajectory_variance`); 1 is the paper's
        single-trajectory score. Runs beyond the image's own cost one extra sampling run each.
    score_scheduler : str | None
        Scheduler class of the scoring runs when it differs from the image's (e.g. the stochastic
        ``"DDPMScheduler"`` while images come from DDIM; same number of steps); None: the image's scheduler,
        whose run then counts as the first draw.
    score_guidance : float | None
        Classifier-free guidance of the scoring runs when it differs from the image's; None: the image's.
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
    draws: int = 1
    score_scheduler: str | None = None
    score_guidance: float | None = None

    def to_dict(self):
        return asdict(self)

    def score(self, x0_trajectory):
        """Raw variance score from one trajectory or a list of ``draws`` trajectories."""
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


def _draws_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def calibrate(trajectory_in, trajectory_out=None, *, scheduler, num_inference_steps, ks=(2, 3, 5, 10),
              false_flag_rate=0.05, rules=RULES, draws=None, score_scheduler=None, score_guidance=None):
    """Choose ``k``, the number of draws, the rule and the threshold on held-out data.

    ``k``, the number of draws and the rule (see the module notes) maximise the worst AUROC over the kinds
    of held-out out-of-distribution trajectories when some are given (otherwise the smallest candidate
    ``k``, all draws and the paper's "high" rule); on ties the fewer draws (cheaper) and smaller ``k`` win.
    The threshold is the ``1 - false_flag_rate`` quantile of the in-distribution statistic, so that about
    ``false_flag_rate`` of trustworthy reconstructions are flagged.

    Parameters
    ----------
    trajectory_in : array (n_steps, n_in, ...), or list of R such arrays
        x0 predictions for held-out, in-distribution conditioning; a list holds R sampling runs (draws)
        of the same conditionings.
    trajectory_out : array or list (as ``trajectory_in``), or dict {kind: array or list} | None
        x0 predictions for out-of-distribution conditioning on the same held-out split (never the test
        split), with as many draws; a dict gives several kinds (e.g. noise vectors and unseen classes).
    scheduler : str
        Scheduler class of the image pass the calibration is for.
    num_inference_steps : int
    ks : tuple of int
        Candidate ``k`` (those above the number of steps are skipped; 1 only with several draws).
    false_flag_rate : float
        Target fraction of in-distribution samples flagged, in (0, 1).
    rules : tuple of str
        Candidate rules.
    draws : tuple of int | None
        Candidate numbers of draws (the first ``r`` runs are used); default: all given runs.
    score_scheduler : str | None
        Scheduler class of the scoring runs, recorded in the calibration (None: the image's).
    score_guidance : float | None
        Guidance scale of the scoring runs, recorded in the calibration (None: the image's).

    Returns
    -------
    HallucinationCalibration
    """
    if not 0 < false_flag_rate < 1:
        raise UsageError(f"Invalid value for 'false_flag_rate': expected a number in (0, 1), but got {false_flag_rate}.")
    bad = [r for r in rules if r not in RULES]
    if bad or not rules:
        raise UsageError(f"Invalid 'rules' {tuple(rules)}: expected some of {', '.join(RULES)}.")
    runs_in = _draws_list(trajectory_in)
    n_runs = len(runs_in)
    r_cands = [n_runs] if draws is None else sorted({int(r) for r in draws})
    if not r_cands or not all(1 <= r <= n_runs for r in r_cands):
        raise UsageError(
            f"Invalid 'draws' {tuple(draws or ())}: expected numbers of runs between 1 and the {n_runs} given."
        )
    n_steps = np.shape(runs_in[0])[0]
    outs = trajectory_out if isinstance(trajectory_out, dict) else (
        {} if trajectory_out is None else {"out": trajectory_out})
    outs = {kind: _draws_list(t) for kind, t in outs.items()}
    short = [kind for kind, t in outs.items() if len(t) < max(r_cands)]
    if short:
        raise UsageError(f"Invalid 'trajectory_out': kind(s) {short} have fewer than {max(r_cands)} runs.")
    cands = [(r, int(k)) for r in r_cands for k in sorted(set(ks)) if (1 if r > 1 else 2) <= int(k) <= n_steps]
    if not cands:
        raise UsageError(f"Invalid 'ks': none of {tuple(ks)} lies between 2 and the {n_steps} recorded steps.")
    best = (cands[0][0], cands[0][1], "high" if "high" in rules else rules[0], None, None)
    for r, k in cands:
        v_in = pooled_trajectory_variance(runs_in[:r], k)
        params = _rule_params(v_in)
        v_outs = {kind: pooled_trajectory_variance(t[:r], k) for kind, t in outs.items()}
        for rule in rules:
            stat = lambda v: rule_statistic(v, rule, *params)  # noqa: E731
            per = {kind: auroc(stat(v_in), stat(v)) for kind, v in v_outs.items()}
            worst = min(per.values()) if per else None
            if worst is not None and (best[3] is None or worst > best[3]):
                best = (r, k, rule, worst, per)
    r, k, rule, auc, per = best
    v_in = pooled_trajectory_variance(runs_in[:r], k)
    c, lo, hi = _rule_params(v_in)
    cal = HallucinationCalibration(scheduler=scheduler, num_inference_steps=int(num_inference_steps), k=k,
                                   threshold=0.0, false_flag_rate=0.0, validation_auroc=auc, rule=rule,
                                   center=c if rule in ("two-sided", "band") else None,
                                   spread_low=lo if rule == "band" else None, spread_high=hi if rule == "band" else None,
                                   validation_auroc_per_kind=per if isinstance(trajectory_out, dict) else None,
                                   draws=r, score_scheduler=score_scheduler,
                                   score_guidance=None if score_guidance is None else float(score_guidance))
    stat = cal.statistic(v_in)
    cal.threshold = float(np.quantile(stat, 1 - false_flag_rate))
    cal.false_flag_rate = float((stat > cal.threshold).mean())
    return cal
