"""Fidelity suite for synthetic EEG windows: compare any two sets of windows.

Every function takes windows as arrays of shape ``(n_windows, n_chans, n_times)`` in the same
physical unit (µV here), so that models with different internal scalings are compared on one
scale (ArtifactGen compared z-scored diffusion output with min-max scaled GAN output).

Distribution metrics
    :func:`band_power_deltas` (Welch; delta, theta, alpha, beta [, gamma]),
    :func:`covariance_distance` (channel-covariance Frobenius), :func:`acf_distance`
    (autocorrelation L2), :func:`mmd_rbf` (unbiased MMD², RBF, median heuristic, permutation
    p-value) and :func:`prd` (precision/recall for distributions, Sajjadi et al. 2018) on
    :func:`window_features`.
Specificity
    :func:`class_recovery`: a kNN and a small CNN trained on real windows label the synthetic
    windows; balanced accuracy against the requested labels.
Utility
    :func:`augmentation_utility`: an artifact classifier trained on real vs real + synthetic
    windows, tested on held-out real windows, over several seeds with a 95% confidence interval.
"""

import numpy as np
from scipy import stats
from scipy.signal import welch

BANDS = {"delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0)}
FEATURE_BANDS = dict(BANDS, gamma=(30.0, 45.0))


def _check(X, name="X"):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"{name} must have shape (n_windows, n_chans, n_times), got {X.shape}.")
    if len(X) < 2:
        raise ValueError(f"{name} needs at least 2 windows, got {len(X)}.")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return X


def _check_pair(real, fake):
    real, fake = _check(real, "real"), _check(fake, "fake")
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and fake windows differ in shape: {real.shape[1:]} vs {fake.shape[1:]}.")
    return real, fake


def welch_psd(X, sfreq, nperseg=128):
    """Welch PSD per window and channel: ``freqs`` (F,), ``psd`` (n, n_chans, F) in unit²/Hz."""
    X = _check(X)
    return welch(X, fs=sfreq, nperseg=min(nperseg, X.shape[-1]), axis=-1)


def band_powers(X, sfreq, bands=BANDS, nperseg=128):
    """Mean band power over windows: dict band -> (n_chans,), integrated Welch PSD (unit²)."""
    f, p = welch_psd(X, sfreq, nperseg)
    df = f[1] - f[0]
    return {b: p[..., (f >= lo) & (f < hi)].sum(-1).mean(0) * df for b, (lo, hi) in bands.items()}


def band_power_deltas(real, fake, sfreq, bands=BANDS, nperseg=128):
    """Relative band-power error ``|P_fake - P_real| / P_real``, averaged over channels.

    Returns
    -------
    dict
        One value per band plus ``"mean"`` (over bands).
    """
    real, fake = _check_pair(real, fake)
    pr, pf = band_powers(real, sfreq, bands, nperseg), band_powers(fake, sfreq, bands, nperseg)
    out = {b: float(np.mean(np.abs(pf[b] - pr[b]) / pr[b])) for b in bands}
    out["mean"] = float(np.mean([out[b] for b in bands]))
    return out


def covariance_distance(real, fake):
    """Relative Frobenius distance of the mean channel covariance, ``||C_f - C_r||_F / ||C_r||_F``."""
    real, fake = _check_pair(real, fake)

    def mean_cov(X):
        Z = X - X.mean(-1, keepdims=True)
        return np.einsum("nct,ndt->cd", Z, Z) / (Z.shape[0] * Z.shape[-1])

    cr, cf = mean_cov(real), mean_cov(fake)
    return float(np.linalg.norm(cf - cr) / np.linalg.norm(cr))


def autocorrelation(X, max_lag=64):
    """Mean normalised autocorrelation per channel, shape (n_chans, max_lag + 1)."""
    X = _check(X)
    Z = X - X.mean(-1, keepdims=True)
    T = Z.shape[-1]
    n = 1 << int(np.ceil(np.log2(2 * T)))
    spec = np.fft.rfft(Z, n=n, axis=-1)
    ac = np.fft.irfft(np.abs(spec) ** 2, n=n, axis=-1)[..., : max_lag + 1]
    ac = ac / np.maximum(ac[..., :1], 1e-12)
    return ac.mean(0)


def acf_distance(real, fake, max_lag=64):
    """L2 distance between mean autocorrelations, divided by ``sqrt(n_chans)`` (per-channel scale)."""
    real, fake = _check_pair(real, fake)
    d = autocorrelation(real, max_lag) - autocorrelation(fake, max_lag)
    return float(np.linalg.norm(d) / np.sqrt(d.shape[0]))


def window_features(X, sfreq):
    """Per-window features for MMD, PRD and kNN.

    Per channel: log band power in delta, theta, alpha, beta and gamma (30-45 Hz), log variance
    and log line length; plus the upper triangle of the channel correlation matrix (spatial
    pattern, e.g. the frontal spread of a blink).

    Returns
    -------
    ndarray, shape (n_windows, 7 * n_chans + n_chans * (n_chans - 1) / 2)
    """
    X = _check(X)
    f, p = welch_psd(X, sfreq)
    feats = [np.log(p[..., (f >= lo) & (f < hi)].mean(-1) + 1e-12) for lo, hi in FEATURE_BANDS.values()]
    feats.append(np.log(X.var(-1) + 1e-12))
    feats.append(np.log(np.abs(np.diff(X, axis=-1)).mean(-1) + 1e-12))
    Z = X - X.mean(-1, keepdims=True)
    Z = Z / np.maximum(Z.std(-1, keepdims=True), 1e-12)
    corr = np.einsum("nct,ndt->ncd", Z, Z) / X.shape[-1]
    iu = np.triu_indices(X.shape[1], 1)
    return np.concatenate([np.concatenate(feats, 1), corr[:, iu[0], iu[1]]], 1)


class FeatureScaler:
    """Standardise features with the mean/std of a reference (real) set."""

    def fit(self, F):
        self.mean_, self.std_ = F.mean(0), F.std(0) + 1e-8
        return self

    def transform(self, F):
        return (F - self.mean_) / self.std_


def mmd_rbf(A, B, *, bandwidth=None, n_permutations=200, seed=0):
    """Unbiased MMD² between two samples with a Gaussian RBF kernel and a permutation test.

    Parameters
    ----------
    A, B : ndarray, shape (n, d) and (m, d)
        Samples (e.g. standardised :func:`window_features`); windows are flattened if 3-D.
    bandwidth : float | None
        Kernel width ``sigma`` in ``k(a, b) = exp(-||a - b||² / (2 sigma²))``; None uses the median
        heuristic (median pairwise distance of the pooled sample).
    n_permutations : int
        Label permutations for the p-value (0 skips the test).

    Returns
    -------
    dict with ``mmd2`` (unbiased; may be slightly negative when the samples match), ``bandwidth``
    and ``p_value`` (fraction of permutations with MMD² >= observed, with the +1 correction).
    """
    A = np.asarray(A, np.float64).reshape(len(A), -1)
    B = np.asarray(B, np.float64).reshape(len(B), -1)
    if len(A) < 2 or len(B) < 2:
        raise ValueError(f"MMD needs at least 2 samples per set, got {len(A)} and {len(B)}.")
    Z = np.concatenate([A, B])
    sq = np.sum(Z**2, 1)
    D2 = np.maximum(sq[:, None] + sq[None] - 2 * Z @ Z.T, 0)
    if bandwidth is None:
        iu = np.triu_indices(len(Z), 1)
        bandwidth = float(np.sqrt(np.median(D2[iu])))
    K = np.exp(-D2 / (2 * bandwidth**2))
    n = len(A)

    def stat(idx):
        a, b = idx[:n], idx[n:]
        Kaa, Kbb, Kab = K[np.ix_(a, a)], K[np.ix_(b, b)], K[np.ix_(a, b)]
        m1, m2 = len(a), len(b)
        return (
            (Kaa.sum() - np.trace(Kaa)) / (m1 * (m1 - 1))
            + (Kbb.sum() - np.trace(Kbb)) / (m2 * (m2 - 1))
            - 2 * Kab.mean()
        )

    idx = np.arange(len(Z))
    obs = float(stat(idx))
    p = None
    if n_permutations:
        rng = np.random.default_rng(seed)
        null = np.array([stat(rng.permutation(idx)) for _ in range(n_permutations)])
        p = float((1 + np.sum(null >= obs)) / (1 + n_permutations))
    return {"mmd2": obs, "bandwidth": bandwidth, "p_value": p}


