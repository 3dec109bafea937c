"""Outputs of ``neurodecode reconstruct``: image grids, per-image scores and an HTML report."""

import json
from pathlib import Path

import numpy as np

from .utils import UsageError, atomic_path


def image_grid(rows, row_titles, flags=None, scores=None, max_cols=16):
    """Matplotlib figure: one row per image set (e.g. seen, reconstructed), one column per trial.

    Parameters
    ----------
    rows : list of ndarray, each (n, H, W) or (n, H, W, C) in [0, 1]
    row_titles : list of str
    flags : ndarray of bool, shape (n,) | None
        Reconstructions to frame in red (flagged as possible hallucinations).
    scores : ndarray, shape (n,) | None
        Hallucination score written under each column.
    max_cols : int
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(rows[0]), max_cols)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.25 * len(rows)), squeeze=False)
    for r, (imgs, title) in enumerate(zip(rows, row_titles)):
        for c in range(n):
            ax = axes[r, c]
            im = np.asarray(imgs[c])
            if im.ndim == 3 and im.shape[-1] == 1:
                im = im[..., 0]
            ax.imshow(im, cmap="gray" if im.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=7)
            if r == len(rows) - 1:
                if flags is not None and flags[c]:
                    for s in ax.spines.values():
                        s.set_edgecolor("red")
                        s.set_linewidth(2.5)
                if scores is not None:
                    ax.set_xlabel(f"{scores[c]:.2g}", fontsize=6, color="red" if flags is not None and flags[c] else "k")
    fig.tight_layout()
    return fig


def write_reconstruction_outputs(outdir, recon, scores, flags, energy, *, seen=None, meta=None, overwrite=False):
    """Write ``grid.png``, ``reconstructions.npz``, ``scores.csv``, ``summary.json`` and ``report.html``.

    Parameters
    ----------
    outdir : path-like
        Created if needed; existing outputs are only replaced with ``overwrite=True``.
    recon : ndarray, shape (n, H, W, C) in [0, 1]
    scores : ndarray, shape (n,)
        Hallucination scores.
    flags : ndarray of bool, shape (n,) | None
    energy : dict
        Per-image energy estimate (from the pipeline).
    seen : ndarray, shape (n, H', W'[, C]) | None
        The images that were shown, when known.
    meta : dict | None
        Provenance written to the summary and report (decoder, generator, scheduler, steps ...).

    Returns
    -------
    dict of Path
    """
    import mne

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    names = ["grid.png", "reconstructions.npz", "scores.csv", "summary.json", "report.html"]
    paths = {n: outdir / n for n in names}
    if not overwrite:
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing:
            raise UsageError(f"Output files already exist: {', '.join(existing)}; pass --overwrite to replace them.")
    n = len(recon)
    if len(scores) != n or (seen is not None and len(seen) != n):
        raise UsageError("recon, scores and seen must have one entry per trial.")
    rows, titles = ([seen, recon], ["seen", "reconstructed"]) if seen is not None else ([recon], ["reconstructed"])
    fig = image_grid(rows, titles, flags=flags, scores=scores)
    with atomic_path(paths["grid.png"], overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=120)
    with atomic_path(paths["reconstructions.npz"], overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=np.asarray(recon, np.float32), hallucination_score=np.asarray(scores),
                                hallucinated=np.zeros(n, bool) if flags is None else np.asarray(flags))
    lines = ["index,hallucination_score,flagged"]
    lines += [f"{i},{s:.6g},{'' if flags is None else int(flags[i])}" for i, s in enumerate(scores)]
    with atomic_path(paths["scores.csv"], overwrite=overwrite) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    summary = {
        "n_images": int(n),
        "n_flagged": None if flags is None else int(np.sum(flags)),
        "hallucination_score": {"mean": float(np.mean(scores)), "max": float(np.max(scores))},
        "energy_per_image": energy,
        "meta": meta or {},
    }
    with atomic_path(paths["summary.json"], overwrite=overwrite) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2, default=str))

    report = mne.Report(title="neurodecode reconstruct", verbose="error")
    report.add_figure(fig, title="Seen vs reconstructed", caption=(
        "Framed in red: hallucination score above the threshold calibrated on held-out data "
        "(the reconstruction should not be trusted)." if flags is not None else
        "No hallucination threshold is calibrated for this scheduler and number of steps; scores are shown only."))
    rows_html = "".join(
        f"<tr><td>{i}</td><td>{s:.4g}</td><td>{'' if flags is None else ('yes' if flags[i] else 'no')}</td></tr>"
        for i, s in enumerate(scores)
    )
    report.add_html(
        "<table><tr><th>trial</th><th>hallucination score</th><th>flagged</th></tr>" + rows_html + "</table>",
        title="Hallucination scores",
    )
    e = energy or {}
    report.add_html(
        "<p>Estimated energy per image (45 nm: 4.6 pJ per MAC, 0.9 pJ per synaptic operation, counted from the "
        f"activity of this run): <b>{e.get('energy_mj', float('nan')):.4g} mJ</b>; MACs {e.get('macs', 0):.3g}, "
        f"synaptic operations {e.get('sops', 0):.3g}.</p><pre>{json.dumps(meta or {}, indent=1, default=str)}</pre>",
        title="Energy and provenance",
    )
    with atomic_path(paths["report.html"], overwrite=overwrite) as tmp:
        report.save(tmp, open_browser=False, overwrite=True, verbose="error")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths
