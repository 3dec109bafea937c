"""Cheap screens that decide where, on a whole recording, an AT-AT model may run at all.

The autoencoder gate of an AT-AT model runs at the model's rate on every sample; on a 1-hour
64-channel recording that alone costs more than fitting ICA. The screens below look at the
recording at its own rate, with a few vectorised numpy passes, and mark, per channel, the model
windows that could hold the model's artifact. Only those windows (and only the stretches of signal
around them) are high-passed, resampled, gated by the autoencoder and, where the gate agrees, sent
to the transformer (:func:`neurodecode.artifacts.apply.apply_denoiser`). Everything else is left as
it is, which is what the gate would mostly have decided anyway.

* EOG (:func:`eog_spatial_screen`): an eye movement or blink is a large, slow deflection that is
  strongest at the frontal electrodes and fades towards the back of the head, at the same moment on
  every channel. So the decision is made once per short time span from the frontal channels
  (Fp*/AF*): a span is an eye event when the slow deflection of at least one frontal channel is
  ``z_front`` robust standard deviations (of that channel, over the chunk) away from its local
  baseline. A channel's window is then a candidate only when it holds such a span in which the
  channel's own slow deflection is also above ``z_chan`` of its robust deviations, i.e. when the
  frontal decision and the channel itself agree that the eye event reaches it.
* EMG (:func:`emg_spectral_screen`): the pre-screen's feature (share of power above 30 Hz,
  :func:`neurodecode.artifacts.apply._hf_fraction`), computed on the model's windows at the
  recording's rate without the mains bins, against ``slack`` times the shipped threshold (the
  exact pre-screen is applied again at the model's rate to the windows that pass).

Windows are those of the whole-recording path (:func:`chunk_grid`): the model's windows laid on
the chunk from its first sample, moved by the model's hop, exactly as the dense path lays them.
The screens' thresholds were chosen on validation data only
(``benchmarks/artifacts_screens.py``; ``docs/benchmarks/artifacts.md``, "Speed").
"""

from __future__ import annotations

import numpy as np

__all__ = ["frontal_channels", "chunk_grid", "eog_spatial_screen", "emg_spectral_screen", "windows_touching",
           "EOG_Z_FRONT", "EOG_Z_CHAN", "EMG_SLACK"]

# chosen on the validation store (denoise_multichannel_val): the lowest all-channel RRMSE_t of the grid
# printed by benchmarks/artifacts_screens.py (docs/benchmarks/artifacts.md, "Speed")
EOG_Z_FRONT = 8.0
EOG_Z_CHAN = 3.0
EMG_SLACK = 1.0
_BLOCK_S = 0.125  # time resolution of the EOG decision
_BASELINE_S = 2.0  # local baseline of the slow deflection (blinks last 0.2-0.4 s)
_DILATE_S = 0.25  # an eye event's decision also covers this much before and after it


def frontal_channels(ch_names):
    """Indices of frontal-pole / anterior-frontal channels (names starting with Fp or AF, any case)."""
    out = []
    for i, c in enumerate(ch_names):
        u = c.strip().strip(".").upper()
        if u.startswith(("FP", "AF")):
            out.append(i)
    return np.asarray(out, int)


def chunk_grid(n, sf, model, hop):
    """The model's window layout on a chunk of ``n`` samples at the recording's rate ``sf``.

    Window ``k`` covers samples ``[k * hop_sf - lead_sf, k * hop_sf - lead_sf + win_sf)``.

    Returns
    -------
    dict | None
        ``hop``, ``win``, ``lead`` (samples at ``sf``) and ``n_win``; None when the model's hop or
        window is not a whole number of samples at ``sf`` (then the screens are not used).
    """
    r = sf / model.sfreq
    win, hop_sf = model.n_times * r, hop * r
    if abs(win - round(win)) > 1e-6 or abs(hop_sf - round(hop_sf)) > 1e-6:
        return None
    win, hop_sf = int(round(win)), int(round(hop_sf))
    lead = win - hop_sf
    return {"hop": hop_sf, "win": win, "lead": lead, "n_win": int(np.ceil((n + lead) / hop_sf))}


