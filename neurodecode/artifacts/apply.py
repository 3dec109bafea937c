"""Run a segment denoiser over a whole multichannel recording, chunk by chunk.

How a recording is cleaned (per EEG channel):

1. A chunk of ``chunk_s`` seconds is read (plus a margin on each side, so that filters and
   windows see context; margins are discarded), so memory stays bounded on recordings of any
   length: peak use is a few chunks, and outputs larger than ``MEMMAP_BYTES`` live in a temporary
   memory-mapped file (unlinked at once, freed with the Raw).
2. The chunk is high-passed at the model's ``l_freq`` (what lies below is never touched), resampled
   to the model's rate, cut into windows of the model's length with 50 % overlap, each scaled to
   unit std (the EEGdenoiseNet normalisation), denoised, scaled back and overlap-added with
   ``sin^2`` weights (which sum to one).
3. The *removed* signal is resampled back to the recording's rate and subtracted from the
   original samples; the output has the original rate, length and channels.

On the gated whole-recording path, cheap screens (:mod:`.screens`) first mark, per chunk and
channel, the windows that may hold the artifact at all; only 6 s blocks around them go through
steps 2-3 (:func:`_denoise_blocks`); the defaults are 25 % overlap and a bfloat16 transformer where
the CPU has it (see ``docs/benchmarks/artifacts.md``, "Speed").
"""

from __future__ import annotations

import json
import mmap
import os
import tempfile
from fractions import Fraction

import numpy as np

from ..utils import InputFileError, UsageError

__all__ = ["denoise_array", "apply_denoiser", "iter_chunks", "OutputBuffer", "spans_from_mask", "MEMMAP_BYTES",
           "MIN_SFREQ"]

MEMMAP_BYTES = 256 * 1024**2
MIN_SFREQ = {"emg": 100.0, "eog": 50.0}


# ------------------------------------------------------------------------------------------------
def _ratio(src, dst):
    frac = Fraction(float(dst) / float(src)).limit_denominator(1000)
    return frac.numerator, frac.denominator


def _resample(x, src, dst):
    from scipy.signal import resample_poly

    if src == dst:
        return x
    up, down = _ratio(src, dst)
    return resample_poly(x, up, down, axis=-1)


def _highpass(x, sfreq, l_freq):
    from scipy.signal import butter, sosfiltfilt

    if not l_freq:
        return x
    sos = butter(4, l_freq, btype="highpass", fs=sfreq, output="sos")
    return sosfiltfilt(sos, x, axis=-1)


# windows per forward pass: large batches run the small convolutions efficiently, and both bound the
# activation memory (a 2048-window transformer batch peaked near 1 GB); with the bfloat16 transformer,
# batches of 64-128 windows ran fastest on one thread (0.22 ms/window vs 0.28 at 256)
_AE_BATCH = 1024
_TF_BATCH = 128


