"""A small, self-contained, deterministic HTML report per recording.

``mne.Report`` embeds timestamps and random ids, so its bytes change on every run; the batch
promises that a resumed run gives byte-identical outputs, so this page is written by hand:
a summary table, the steps with their cache keys and output hashes, annotation counts,
warnings, and the power spectrum before and after cleaning as inline SVG (no scripts).
"""

import html
from pathlib import Path

import numpy as np

from ..utils import atomic_path


def _psd(path, segments, seg_s):
    """Mean log10 power spectral density over data channels, from a few evenly spaced segments."""
    from scipy.signal import welch

    from .steps import _data_picks, open_raw

    raw = open_raw(path, [])
    sf = raw.info["sfreq"]
    picks = _data_picks(raw)
    n = int(round(seg_s * sf))
    if not len(picks) or raw.n_times < n:
        return None, None
    starts = np.linspace(0, raw.n_times - n, segments).astype(int)
    acc = None
    for s in starts:
        x = np.nan_to_num(raw.get_data(picks=picks, start=int(s), stop=int(s) + n))
        f, p = welch(x, fs=sf, nperseg=min(n, int(sf * 2)), axis=1)
        acc = p.mean(axis=0) if acc is None else acc + p.mean(axis=0)
    return f, np.log10(acc / len(starts) + 1e-30)


def _svg(curves, width=640, height=260):
    """Line plot of (label, colour, f, y) curves; log-power against frequency."""
    curves = [c for c in curves if c[2] is not None]
    if not curves:
        return "<p>No spectrum (no data channels, or recording shorter than one segment).</p>"
    fmax = max(c[2][-1] for c in curves)
    ys = np.concatenate([c[3] for c in curves])
    lo, hi = float(ys.min()), float(ys.max())
    hi = hi if hi > lo else lo + 1
    pad = 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<rect x="{pad}" y="10" width="{width - pad - 10}" height="{height - pad - 10}" fill="none" stroke="#999"/>']
    for i, (label, colour, f, y) in enumerate(curves):
        px = pad + (f / fmax) * (width - pad - 10)
        py = 10 + (hi - y) / (hi - lo) * (height - pad - 10)
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
        parts.append(f'<text x="{width - 150}" y="{28 + 16 * i}" fill="{colour}" font-size="12">{html.escape(label)}</text>')
    parts.append(f'<text x="{pad}" y="{height - 12}" font-size="12">0 Hz</text>')
    parts.append(f'<text x="{width - 60}" y="{height - 12}" font-size="12">{fmax:.0f} Hz</text>')
    parts.append(f'<text x="2" y="20" font-size="11">log10 V²/Hz</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(rows):
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table>{body}</table>"


def write_report(path, ctx, config):
    """Write the report of one recording atomically to ``path``."""
    e = html.escape
    up = ctx.upstream
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(ctx.base)}</title>",
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}td{padding:2px 8px;"
        "border-bottom:1px solid #ddd;font-size:13px;word-break:break-all}</style></head><body>",
        f"<h1>{e(ctx.base)}</h1>",
        _table([("recording", Path(ctx.recording).name), ("datatype", ctx.datatype)]
               + [(k, v) for k, v in sorted(up.get("_input", {}).items())]),
        "<h2>Steps</h2>",
    ]
    for step, info in up.items():
        if step.startswith("_"):
            continue
        summ = info.get("summary", {})
        rows = [("cache key", info["key"][:16]), ("configuration", info["config"])]
        rows += [(f"output {Path(rel).name}", digest) for rel, digest in sorted(info["outputs"].items())]
        rows += [(k, v) for k, v in sorted(summ.items())]
        parts += [f"<h3>{e(step)}</h3>", _table(rows)]
    warn = [w for info in up.values() for w in info.get("warnings", [])]
    parts.append("<h2>Warnings</h2>")
    parts.append("<ul>" + "".join(f"<li>{e(w)}</li>" for w in warn) + "</ul>" if warn else "<p>None.</p>")
    if "clean" in up:
        clean_out = ctx.deriv / next(iter(up["clean"]["outputs"]))
        curves = [("input", "#888", *_psd(ctx.recording, config["psd_segments"], config["psd_segment_s"])),
                  ("clean", "#c33", *_psd(clean_out, config["psd_segments"], config["psd_segment_s"]))]
        parts += ["<h2>Power spectrum, mean over data channels</h2>", _svg(curves)]
    parts.append("</body></html>\n")
    with atomic_path(path, overwrite=True, inputs=[ctx.recording]) as tmp:
        Path(tmp).write_text("".join(parts))