def prd(real_feats, fake_feats, *, n_clusters=20, n_angles=1001, n_runs=10, seed=0):
    """Precision/recall for distributions (Sajjadi et al., NeurIPS 2018) on feature vectors.

    Both sets are clustered together (k-means); the PRD curve compares the two cluster
    histograms. Returns the curve and its summary ``F_8`` (recall-like) and ``F_1/8``
    (precision-like), averaged over ``n_runs`` clusterings.
    """
    from sklearn.cluster import KMeans

    R, Fk = np.asarray(real_feats), np.asarray(fake_feats)
    Z = np.concatenate([R, Fk])
    slopes = np.tan(np.linspace(1e-6, np.pi / 2 - 1e-6, n_angles))
    precs, recs = [], []
    for run in range(n_runs):
        lab = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed + run).fit_predict(Z)
        p = np.bincount(lab[: len(R)], minlength=n_clusters) / len(R)
        q = np.bincount(lab[len(R) :], minlength=n_clusters) / len(Fk)
        alpha = np.minimum(slopes[:, None] * p[None], q[None]).sum(1)  # precision
        precs.append(alpha)
        recs.append(alpha / slopes)  # recall
    prec, rec = np.clip(np.mean(precs, 0), 0, 1), np.clip(np.mean(recs, 0), 0, 1)

    def f_beta(beta):
        v = (1 + beta**2) * prec * rec / np.maximum(beta**2 * prec + rec, 1e-12)
        return float(v.max())

    return {"precision": prec, "recall": rec, "F8": f_beta(8.0), "F1/8": f_beta(1 / 8)}


def distribution_metrics(real, fake, sfreq, *, n_permutations=200, seed=0, scaler=None):
    """All two-sample metrics for one pair of window sets (one class), as a flat dict."""
    real, fake = _check_pair(real, fake)
    bp = band_power_deltas(real, fake, sfreq)
    Fr, Ff = window_features(real, sfreq), window_features(fake, sfreq)
    scaler = scaler or FeatureScaler().fit(Fr)
    Fr, Ff = scaler.transform(Fr), scaler.transform(Ff)
    mmd = mmd_rbf(Fr, Ff, n_permutations=n_permutations, seed=seed)
    pr = prd(Fr, Ff, seed=seed)
    out = {f"bp_{b}": v for b, v in bp.items()}
    out.update(
        cov_fro=covariance_distance(real, fake),
        acf_l2=acf_distance(real, fake),
        mmd2=mmd["mmd2"],
        mmd_p=mmd["p_value"],
        prd_F8=pr["F8"],
        prd_F1_8=pr["F1/8"],
    )
    return out


# -- specificity and utility -----------------------------------------------------------------


def _balanced_accuracy(y_true, y_pred):
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y_true, y_pred))


def fit_knn(X_real, y_real, sfreq, k=5):
    """kNN on standardised :func:`window_features`; returns ``predict(X) -> labels``."""
    from sklearn.neighbors import KNeighborsClassifier

    F = window_features(X_real, sfreq)
    sc = FeatureScaler().fit(F)
    knn = KNeighborsClassifier(n_neighbors=k).fit(sc.transform(F), y_real)
    return lambda X: knn.predict(sc.transform(window_features(X, sfreq)))


