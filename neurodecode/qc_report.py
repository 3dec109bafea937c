"""HTML quality-control report for hvEEGNet scores (built on :class:`mne.Report`)."""

import html
import logging

import numpy as np

from .utils import atomic_path

logger = logging.getLogger("neurodecode")

__all__ = ["qc_report"]


def _score_figure(scores):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3), layout="constrained")
    ax.plot(scores.onsets, scores.scores, lw=0.8, color="k", label="window score")
    flagged = scores.flagged
    ax.scatter(scores.onsets[flagged], scores.scores[flagged], s=10, color="crimson", label="flagged", zorder=3)
    if np.isfinite(scores.threshold):
        ax.axhline(scores.threshold, color="crimson", ls="--", lw=1, label=f"threshold {scores.threshold:.2f}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("score (largest channel robust z)")
    ax.set_yscale("symlog")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def _overlay_figure(window, recon, scores_row, ch_names, sfreq, onset, n_channels=4, coarse=None):
    import matplotlib.pyplot as plt

    order = np.argsort(scores_row)[::-1][:n_channels]
    t = np.arange(window.shape[-1]) / sfreq + onset
    fig, axes = plt.subplots(len(order), 1, figsize=(10, 1.6 * len(order)), sharex=True, layout="constrained")
    for ax, c in zip(np.atleast_1d(axes), order):
        ax.plot(t, window[c], color="k", lw=0.9, label="input")
        ax.plot(t, recon[c], color="tab:orange", lw=0.9, label="hvEEGNet reconstruction")
        if coarse is not None:
            ax.plot(t, coarse[c], color="tab:blue", lw=0.9, ls="--", label="coarse prediction (scored)")
        ax.set_ylabel(f"{ch_names[c]}\n(uV)", fontsize=8)
        ax.set_title(f"{ch_names[c]}: channel score {scores_row[c]:.2f}", fontsize=8, loc="left")
    np.atleast_1d(axes)[0].legend(loc="upper right", fontsize=7)
    np.atleast_1d(axes)[-1].set_xlabel("time (s)")
    return fig


def qc_report(path, scores, model, raw, *, title="hvEEGNet quality control", n_worst=4, overwrite=False, missing="raise"):
    """Write an HTML report: summary, score over time, overlays of the worst windows.

    Parameters
    ----------
    path : path-like
        Output ``.html`` (written atomically; existing file kept unless ``overwrite``).
    scores : QCScores
        From :meth:`HVEEGNet.score` on ``raw``.
    model : HVEEGNet
        The model that produced ``scores`` (reconstructs the worst windows again).
    raw : mne.io.BaseRaw
    n_worst : int
        Windows shown with their reconstruction.
    missing : str
        Channel policy used for scoring (to re-read the same windows).

    Returns
    -------
    path : Path
    """
    import matplotlib.pyplot as plt
    import mne

    summary = scores.summary()
    report = mne.Report(title=title, verbose="error")
    rows = [
        ("recording", html.escape(str(raw.filenames[0]) if raw.filenames and raw.filenames[0] else "(in memory)")),
        ("duration", f"{raw.n_times / raw.info['sfreq']:.1f} s"),
        ("windows scored", f"{summary['n_windows']} x {scores.durations[0]:g} s" if len(scores.durations) else "0"),
        ("flagged", f"{summary['n_flagged']} ({100 * summary['fraction_flagged']:.1f}% of time)"),
        ("threshold", f"{summary['threshold']:.3f}"),
        ("worst channels", html.escape(", ".join(f"{n} ({k} windows)" for n, k in summary["worst_channels"]) or "none")),
        ("interpolated channels", html.escape(", ".join(scores.interpolated) or "none")),
    ]
    table = "<table>" + "".join(f"<tr><th style='text-align:left'>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
    report.add_html(table, title="Summary")
    fig = _score_figure(scores)
    report.add_figure(fig, title="Score over time", caption="Each point is one window; red points are above the threshold.")
    plt.close(fig)
    worst = np.argsort(scores.scores)[::-1][:n_worst]
    if len(worst):
        w, r, c = model.windows_at(raw, scores.onsets[worst], missing=missing, coarse=True)
        for k, i in enumerate(worst):
            fig = _overlay_figure(w[k], r[k], scores.channel_scores[i], scores.ch_names, model.sfreq, scores.onsets[i],
                                  coarse=c[k])
            flag = "flagged" if scores.flagged[i] else "not flagged"
            report.add_figure(
                fig, title=f"Window at {scores.onsets[i]:.1f} s (score {scores.scores[i]:.2f}, {flag})",
                caption="Input (black), full reconstruction (orange) and the coarse prediction the score compares "
                "the input with (blue, dashed) on the channels with the highest scores; model rate, demeaned per window.",
            )
            plt.close(fig)
    with atomic_path(path, overwrite=overwrite) as tmp:
        report.save(tmp, open_browser=False, overwrite=True, verbose="error")
    return path