def windows_touching(mask, grid, block=1):
    """Boolean ``(n_rows, n_win)``: windows of ``grid`` holding at least one True sample of ``mask``.

    ``mask`` is per sample (``block=1``) or per block of ``block`` samples, ``(n_rows, n_blocks)``
    (block ``i`` = samples ``[i * block, (i + 1) * block)``).
    """
    n_rows, nb = mask.shape
    cs = np.zeros((n_rows, nb + 1), np.int64)
    np.cumsum(mask, axis=1, out=cs[:, 1:])
    lo = np.arange(grid["n_win"]) * grid["hop"] - grid["lead"]
    hi = np.clip(-((-(lo + grid["win"])) // block), 0, nb)  # blocks reaching into [lo, lo + win)
    lo = np.clip(lo // block, 0, nb)
    return cs[:, hi] - cs[:, lo] > 0


def _slow_deflection_z(x, sf):
    """Per channel and 0.125 s block: |block mean - local 2 s baseline| in robust std units.

    Returns
    -------
    z : ndarray, shape (n_rows, n_blocks)
    b : int
        Samples per block.
    """
    b = max(1, int(round(_BLOCK_S * sf)))
    nb = x.shape[1] // b
    if nb == 0:
        return np.zeros((x.shape[0], 0)), b
    m = x[:, : nb * b].reshape(x.shape[0], nb, b).mean(-1)
    k = max(1, int(round(_BASELINE_S / _BLOCK_S)) // 2)
    padded = np.pad(m, ((0, 0), (k, k)), mode="edge")
    cs = np.zeros((m.shape[0], padded.shape[1] + 1))
    np.cumsum(padded, axis=1, out=cs[:, 1:])
    base = (cs[:, 2 * k + 1 :] - cs[:, : -2 * k - 1]) / (2 * k + 1)
    d = np.abs(m - base)
    scale = 1.4826 * np.median(d, axis=1, keepdims=True)
    return d / np.maximum(scale, 1e-30), b


def eog_spatial_screen(eeg, sf, frontal, grid, z_front=EOG_Z_FRONT, z_chan=EOG_Z_CHAN):
    """Candidate EOG windows from one frontal decision per time span (see the module docstring).

    Parameters
    ----------
    eeg : ndarray, shape (n_rows, n)
        A chunk at the recording's rate (any offset or drift; only local deflections count).
    frontal : array of int
        Rows of ``eeg`` that are frontal channels (:func:`frontal_channels`); must not be empty.
    grid : dict
        :func:`chunk_grid`.
    z_front, z_chan : float
        Thresholds in robust standard deviations: frontal decision, then each channel's agreement.

    Returns
    -------
    cand : ndarray of bool, shape (n_rows, grid["n_win"])
    front : ndarray of bool, shape (n,)
        The frontal decision per sample (eye event or not), dilated.
    """
    n_rows, n = eeg.shape
    z, b = _slow_deflection_z(eeg, sf)
    front_b = z[frontal].max(0) > z_front
    d = int(round(_DILATE_S / _BLOCK_S))
    if d and front_b.any():
        front_b = np.convolve(front_b.astype(float), np.ones(2 * d + 1), mode="same") > 0
    agree = front_b[None] & (z > z_chan)
    front = np.zeros(n, bool)
    front[: front_b.size * b] = np.repeat(front_b, b)
    return windows_touching(agree, grid, b), front


def emg_spectral_screen(eeg, sf, grid, threshold, model_sfreq, l_freq=1.0, f_cut=30.0, slack=EMG_SLACK,
                        mains=(50.0, 60.0), mains_width=1.5):
    """Candidate EMG windows: share of power above ``f_cut`` >= ``slack`` x ``threshold``.

    The share is taken over ``[l_freq, model_sfreq / 2]`` Hz (what the model sees after its
    high-pass and resampling), on each window of ``grid`` at the recording's rate, mean removed;
    windows reaching past the chunk see its mirror image, as in the dense path. Bins within
    ``mains_width`` Hz of the mains frequencies and their harmonics are left out of both sums:
    line noise is narrow-band and steady, not muscle, and on recordings without a notch filter
    it alone pushed many windows over the threshold (EMG is broadband, so leaving
    out these few hertz barely changes its share). ``mains=()`` keeps every bin.

    Returns
    -------
    cand : ndarray of bool, shape (n_rows, grid["n_win"])
    """
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy.fft import rfft, rfftfreq

    n_rows, n = eeg.shape
    win, hop, lead, n_win = grid["win"], grid["hop"], grid["lead"], grid["n_win"]
    right = (n_win - 1) * hop + win - lead - n
    x = np.pad(eeg.astype(np.float32), ((0, 0), (lead, max(right, 0))), mode="reflect" if n > max(lead, right) else "edge")
    w = sliding_window_view(x, win, axis=-1)[:, ::hop][:, :n_win]
    f = rfftfreq(win, 1.0 / sf)
    band = (f >= l_freq) & (f <= model_sfreq / 2)
    for m in mains:
        for h in np.arange(m, f[-1] + mains_width + m, m):
            band &= np.abs(f - h) > mains_width
    hi = band & (f > f_cut)
    cand = np.zeros((n_rows, n_win), bool)
    for r in range(n_rows):  # one row at a time keeps the spectra small
        p = np.abs(rfft(w[r] - w[r].mean(-1, keepdims=True), axis=-1)) ** 2
        cand[r] = p[:, hi].sum(-1) >= slack * threshold * np.maximum(p[:, band].sum(-1), 1e-30)
    return cand