def train_cnn(X, y, sfreq, *, n_classes=3, epochs=15, seed=0, batch_size=64, lr=2e-3, amp_scale=50.0):
    """Train braindecode's EEGNet on windows (µV divided by ``amp_scale``); returns ``predict``.

    A fixed amplitude scale (not per-window normalisation) is used on purpose: amplitude is
    part of what makes a window an artifact.
    """
    import torch
    from braindecode.models import EEGNet

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    Xt = torch.as_tensor(np.asarray(X) / amp_scale, dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    net = EEGNet(n_chans=Xt.shape[1], n_outputs=n_classes, n_times=Xt.shape[2], kernel_length=32)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    # class-balanced loss: the augmented sets need not be balanced
    w = torch.as_tensor(len(yt) / (n_classes * np.maximum(np.bincount(yt.numpy(), minlength=n_classes), 1)),
                        dtype=torch.float32)
    net.train()
    # ``epochs`` may be fractional (a step-matched control): the last pass stops part-way
    n_batches = int(np.ceil(len(Xt) / batch_size))
    total = int(round(epochs * n_batches))
    done = 0
    while done < total:
        perm = torch.randperm(len(Xt), generator=g)
        for s in range(0, len(Xt), batch_size):
            if done >= total:
                break
            done += 1
            b = perm[s : s + batch_size]
            if len(b) < 2:
                continue
            loss = torch.nn.functional.cross_entropy(net(Xt[b]), yt[b], weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()

    @torch.no_grad()
    def predict(Xn):
        Xn = torch.as_tensor(np.asarray(Xn) / amp_scale, dtype=torch.float32)
        return torch.cat([net(Xn[s : s + 512]).argmax(1) for s in range(0, len(Xn), 512)]).numpy()

    return predict


def class_recovery(predictors, X_fake, y_fake):
    """Balanced accuracy of each real-trained predictor on synthetic windows and their requested labels.

    Parameters
    ----------
    predictors : dict name -> callable(X) -> labels
        E.g. ``{"knn": fit_knn(...), "cnn": train_cnn(...)}``.
    """
    return {name: _balanced_accuracy(y_fake, pred(X_fake)) for name, pred in predictors.items()}


def mean_ci(values, level=0.95):
    """Mean and t-based confidence interval half-width over seeds."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    h = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(h)


def augmentation_utility(X_train, y_train, X_test, y_test, synth, sfreq, *, seeds=(0, 1, 2, 3, 4), epochs=15,
                         match_steps=False):
    """Artifact classifier on real vs real + synthetic training windows, tested on held-out real.

    Parameters
    ----------
    synth : dict name -> (X_syn, y_syn) or callable(seed) -> (X_syn, y_syn)
        Synthetic sets to add (a callable lets each seed draw fresh windows).
    seeds : sequence of int
        One classifier per seed and condition; the real-only run of a seed is the paired control.
    match_steps : bool
        Also train a real-only control with as many optimiser steps as each augmented run
        (``epochs * (n_real + n_synthetic) / n_real`` epochs), condition ``"real@<name>"``: with a
        fixed number of epochs the augmented runs take more steps, which alone can help.

    Returns
    -------
    dict condition -> {"bacc": [per seed], "mean", "ci95", "delta_mean", "delta_ci95"} where
    ``delta`` is the paired difference to real-only training for the same seed; for an augmented
    condition with ``match_steps`` also ``delta_matched_mean`` / ``delta_matched_ci95``, the
    paired difference to the step-matched real-only control.
    """
    res = {"real": {"bacc": []}}
    for name in synth:
        res[f"real+{name}"] = {"bacc": []}
    matched = {}
    for i, seed in enumerate(seeds):
        pred = train_cnn(X_train, y_train, sfreq, seed=seed, epochs=epochs)
        res["real"]["bacc"].append(_balanced_accuracy(y_test, pred(X_test)))
        for name, s in synth.items():
            Xs, ys = s(seed) if callable(s) else s
            Xa = np.concatenate([X_train, Xs]).astype(np.float32)
            ya = np.concatenate([y_train, ys])
            pred = train_cnn(Xa, ya, sfreq, seed=seed, epochs=epochs)
            res[f"real+{name}"]["bacc"].append(_balanced_accuracy(y_test, pred(X_test)))
            if match_steps:
                ep = epochs * len(ya) / len(y_train)
                key = f"real@{ep:.2f}ep"  # synthetic sets of one size share one control
                matched[name] = key
                if len(res.setdefault(key, {"bacc": []})["bacc"]) == i:  # not yet trained for this seed
                    pred = train_cnn(X_train, y_train, sfreq, seed=seed, epochs=ep)
                    res[key]["bacc"].append(_balanced_accuracy(y_test, pred(X_test)))
    base = np.asarray(res["real"]["bacc"])
    for name, r in res.items():
        r["mean"], r["ci95"] = mean_ci(r["bacc"])
        r["delta_mean"], r["delta_ci95"] = mean_ci(np.asarray(r["bacc"]) - base)
    for name, key in matched.items():
        r = res[f"real+{name}"]
        r["delta_matched_mean"], r["delta_matched_ci95"] = mean_ci(np.asarray(r["bacc"]) - np.asarray(res[key]["bacc"]))
    return res


__all__ = [
    "BANDS",
    "welch_psd",
    "band_powers",
    "band_power_deltas",
    "covariance_distance",
    "autocorrelation",
    "acf_distance",
    "window_features",
    "FeatureScaler",
    "mmd_rbf",
    "prd",
    "distribution_metrics",
    "fit_knn",
    "train_cnn",
    "class_recovery",
    "mean_ci",
    "augmentation_utility",
]
