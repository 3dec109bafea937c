"""Before/after HTML reports (mne.Report) for cleaned recordings."""

from __future__ import annotations

import html

import numpy as np

__all__ = ["cleaning_report"]


def _excerpt(raw, start, stop, picks):
    return raw.get_data(picks, start=start, stop=stop)


def cleaning_report(before, after, summary, path, *, n_channels=6, excerpt_s=10.0, psd_s=120.0, overwrite=False,
                    title="neurodecode clean"):
    """Write an HTML report comparing a recording before and after cleaning.

    Sections: summary and settings; before/after traces of the ``n_channels`` channels with the
    largest removed RMS, on the ``excerpt_s`` seconds where the most was removed; PSDs before and
    after (Welch, on at most ``psd_s`` seconds, read lazily); removed RMS per channel; the
    annotations the cleaning added.

    Parameters
    ----------
    before, after : mne.io.BaseRaw
    summary : dict
        As returned by :func:`neurodecode.artifacts.clean.clean_raw`.
    path : path-like
        ``.html`` output, written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mne

    from .utils import atomic_path

    sf = before.info["sfreq"]
    removed = {}
    for per in summary.get("removed_rms_uv", {}).values():
        for ch, v in per.items():
            removed[ch] = removed.get(ch, 0.0) + v
    chans = sorted(removed, key=removed.get, reverse=True)[:n_channels]
    picks = [before.ch_names.index(c) for c in chans]
    # locate the excerpt with the largest removed signal (coarse scan, bounded memory)
    n_ex = int(min(excerpt_s * sf, before.n_times))
    best, best_start = -1.0, 0
    step = max(n_ex, int(30 * sf))
    for s in range(0, max(1, before.n_times - n_ex + 1), step):
        d = _excerpt(before, s, s + n_ex, picks) - _excerpt(after, s, s + n_ex, picks)
        v = float((d**2).sum())
        if v > best:
            best, best_start = v, s
    t = (best_start + np.arange(n_ex)) / sf
    xb, xa = _excerpt(before, best_start, best_start + n_ex, picks), _excerpt(after, best_start, best_start + n_ex, picks)
    fig1, axes = plt.subplots(len(picks), 1, figsize=(10, 1.4 * len(picks) + 0.6), sharex=True, squeeze=False)
    for ax, c, b, a in zip(axes[:, 0], chans, xb, xa):
        ax.plot(t, b * 1e6, lw=0.6, color="0.6", label="before")
        ax.plot(t, a * 1e6, lw=0.6, color="C0", label="after")
        ax.set_ylabel(f"{c}\nuV", fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig1.suptitle("Most-changed channels, before (grey) and after (blue)")
    fig1.tight_layout()
    # PSDs
    n_psd = int(min(psd_s * sf, before.n_times))
    eeg = mne.pick_types(before.info, eeg=True, exclude="bads")
    from scipy.signal import welch

    fb, pb = welch(before.get_data(eeg, stop=n_psd), fs=sf, nperseg=int(min(2 * sf, n_psd)))
    _, pa = welch(after.get_data(eeg, stop=n_psd), fs=sf, nperseg=int(min(2 * sf, n_psd)))
    fig2, ax = plt.subplots(figsize=(7, 4))
    ax.semilogy(fb, pb.mean(0), color="0.5", label="before")
    ax.semilogy(fb, pa.mean(0), color="C0", label="after")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("PSD (V^2/Hz), mean over EEG channels")
    ax.legend()
    fig2.tight_layout()
    # removed per channel
    names = list(removed)
    fig3, ax = plt.subplots(figsize=(max(6, 0.18 * len(names)), 3.5))
    ax.bar(range(len(names)), [removed[n] for n in names], color="C3")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("removed RMS (uV)")
    fig3.tight_layout()
    # annotations added
    added = [a for a in after.annotations if a["description"].startswith(("EDITED_", "BAD_"))
             and a["description"] not in set(before.annotations.description)]
    rows = "".join(f"<tr><td>{a['onset'] - after.first_time:.1f}</td><td>{a['duration']:.1f}</td>"
                   f"<td>{html.escape(a['description'])}</td></tr>" for a in added[:500])
    table = ("<table><tr><th>onset (s)</th><th>duration (s)</th><th>description</th></tr>" + rows + "</table>"
             if added else "<p>No spans were annotated.</p>")
    info_rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                        for k, v in summary.items() if k not in ("removed_rms_uv",))
    rep = mne.Report(title=title, verbose="error")
    rep.add_html(f"<table>{info_rows}</table>", title="Summary")
    rep.add_figure(fig1, title="Before / after traces", caption=f"{excerpt_s:g} s where most was removed")
    rep.add_figure(fig2, title="PSD before / after", caption=f"Welch, 2 s windows, first {n_psd / sf:.0f} s")
    rep.add_figure(fig3, title="Removed signal per channel")
    rep.add_html(table, title=f"Annotations added ({len(added)})")
    plt.close("all")
    with atomic_path(path, overwrite=overwrite) as tmp:
        rep.save(tmp, open_browser=False, overwrite=True, verbose="error")
    return path
