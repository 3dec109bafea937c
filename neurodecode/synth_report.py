"""HTML report comparing real and synthetic artifact windows (mne.Report).

Sections: mean Welch PSD per class (real vs synthetic, every channel), example traces, and the
fidelity table from :mod:`neurodecode.artifacts.fidelity` (band-power deltas, covariance,
autocorrelation, MMD with permutation p-value, PRD, kNN class recovery).
"""

import json

import numpy as np

from .utils import atomic_path


def _psd_figure(real, fake, sfreq, ch_names, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .artifacts.fidelity import welch_psd

    fr, pr = welch_psd(real, sfreq)
    ff, pf = welch_psd(fake, sfreq)
    n = len(ch_names)
    fig, axes = plt.subplots(2, (n + 1) // 2, figsize=(3 * ((n + 1) // 2), 5), sharex=True, sharey=True)
    for i, ax in enumerate(np.ravel(axes)[:n]):
        ax.semilogy(fr, pr[:, i].mean(0), label="real", color="k")
        ax.semilogy(ff, pf[:, i].mean(0), label="synthetic", color="tab:red")
        ax.set_title(ch_names[i], fontsize=9)
    np.ravel(axes)[0].legend(fontsize=8)
    fig.supxlabel("Hz")
    fig.supylabel("µV²/Hz")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _traces_figure(real, fake, sfreq, ch_names, title, n_examples=3, seed=0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(2, n_examples, figsize=(4 * n_examples, 6), sharex=True)
    t = np.arange(real.shape[-1]) / sfreq
    for row, (X, name) in enumerate(((real, "real"), (fake, "synthetic"))):
        for j, k in enumerate(rng.choice(len(X), n_examples, replace=False)):
            ax = axes[row, j]
            off = 4 * np.median(np.abs(real)) + 1e-6
            for c in range(X.shape[1]):
                ax.plot(t, X[k, c] - c * off, lw=0.6, color="k" if row == 0 else "tab:red")
            ax.set_yticks([-c * off for c in range(X.shape[1])], ch_names, fontsize=7)
            ax.set_title(f"{name} #{k}", fontsize=9)
    fig.supxlabel("s")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fidelity_table(real_by_class, fake_by_class, sfreq, *, knn=None, n_permutations=200, seed=0):
    """Rows of metrics, one per class present in both sets (plus kNN recovery if given)."""
    from .artifacts.fidelity import distribution_metrics

    rows = []
    for lab, F in fake_by_class.items():
        if lab not in real_by_class:
            continue
        row = {"label": lab, "n_real": len(real_by_class[lab]), "n_synthetic": len(F)}
        row.update(distribution_metrics(real_by_class[lab], F, sfreq, n_permutations=n_permutations, seed=seed))
        if knn is not None:
            row["knn_recovery"] = float(np.mean(knn[0](F) == knn[1].index(lab)))
        rows.append(row)
    return rows


def synthesis_report(store, synthetic, out, *, split="test", overwrite=False, n_permutations=200):
    """Write an HTML report comparing a synthetic window store with real windows.

    Parameters
    ----------
    store : path-like
        Real artifact-window store (see :mod:`neurodecode.datasets.artifact_windows`).
    synthetic : path-like
        Store written by ``neurodecode synth``.
    out : path-like
        ``.html`` file (atomic; not overwritten unless asked).
    split : str
        Real split used as reference (the kNN is always trained on ``train``).

    Returns
    -------
    list of dict
        The fidelity table.
    """
    import mne

    from .artifacts.fidelity import fit_knn
    from .datasets.artifact_windows import CHANNELS, LABELS, SFREQ, load_artifact_windows

    Xr, yr, _ = load_artifact_windows(store, split=split)
    Xs, ys, _ = load_artifact_windows(synthetic)
    Xtr, ytr, _ = load_artifact_windows(store, split="train")
    knn = (fit_knn(Xtr, ytr, SFREQ), list(LABELS))
    real = {LABELS[c]: Xr[yr == c] for c in np.unique(yr)}
    fake = {LABELS[c]: Xs[ys == c] for c in np.unique(ys)}
    rows = fidelity_table(real, fake, SFREQ, knn=knn, n_permutations=n_permutations)
    rep = mne.Report(title="Synthetic vs real EEG artifact windows", verbose="ERROR")
    for lab in fake:
        if lab not in real:
            continue
        rep.add_figure(_psd_figure(real[lab], fake[lab], SFREQ, CHANNELS, f"{lab}: mean Welch PSD"),
                       title=f"PSD {lab}", section="Spectra")
        rep.add_figure(_traces_figure(real[lab], fake[lab], SFREQ, CHANNELS, f"{lab}: example windows"),
                       title=f"Traces {lab}", section="Traces")
    cols = list(rows[0]) if rows else []
    html = "<table border=1 cellpadding=3><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
    for r in rows:
        html += "<tr>" + "".join(f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{v}</td>" for v in r.values())
        html += "</tr>"
    html += "</table><p>Reference: real split " + split + "; metrics in µV units; kNN trained on the real train split.</p>"
    rep.add_html(html, title="Fidelity table", section="Fidelity")
    rep.add_html(f"<pre>{json.dumps(rows, indent=1)}</pre>", title="Fidelity (JSON)", section="Fidelity")
    import matplotlib.pyplot as plt

    plt.close("all")
    with atomic_path(out, overwrite=overwrite) as tmp:
        rep.save(str(tmp), overwrite=True, open_browser=False, verbose="ERROR")
    return rows