def _normalise(seg):
    """Windows scaled to zero mean and unit std (the EEGdenoiseNet normalisation) + which are non-constant."""
    mu = seg.mean(-1, keepdims=True)
    sd = seg.std(-1, keepdims=True)
    live = sd[:, 0] > 0
    return ((seg - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32), live


PRECISIONS = ("float32", "bfloat16")
# whole-recording defaults (apply_denoiser, clean_raw): chosen on validation data, within 5 % of the
# reference (float32, 50 % overlap) in RRMSE_t; see docs/benchmarks/artifacts.md, "Speed"
DEFAULT_PRECISION = "auto"
DEFAULT_OVERLAP = 0.25


# ------------------------------------------------------------------------------------------------
# Pre-screen: a cheap per-window feature, computed in numpy on all flagged windows at once, that
# vetoes the transformer on windows which are clearly clean for this artifact. Each feature is
# scale-free (windows are compared at unit std) and larger on contaminated windows; a window is
# skipped when its value is below the model's threshold. Thresholds are the ``miss`` quantile of the
# feature on the contaminated VALIDATION windows (all SNRs), so that about that share of them would
# be skipped (calibrate_prescreen); they ship in weights/atat_prescreen.json.
PRESCREEN_FILE = "atat_prescreen.json"


def _hf_fraction(w, sfreq, f_cut=30.0):
    """Share of a window's power above ``f_cut`` Hz (EMG is broadband, clean EEG has little there)."""
    from scipy.fft import rfft, rfftfreq

    p = np.abs(rfft(w - w.mean(-1, keepdims=True), axis=-1)) ** 2
    f = rfftfreq(w.shape[-1], 1.0 / sfreq)
    return p[:, f > f_cut].sum(-1) / np.maximum(p[:, 1:].sum(-1), 1e-30)


def _smoothness(w, sfreq):
    """Minus the mean absolute first difference of the unit-std window (EOG is slow and smooth)."""
    sd = np.maximum(w.std(-1), 1e-30)
    return -np.abs(np.diff(w, axis=-1)).mean(-1) / sd


def _smoothness_40(w, sfreq, f_cut=40.0):
    """:func:`_smoothness` of the window band-limited to ``f_cut`` Hz, so that it does not depend on
    how much high-frequency content the recording's own rate leaves (e.g. 160 Hz data resampled)."""
    from scipy.fft import irfft, rfft, rfftfreq

    spec = rfft(w - w.mean(-1, keepdims=True), axis=-1)
    spec[:, rfftfreq(w.shape[-1], 1.0 / sfreq) > f_cut] = 0
    return _smoothness(irfft(spec, w.shape[-1], axis=-1), sfreq)


PRESCREEN_FEATURES = {"hf_fraction": _hf_fraction, "smoothness": _smoothness, "smoothness_40": _smoothness_40}


def load_prescreen(artifact):
    """The shipped pre-screen ``{"feature", "threshold", ...}`` of a model, or None."""
    from pathlib import Path

    f = Path(__file__).resolve().parents[1] / "weights" / PRESCREEN_FILE
    if not f.is_file():
        return None
    return json.loads(f.read_text()).get(artifact)


def calibrate_prescreen(val_y, feature, sfreq, miss=0.01):
    """Threshold of a pre-screen feature: its ``miss`` quantile on contaminated validation windows.

    Parameters
    ----------
    val_y : ndarray, shape (n_windows, n_times)
        Contaminated validation windows (every SNR of the split).
    feature : str
        A key of ``PRESCREEN_FEATURES``.

    Returns
    -------
    dict
        ``feature``, ``threshold``, ``miss`` (the quantile asked for).
    """
    vals = PRESCREEN_FEATURES[feature](np.asarray(val_y, np.float64), sfreq)
    return {"feature": feature, "threshold": float(np.quantile(vals, miss)), "miss": float(miss)}


def prescreen_skip(windows, prescreen, sfreq):
    """Boolean ``(n_windows,)``: True for windows the pre-screen calls clearly clean."""
    if prescreen is None or len(windows) == 0:
        return np.zeros(len(windows), bool)
    return PRESCREEN_FEATURES[prescreen["feature"]](windows, sfreq) < prescreen["threshold"]


def _drop_prescreened(mask, windows, prescreen, sfreq):
    """A copy of the window mask ``(n_rows, n_win)``, less the windows (``windows[r, k]``, each
    ``(win,)``) that the pre-screen calls clearly clean."""
    mask = np.array(mask, bool)
    if prescreen is not None and mask.any():
        r, k = np.nonzero(mask)
        skip = prescreen_skip(windows[r, k], prescreen, sfreq)
        mask[r[skip], k[skip]] = False
    return mask


def cpu_has_bf16():
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16; Linux only).

    Elsewhere bfloat16 would be emulated, which is slower than float32, so ``"auto"`` keeps float32.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision):
    """``"auto"`` -> ``"bfloat16"`` on CPUs with native bf16, else ``"float32"``; checks the value."""
    if precision == "auto":
        return "bfloat16" if cpu_has_bf16() else "float32"
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of auto, {', '.join(PRECISIONS)}; got {precision!r}.")
    return precision


def transformer_fn(net, precision="float32"):
    """The transformer path ``(B, T) -> (B, T)`` clean estimate, in float32 or bfloat16.

    ``"bfloat16"`` runs the transformer (not the autoencoder, whose residual it reads in float32) on a
    bfloat16 copy of its weights, except the patch embedding, which stays in float32: in bfloat16
    that one strided convolution alone moved the output by a third of its RMS on validation windows,
    while each other part moved it by under 0.2 %. On CPUs with AVX512-BF16/AMX it is faster, at a
    measured quality cost (``benchmarks/artifacts_speed_options.py``); ``"float32"`` is
    ``net.forward`` itself.
    """
    import copy

    import torch

    precision = resolve_precision(precision)
    if precision == "float32":
        return net
    half = copy.deepcopy(net).eval()
    tf = half.transformer.to(torch.bfloat16)
    tf.embed.float()
    tf.pos.data = net.transformer.pos.detach().clone()  # the float32 positions, not a bf16 round trip
    return half  # ATATNet/ArtifactTransformer.forward cast between the parts' dtypes


def crossfade_weights(win, hop):
    """Overlap-add weights of a window of ``win`` samples moved by ``hop``: flat in the middle, with
    ``sin^2`` ramps over the ``win - hop`` overlapping samples at each end, so that the weights of
    consecutive windows sum to one. For ``hop = win / 2`` this is the ``sin^2`` (Hann) window.

    Returns
    -------
    w : ndarray, shape (win,), float32
    """
    o = win - hop
    if not 0 < o <= win // 2:
        raise UsageError(f"overlap must be between 1 sample and half the window ({win}); got {o} samples.")
    w = np.ones(win)
    ramp = np.sin(0.5 * np.pi * (np.arange(o) + 0.5) / o) ** 2
    w[:o] = ramp
    w[win - o :] = ramp[::-1]
    return w.astype(np.float32)


def hop_for(model, overlap):
    """The window step (samples at the model's rate) for an ``overlap`` fraction: the nearest
    multiple of the gate's span, so the autoencoder's span gates line up with every window."""
    win = model.n_times
    span = int(getattr(model.net, "span", 1))
    if not 0 < overlap <= 0.5:
        raise UsageError(f"overlap must be in (0, 0.5] (a fraction of the window); got {overlap!r}.")
    hop = int(round(win * (1 - overlap) / span)) * span
    return min(max(hop, win // 2), win - span)


def _denoise_rows(model, sig, gated=True, precision="float32", overlap=0.5, prescreen=None, cand=None, tf=None):
    """Overlap-add denoising of rows at the model's rate.

    Parameters
    ----------
    sig : ndarray, shape (n_rows, n) at ``model.sfreq``
    precision : {"float32", "bfloat16"}
        Arithmetic of the transformer (see :func:`transformer_fn`).
    overlap : float
        Fraction of a window shared with the next one (0.5: windows every half window; 0.25:
        every three quarters, a third fewer windows). Weights: :func:`crossfade_weights`.
    prescreen : dict | None
        ``{"feature", "threshold"}`` (:func:`load_prescreen`): windows the gate flags but the
        pre-screen calls clearly clean skip the transformer (gated mode only).
    cand : ndarray of bool, shape (n_rows, n_win) | None
        Gated mode only: the windows that may go through the transformer at all (a screen's
        decision, :mod:`.screens`); the pre-screen is applied to them first, then the autoencoder
        gates each remaining window on the window itself (for AT-AT networks, whose
        reconstruction the transformer then reuses; otherwise on the tiles holding its spans).
        None: every window, gated through tiles.
    tf : callable | None
        The transformer path (:func:`transformer_fn`), to reuse one copy across calls.

    Returns
    -------
    removed : ndarray, shape (n_rows, n)
        What the model removed (input minus output).
    gated_frac : ndarray, shape (n_rows,)
        Fraction of windows in which the gate applied the transformer (1 for ungated models).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    win = model.n_times
    hop = hop_for(model, overlap)
    lead = win - hop  # samples of padding before the signal: the first window's ramp-up
    n_rows, n = sig.shape
    n_win = int(np.ceil((n + lead) / hop))
    n_win += n_win % 2  # (kept from the half-overlap layout, so its output is unchanged)
    total = (n_win - 1) * hop + win
    # the autoencoder runs on non-overlapping tiles of one window covering the signal
    n_tiles = max(int(np.ceil((n + lead) / win)), n_win * hop // win)
    pad = np.zeros((n_rows, max(total, n_tiles * win)), np.float32)
    pad[:, lead : lead + n] = sig
    # reflect into the padding so edge windows see signal, not zeros
    left = sig[:, 1 : lead + 1][:, ::-1]
    pad[:, lead - left.shape[1] : lead] = left
    right = sig[:, -lead - 1 : -1][:, ::-1]
    k = min(right.shape[1], total - lead - n)
    pad[:, lead + n : lead + n + k] = right[:, :k]
    flat = sliding_window_view(pad, win, axis=-1)[:, ::hop][:, :n_win]  # (n_rows, n_win, win), a view
    removed = np.zeros((n_rows, n_win, win), np.float32)
    import torch

    net = model.net
    tf = tf if tf is not None else transformer_fn(net, precision)
    reuse_ae = gated and cand is not None and hasattr(net, "ae") and hasattr(tf, "transformer")
    with torch.inference_mode():
        if reuse_ae:
            # Screened windows are few and scattered: gate each candidate window with the
            # autoencoder on the window itself (as the gate was calibrated, on whole windows), and
            # reuse that reconstruction in the transformer path instead of computing it twice.
            cwin = _drop_prescreened(cand, flat, prescreen, model.sfreq)
            win_gate = np.zeros((n_rows, n_win), bool)
            todo = np.argwhere(cwin)
            ys, resid, where = [], [], []
            for i in range(0, len(todo), _AE_BATCH):
                r, k = todo[i : i + _AE_BATCH].T
                norm, live = _normalise(flat[r, k])
                y = torch.from_numpy(norm)
                rec = net.ae(y)
                g = net.gate(y, rec).any(1).numpy() & live
                if g.any():
                    gi = torch.from_numpy(np.flatnonzero(g))
                    ys.append(y[gi])
                    resid.append(y[gi] - rec[gi])
                    where.append(todo[i : i + _AE_BATCH][g])
            if ys:
                ys, resid, where = torch.cat(ys), torch.cat(resid), np.concatenate(where)
                win_gate[where[:, 0], where[:, 1]] = True
                for i in range(0, len(ys), _TF_BATCH):
                    r, k = where[i : i + _TF_BATCH].T
                    yb = ys[i : i + _TF_BATCH]
                    art = tf.transformer(torch.stack([yb, resid[i : i + _TF_BATCH]], 1)).float().numpy()
                    # removed = (input - clean estimate) = the artifact, back at the window's scale
                    removed[r, k] = art * flat[r, k].std(-1, keepdims=True)
        elif gated and hasattr(net, "gate"):
            # The gate needs the autoencoder on every sample once, not once per overlapping window:
            # tiles of one window cover the padded rows without overlap, and their span gates give
            # every span's gate. A window then goes through the transformer when any of its spans
            # is gated; the others are left alone and cost nothing more.
            span = int(net.span)
            per_win = win // span
            step = hop // span  # hop_for makes the step a multiple of the span
            tiles = pad[:, : n_tiles * win].reshape(-1, win)
            cwin = None
            if cand is None:
                need = np.arange(len(tiles))
            else:
                # a screen already ruled most windows out: pre-screen the rest (cheap), then run the
                # autoencoder only on the tiles that hold a span of a remaining window (at most two)
                cwin = _drop_prescreened(cand, flat, prescreen, model.sfreq)
                r, k = np.nonzero(cwin)
                t0 = np.minimum((k * step) // per_win, n_tiles - 1)
                t1 = np.minimum((k * step + per_win - 1) // per_win, n_tiles - 1)
                need = np.unique(np.r_[r * n_tiles + t0, r * n_tiles + t1])
            span_gate = np.zeros((len(tiles), per_win), bool)
            for i in range(0, len(need), _AE_BATCH):
                j = need[i : i + _AE_BATCH]
                norm, live = _normalise(tiles[j])
                g = net.gate(torch.from_numpy(norm)).numpy()
                span_gate[j] = g & live[:, None]
            spans = np.zeros((n_rows, (n_win - 1) * step + per_win), bool)
            m = min(spans.shape[1], n_tiles * per_win)
            spans[:, :m] = span_gate.reshape(n_rows, -1)[:, :m]
            starts = np.arange(n_win) * step
            win_gate = np.zeros((n_rows, n_win), bool)
            for k in range(per_win):
                win_gate |= spans[:, starts + k]
            if cwin is not None:
                win_gate &= cwin
            else:
                win_gate = _drop_prescreened(win_gate, flat, prescreen, model.sfreq)
        else:
            win_gate = np.ones((n_rows, n_win), bool)
        todo = np.zeros((0, 2), int) if reuse_ae else np.argwhere(win_gate)
        for i in range(0, len(todo), _TF_BATCH):
            r, k = todo[i : i + _TF_BATCH].T
            seg = flat[r, k]
            norm, live = _normalise(seg)
            out = tf(torch.from_numpy(norm)).numpy()
            sd = seg.std(-1, keepdims=True)
            removed[r, k] = np.where(live[:, None], (norm - out) * sd, 0.0)
    w = crossfade_weights(win, hop)
    acc = np.zeros((n_rows, total), np.float32)
    sparse = win_gate.mean() < 0.5
    for k in np.flatnonzero(win_gate.any(0)):  # windows nobody denoised add nothing
        if sparse:  # only the rows this window was denoised on
            rr = np.flatnonzero(win_gate[:, k])
            acc[rr, k * hop : k * hop + win] += removed[rr, k] * w
        else:
            acc[:, k * hop : k * hop + win] += removed[:, k] * w
    return acc[:, lead : lead + n].astype(np.float64), win_gate.mean(1)


_BLOCK_HOPS = 4  # inner length of a screened block, in model hops (6 s for the shipped models)


def _denoise_blocks(model, eeg, sf, cand, grid, *, overlap, prescreen, tf, block_hops=_BLOCK_HOPS):
    """Gated denoising of only the stretches of a chunk that hold candidate windows.

    The chunk is cut, per row, into blocks of ``block_hops`` model hops; a block owns the windows
    that start in it and is processed when it owns a candidate window. Each processed block is
    taken with two hops of context on each side (so its windows lie inside), high-passed with a
    longer context (3 / l_freq seconds, so the filter's edge has died out; or the whole row at once
    where that is cheaper), resampled to the model's rate and run through :func:`_denoise_rows`
    with its candidate windows. Block and chunk windows coincide (the grid is aligned), so adding
    the blocks' removed signals gives the overlap-add of the dense path over the same windows.

    Parameters
    ----------
    eeg : ndarray, shape (n_rows, n) at ``sf``
    cand : ndarray of bool, shape (n_rows, grid["n_win"])
        Candidate windows of the chunk (:mod:`.screens`).
    grid : dict
        :func:`.screens.chunk_grid` for the model's hop.

    Returns
    -------
    back : ndarray, shape (n_rows, n)
        The removed signal at ``sf`` (zero outside processed blocks).
    hp : ndarray, shape (n_rows, n)
        The high-passed input where blocks were processed (zero elsewhere).
    n_tf : int
        Windows sent to the transformer.
    rows : ndarray of int
        The rows with a processed block (``back`` and ``hp`` are zero on the others).
    """
    n_rows, n = eeg.shape
    hop_sf, win_sf, lead_sf, n_wc = grid["hop"], grid["win"], grid["lead"], grid["n_win"]
    L = block_hops * hop_sf
    M = 2 * hop_sf
    Mh = max(M, int(np.ceil(3.0 / model.l_freq * sf))) if model.l_freq else M
    n_blocks = int(np.ceil(n / L))
    if 2 * M != L:
        raise ValueError("_denoise_blocks needs blocks of twice the context (block_hops=4).")
    j = np.arange(n_blocks)
    # block j owns the chunk windows that start in its inner part [jL, (j+1)L) (block 0 also the
    # first one, which starts before the chunk): each window is denoised once, by its owner
    k_lo = np.clip(-((-(j * L + lead_sf)) // hop_sf), 0, n_wc)
    k_lo[0] = 0
    k_hi = np.clip(-((-((j + 1) * L + lead_sf)) // hop_sf), 0, n_wc)
    cs = np.zeros((n_rows, n_wc + 1), np.int64)
    np.cumsum(cand, axis=1, out=cs[:, 1:])
    rows, blocks = np.nonzero(cs[:, k_hi] - cs[:, k_lo] > 0)
    if len(rows) == 0:
        return np.zeros((n_rows, n)), np.zeros((n_rows, n)), 0, rows
    width = n_blocks * L + 2 * Mh
    mode = "reflect" if n > max(Mh, width - n - Mh) else "edge"
    urows, inv, counts = np.unique(rows, return_inverse=True, return_counts=True)
    padded = np.pad(eeg[urows], ((0, 0), (Mh, width - n - Mh)), mode=mode)
    # high-pass whole rows where that is cheaper than filtering each block with its long context
    whole = counts * (L + 2 * Mh) > width
    if whole.any():
        padded[whole] = _highpass(padded[whole], sf, model.l_freq)
    from numpy.lib.stride_tricks import sliding_window_view

    hp = sliding_window_view(padded, L + 2 * Mh, axis=1)[:, ::L][inv, blocks]
    part = ~whole[inv]
    if part.any():
        hp[part] = _highpass(hp[part], sf, model.l_freq)
    hop = hop_for(model, overlap)
    n_m = (block_hops + 4) * hop
    sig = _fit_length(_resample(hp[:, Mh - M : Mh + L + M], sf, model.sfreq), n_m).astype(np.float32)
    lead = model.n_times - hop
    n_win = int(np.ceil((n_m + lead) / hop))
    n_win += n_win % 2
    kc = blocks[:, None] * block_hops - 2 + np.arange(n_win)[None]
    ok = (kc >= k_lo[blocks][:, None]) & (kc < k_hi[blocks][:, None])
    cl = np.zeros(kc.shape, bool)
    cl[ok] = cand[np.broadcast_to(rows[:, None], kc.shape)[ok], kc[ok]]
    removed, frac = _denoise_rows(model, sig, True, overlap=overlap, prescreen=prescreen, cand=cl, tf=tf)
    ext = _resample_back(removed, model.sfreq, sf, L + 2 * M)
    # the overlap-add is a sum over windows, so each block's whole removed signal (its windows reach
    # up to M past its inner part) is added. With 2M = L a block's extended span [jL - M, jL + L + M)
    # is exactly two consecutive L-long cells of a grid shifted by M: cells j and j + 1. Each
    # (row, block) pair is unique, so each of the two additions has no repeated index.
    bp = np.zeros((n_rows, n_blocks + 1, L))
    hpp = np.zeros((n_rows, n_blocks + 1, L))
    e = ext.reshape(len(rows), 2, L)
    h = hp[:, Mh - M : Mh + L + M].reshape(len(rows), 2, L)
    bp[rows, blocks] += e[:, 0]
    bp[rows, blocks + 1] += e[:, 1]
    hpp[rows, blocks] = h[:, 0]
    hpp[rows, blocks + 1] = h[:, 1]
    back = bp.reshape(n_rows, -1)[:, M : M + n]
    hp_out = hpp.reshape(n_rows, -1)[:, M : M + n]
    return back, hp_out, int(round(float((frac * n_win).sum()))), urows


def denoise_array(model, x, sfreq, *, gated=True, highpass=True, precision="float32", overlap=0.5, prescreen=None):
    """Denoise rows of ``x`` (n_rows, n_times) at ``sfreq``; returns the cleaned array, same shape."""
    x = np.asarray(x, np.float64)
    if x.shape[-1] < 2:
        return x.copy()
    hp = _highpass(x, sfreq, model.l_freq) if highpass else x
    sig = _resample(hp, sfreq, model.sfreq)
    if sig.shape[-1] < model.n_times // 2:
        raise UsageError(
            f"segments are too short: {x.shape[-1] / sfreq:.2f} s, the model needs at least "
            f"{model.n_times / 2 / model.sfreq:.2f} s."
        )
    removed, _ = _denoise_rows(model, sig, gated, precision, overlap, prescreen)
    return x - _resample_back(removed, model.sfreq, sfreq, x.shape[-1])


def _resample_back(removed, src, dst, n):
    """The removed signal back at the recording's rate, (n_rows, n); rows the gate never opened
    on are exactly zero and are not resampled."""
    out = np.zeros((removed.shape[0], n))
    rows = np.flatnonzero(np.any(removed != 0, axis=1))
    if len(rows):
        out[rows] = _fit_length(_resample(removed[rows], src, dst), n)
    return out


def _fit_length(a, n):
    if a.shape[-1] >= n:
        return a[..., :n]
    return np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, n - a.shape[-1])])


# ------------------------------------------------------------------------------------------------
class OutputBuffer:
    """A float64 (n_chans, n_times) array in memory, or in an unlinked memory-mapped temp file when
    larger than ``MEMMAP_BYTES``; :meth:`release` drops written pages from memory (they stay on disk)."""

    def __init__(self, n_chans, n_times, tmp_dir=None):
        nbytes = n_chans * n_times * 8
        self._mm = None
        if nbytes <= MEMMAP_BYTES:
            self.array = np.empty((n_chans, n_times))
            return
        fd, name = tempfile.mkstemp(prefix="neurodecode-clean-", suffix=".f64", dir=tmp_dir)
        try:
            os.ftruncate(fd, nbytes)
            self._mm = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
            os.unlink(name)  # the mapping keeps the file alive; nothing is left behind on exit
        self.array = np.ndarray((n_chans, n_times), dtype=np.float64, buffer=self._mm)

    def release(self):
        if self._mm is not None and hasattr(self._mm, "madvise"):
            self._mm.flush()
            self._mm.madvise(mmap.MADV_DONTNEED)


def iter_chunks(n_times, sfreq, chunk_s, margin_s):
    """Yield ``(start, stop, a, b)``: the kept span [start, stop) and the read span [a, b) with margins."""
    step = max(1, int(round(chunk_s * sfreq)))
    margin = int(round(margin_s * sfreq))
    for start in range(0, n_times, step):
        stop = min(n_times, start + step)
        yield start, stop, max(0, start - margin), min(n_times, stop + margin)


def spans_from_mask(mask, sfreq, first_time=0.0):
    """Onsets and durations (s) of the True runs of a boolean sample mask."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    on, off = edges[::2], edges[1::2]
    return on / sfreq + first_time, (off - on) / sfreq


def check_recording(raw, picks, min_sfreq, min_seconds, what="the recording"):
    """Raise a one-sentence error for recordings the denoisers cannot take."""
    sf = raw.info["sfreq"]
    name = raw.filenames[0] if raw.filenames and raw.filenames[0] else what
    if len(picks) == 0:
        raise InputFileError(f"{name}: no EEG channels to clean (channel types: {sorted(set(raw.get_channel_types()))}).")
    if sf < min_sfreq:
        raise InputFileError(
            f"{name}: sampling rate {sf:g} Hz is below the {min_sfreq:g} Hz this cleaning needs; "
            "choose --method filter or --artifacts eog."
        )
    if raw.n_times < min_seconds * sf:
        raise InputFileError(
            f"{name}: only {raw.n_times / sf:.2f} s of data; at least {min_seconds:g} s (one window) is needed."
        )


def apply_denoiser(models, raw, *, picks="eeg", progress=False, chunk_s=120.0, margin_s=8.0, tmp_dir=None,
                   edit_ratio=0.3, bad_ratio=0.9, problems=None, gated=True, precision=None,
                   overlap=None, prescreen=True, screen=True):
    """Clean a multichannel Raw with one or more segment denoisers, chunk by chunk.

    Parameters
    ----------
    models : ATAT | list of ATAT
        Applied in order on each chunk (e.g. EOG first, then EMG).
    raw : mne.io.BaseRaw
        Any length; read lazily if not preloaded. Channels in ``info['bads']`` are left as they are.
    picks : str | list
        Channels to clean (default all EEG channels).
    chunk_s, margin_s : float
        Chunk length and context margin in seconds.
    edit_ratio, bad_ratio : float
        A 1 s span is annotated ``EDITED_<ART>`` when, on any channel, the removed signal's RMS exceeds
        ``edit_ratio`` x the (high-passed) input's RMS there, and ``BAD_<ART>`` (beyond repair) when it
        exceeds ``bad_ratio`` x (the artifact dominated so much that little of the EEG was left).
    gated : bool
        Use each model's gate (the transformer runs only on windows it flags); ``False`` runs the
        transformer on every window (slower; for comparisons).
    precision : {"auto", "float32", "bfloat16"} | None
        Arithmetic of the transformer; None: ``"auto"`` when ``gated``, ``"float32"`` otherwise (the
        ungated path stays the reference). ``"float32"`` is the reference; ``"bfloat16"`` is faster on
        CPUs with native bf16 instructions and changed validation RRMSE_t by at most 0.1 %;
        ``"auto"`` picks bfloat16 where the CPU has it (:func:`cpu_has_bf16`), else float32.
    overlap : float | None
        Fraction of each window shared with the next; None: 0.25 when ``gated``, 0.5 otherwise.
        0.25 runs a third fewer windows
        than 0.5 (the reference), with ``sin^2`` cross-fades of a quarter window; it changed
        validation RRMSE_t by +0.6 % (EMG) and +2.8 % (EOG). Both costs: ``docs/benchmarks/artifacts.md``,
        "Speed" (``benchmarks/artifacts_speed_options.py``).
    prescreen : bool
        With ``gated``, windows the gate flags but a cheap spectral/shape feature calls clearly
        clean skip the transformer (:func:`load_prescreen`; thresholds calibrated on validation
        windows so that about 1 % of contaminated ones would be skipped). Models without a shipped
        pre-screen are unaffected.
    screen : bool | dict
        With ``gated``, decide first, cheaply and at the recording's rate, which windows may hold
        the artifact at all (:mod:`.screens`), and high-pass, resample and gate only the stretches
        around them: EOG from one decision per time span on the frontal (Fp*/AF*) channels where
        each channel agrees, EMG from the pre-screen's spectral feature. A model whose screen
        cannot be used (no frontal channels, no pre-screen, or a rate at which the model's windows
        are not whole samples) runs on every window as before. ``False``: the dense path. A dict
        (``z_front``, ``z_chan``, ``emg_slack``) overrides the screens' shipped thresholds.

    Returns
    -------
    cleaned : mne.io.RawArray
        A new Raw (input untouched) with the annotations added and provenance in
        ``info['description']``.
    summary : dict
        Per-channel removed RMS, annotated spans, gate use, timings.
    """
    import time

    import mne

    models = list(models) if isinstance(models, (list, tuple)) else [models]
    if precision is None:
        precision = DEFAULT_PRECISION if gated else "float32"
    if overlap is None:
        overlap = DEFAULT_OVERLAP if gated else 0.5
    precision = resolve_precision(precision)
    for m in models:
        if hasattr(m, "net"):
            hop_for(m, overlap)  # checks the value before any work
    screens = {m.artifact: (load_prescreen(m.artifact) if (prescreen and gated) else None) for m in models}
    from . import screens as S

    tfs = {m.artifact: transformer_fn(m.net, precision) for m in models if hasattr(m, "net")}
    t0 = time.time()
    sf = raw.info["sfreq"]
    pick_idx = mne.pick_types(raw.info, eeg=True, exclude="bads") if picks == "eeg" else \
        mne.pick_channels(raw.ch_names, list(picks), exclude=list(raw.info["bads"]))
    pick_idx = np.asarray(pick_idx, int)
    min_sf = max(MIN_SFREQ.get(m.artifact, 50.0) for m in models)
    check_recording(raw, pick_idx, min_sf, max(m.n_times / m.sfreq for m in models))
    n_ch, n_t = len(raw.ch_names), raw.n_times
    buf = OutputBuffer(n_ch, n_t, tmp_dir)
    n_bins = int(np.ceil(n_t / sf))
    ratio_bins = {m.artifact: np.zeros(n_bins) for m in models}
    removed_ss = {m.artifact: np.zeros(len(pick_idx)) for m in models}
    gate = {m.artifact: [] for m in models}
    screened = {m.artifact: [] for m in models}
    frontal = S.frontal_channels([raw.ch_names[i] for i in pick_idx])
    sp = {"z_front": S.EOG_Z_FRONT, "z_chan": S.EOG_Z_CHAN, "emg_slack": S.EMG_SLACK}
    if isinstance(screen, dict):
        unknown = set(screen) - set(sp)
        if unknown:
            raise UsageError(f"screen: unknown setting(s) {sorted(unknown)}; allowed: {sorted(sp)}.")
        sp.update({k: float(v) for k, v in screen.items()})
    use_screen = {}
    for m in models:
        ok = bool(screen and gated and hasattr(m, "net") and hasattr(m.net, "gate"))
        if m.artifact == "eog":
            ok = ok and len(frontal) > 0
        elif m.artifact == "emg":
            ok = ok and screens.get("emg") is not None and screens["emg"].get("feature") == "hf_fraction"
        else:
            ok = False
        use_screen[m.artifact] = ok
    ptp = np.zeros(len(pick_idx))
    all_picked = np.array_equal(pick_idx, np.arange(len(raw.ch_names)))
    chunks = list(iter_chunks(n_t, sf, chunk_s, margin_s))
    it = chunks
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(chunks, desc="cleaning", unit="chunk")
    fname = raw.filenames[0] if raw.filenames and raw.filenames[0] else "the recording"
    for start, stop, a, b in it:
        data = raw.get_data(start=a, stop=b)
        if not np.isfinite(data.sum()) and not np.isfinite(data).all():  # one cheap pass in the usual case
            bad = np.flatnonzero(~np.isfinite(data).all(1))
            t_bad = (a + int(np.argmax(~np.isfinite(data[bad[0]])))) / sf
            raise InputFileError(
                f"{fname}: channel {raw.ch_names[bad[0]]} has NaN or infinite samples (first at {t_bad:.2f} s); "
                "repair or mark the channel bad before cleaning."
            )
        eeg = data if all_picked else data[pick_idx]  # cleaned in place: data is a fresh copy
        ptp = np.maximum(ptp, np.ptp(eeg, axis=1))
        k0, k1 = start - a, stop - a
        for m in models:
            grid = S.chunk_grid(eeg.shape[1], sf, m, hop_for(m, overlap)) if use_screen[m.artifact] else None
            if grid is not None:
                if m.artifact == "eog":
                    cand, _ = S.eog_spatial_screen(eeg, sf, frontal, grid, z_front=sp["z_front"], z_chan=sp["z_chan"])
                else:
                    cand = S.emg_spectral_screen(eeg, sf, grid, screens["emg"]["threshold"], m.sfreq, m.l_freq,
                                                 slack=sp["emg_slack"])
                # windows lying wholly in the chunk's margins would be thrown away: never process them
                lo = np.arange(grid["n_win"]) * grid["hop"] - grid["lead"]
                keep = (lo + grid["win"] > k0) & (lo < k1)
                cand &= keep[None]
                back, hp, n_tf, act = _denoise_blocks(m, eeg, sf, cand, grid, overlap=overlap,
                                                      prescreen=screens[m.artifact], tf=tfs[m.artifact])
                gate[m.artifact].append((n_tf, keep.sum() * len(cand)))
                screened[m.artifact].append((int(cand.sum()), keep.sum() * len(cand)))
            else:
                hp = _highpass(eeg, sf, m.l_freq)
                sig = _resample(hp, sf, m.sfreq)
                removed, gfrac = _denoise_rows(m, sig, gated, precision, overlap, screens[m.artifact],
                                               tf=tfs.get(m.artifact))
                back = _resample_back(removed, m.sfreq, sf, eeg.shape[1])
                nw = sig.shape[1] / hop_for(m, overlap)  # about the chunk's windows per row, its weight
                gate[m.artifact].append((float(gfrac.sum()) * nw, len(gfrac) * nw))
                act = np.arange(len(eeg))
            if len(act) == 0:
                continue  # nothing removed from this chunk by this model
            act = slice(None) if len(act) == len(eeg) else act  # slices avoid fancy-index copies
            eeg[act] -= back[act]
            kept_r, kept_h = back[act, k0:k1], hp[act, k0:k1]
            sq = kept_r**2
            removed_ss[m.artifact][act] += sq.sum(1)
            # 1 s bins: worst channel's removed/input RMS ratio
            s = int(round(sf))
            j0, j1 = start // s, int(np.ceil(stop / s))
            edges = np.clip(np.arange(j0, j1 + 1) * s, start, stop) - start
            ok = np.diff(edges) > 0
            if ok.any():
                lo = edges[:-1][ok]
                cnt = np.diff(edges)[ok]
                rr = np.add.reduceat(sq, lo, axis=1) / cnt
                hh = np.add.reduceat(kept_h**2, lo, axis=1) / cnt
                worst = np.sqrt(rr / np.maximum(hh, 1e-30)).max(0)
                idx = np.arange(j0, j1)[ok]
                ratio_bins[m.artifact][idx] = np.maximum(ratio_bins[m.artifact][idx], worst)
        if all_picked:
            buf.array[:, start:stop] = eeg[:, k0:k1]
        else:
            data[pick_idx] = eeg
            buf.array[:, start:stop] = data[:, k0:k1]
        buf.release()
    flat = [raw.ch_names[pick_idx[i]] for i in np.flatnonzero(ptp == 0)]
    if flat:
        raise InputFileError(
            f"{fname}: channel(s) {', '.join(flat)} are flat (constant) over the whole recording; "
            "mark them bad (info['bads']) or drop them before cleaning."
        )
    info = raw.info.copy()
    cleaned = mne.io.RawArray(buf.array, info, first_samp=raw.first_samp, copy=None, verbose="error")
    cleaned._neurodecode_buffer = buf  # keep the mapping alive as long as the Raw
    cleaned.set_annotations(raw.annotations.copy())
    onsets, durs, descs = [], [], []
    spans = {}
    for art, rb in ratio_bins.items():
        for label, lo, hi in ((f"EDITED_{art.upper()}", edit_ratio, bad_ratio), (f"BAD_{art.upper()}", bad_ratio, np.inf)):
            mask = (rb > lo) & (rb <= hi)
            on, du = spans_from_mask(mask, 1.0)
            du = np.minimum(du, n_t / sf - on)
            onsets += list(on)
            durs += list(du)
            descs += [label] * len(on)
            spans[label] = float(du.sum())
    if onsets:
        # with a measurement date, onsets count from it (the data start at first_time); without, from 0
        base = cleaned.first_time if cleaned.annotations.orig_time is not None else 0.0
        cleaned.annotations.append(np.asarray(onsets) + base, durs, descs)
    summary = {
        "method": "atat",
        "artifacts": [m.artifact for m in models],
        "n_channels_cleaned": int(len(pick_idx)),
        "duration_s": n_t / sf,
        "seconds": round(time.time() - t0, 3),
        "removed_rms_uv": {art: {raw.ch_names[pick_idx[i]]: float(np.sqrt(v / n_t) * 1e6)
                                 for i, v in enumerate(ss)} for art, ss in removed_ss.items()},
        "annotated_seconds": spans,
        "n_annotations_added": len(onsets),
        "precision": precision,
        "overlap": overlap,
        "prescreen": screens,
        # windows sent to the transformer / windows, over the whole recording (chunks weighted by size)
        "gate_fraction": {art: float(sum(a for a, _ in g) / max(sum(b for _, b in g), 1)) if g else 0.0
                          for art, g in gate.items()},
        "screen": {art: ("frontal EOG decision" if art == "eog" else "spectral") if use_screen[art] else None
                   for art in use_screen},
        "screen_fraction": {art: float(sum(a for a, _ in v) / max(sum(b for _, b in v), 1))
                            for art, v in screened.items() if v},
        "screen_settings": sp if any(use_screen.values()) else None,
        "models": [{"artifact": m.artifact, "tau": float(m.net.tau), "tau_hi": float(getattr(m.net, "tau_hi", 2.0)),
                    "n_parameters": m.n_parameters()}
                   for m in models if hasattr(m, "net")],
        "problems": list(problems or []),
    }
    add_provenance(cleaned, summary)
    return cleaned, summary


def add_provenance(raw, summary):
    """Append a one-line JSON provenance record to ``raw.info['description']``."""
    from .. import __version__

    keep = {k: summary[k] for k in ("method", "artifacts", "n_channels_cleaned", "models", "settings")
            if k in summary}
    line = "neurodecode " + __version__ + " clean: " + json.dumps(keep, sort_keys=True)
    old = raw.info["description"]
    with raw.info._unlock():
        raw.info["description"] = f"{old}\n{line}" if old else line
