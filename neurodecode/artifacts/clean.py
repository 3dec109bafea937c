"""One call that cleans a recording: :func:`clean_raw` (AT-AT, a filter, or ICA + ICLabel).

Used by ``neurodecode clean`` and by the batch runner, once per recording. Every method works
chunk by chunk (memory bounded on recordings of any length), returns a new Raw (the input is
never modified) with annotations of what was changed and a provenance line in
``info['description']``, and a summary dict.
"""

from __future__ import annotations

import time

import numpy as np

from ..utils import InputFileError, UsageError, check_option

__all__ = ["clean_raw", "make_demo_raw", "FILTER_SETTINGS", "ICA_SETTINGS"]

FILTER_SETTINGS = {"emg": ("lowpass", 30.0), "eog": ("highpass", 2.0)}
ICA_SETTINGS = {"n_components": 20, "method": "picard", "max_fit_s": 600.0, "threshold": 0.5,
                "labels": {"emg": "muscle artifact", "eog": "eye blink"}}


def _artifacts(artifacts):
    if isinstance(artifacts, str):
        artifacts = [a.strip() for a in artifacts.split(",") if a.strip()]
    artifacts = list(artifacts)
    if not artifacts:
        raise UsageError("Invalid value for the 'artifacts' parameter: give at least one of 'emg' and 'eog'.")
    for a in artifacts:
        check_option("artifacts", a, ("emg", "eog"))
    # EOG first: it is large and slow, and the EMG model was trained on EEG without it
    return sorted(set(artifacts), key=lambda a: 0 if a == "eog" else 1)


def clean_raw(raw, *, method="atat", artifacts=("emg", "eog"), progress=False, chunk_s=120.0, models=None,
              precision=None, overlap=None, prescreen=True, screen=True):
    """Remove EMG and/or EOG artifacts from a recording.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Any length, preloaded or not (chunks are read lazily). EEG channels are cleaned; other
        channels and channels in ``info['bads']`` are copied unchanged.
    method : {"atat", "filter", "ica"}
        ``"atat"``: the shipped AT-AT denoisers (:class:`~neurodecode.artifacts.atat.ATAT`);
        ``"filter"``: zero-phase Butterworth (EMG: 30 Hz low-pass, EOG: 2 Hz high-pass);
        ``"ica"``: MNE ICA (picard, 20 components, fitted on at most 10 min of 1-100 Hz,
        average-referenced data) + ICLabel; components labelled muscle (EMG) or eye blink (EOG) with
        probability > 0.5 are removed.
    artifacts : sequence of {"emg", "eog"} or "emg,eog"
    progress : bool
        Show a progress bar over chunks.
    chunk_s : float
        Chunk length in seconds.
    models : list of ATAT | None
        Use these instead of the shipped weights (``method="atat"`` only).
    precision : {"auto", "float32", "bfloat16"} | None
        Arithmetic of the AT-AT transformer (``method="atat"`` only; None: ``"auto"``); see
        :func:`neurodecode.artifacts.apply.apply_denoiser`.
    overlap : float | None
        Window overlap fraction of AT-AT (``method="atat"`` only); None: the default of
        :func:`~neurodecode.artifacts.apply.apply_denoiser` (0.25).
    prescreen : bool
        Let the shipped pre-screen veto the transformer on clearly clean windows (``method="atat"``).
    screen : bool
        Decide cheaply first where each AT-AT model may run at all (one frontal EOG decision per
        time span, a spectral EMG screen) and process only those stretches (``method="atat"``;
        :mod:`neurodecode.artifacts.screens`). ``False``: every window goes through the gate.

    Returns
    -------
    cleaned : mne.io.BaseRaw
        New Raw with ``EDITED_<ART>`` annotations where the signal was changed noticeably and
        ``BAD_<ART>`` where it was beyond repair.
    summary : dict
        JSON-serialisable: method, artifacts, timings, per-channel removed RMS (uV), annotations.
    """
    check_option("method", method, ("atat", "filter", "ica"))
    arts = _artifacts(artifacts)
    if method == "atat":
        from .apply import apply_denoiser
        from .atat import ATAT

        models = models or [ATAT.from_pretrained(a) for a in arts]
        kw = {k: v for k, v in (("overlap", overlap), ("precision", precision)) if v is not None}
        cleaned, summary = apply_denoiser(models, raw, progress=progress, chunk_s=chunk_s, prescreen=prescreen,
                                          screen=screen, **kw)
    elif method == "filter":
        cleaned, summary = _clean_filter(raw, arts, progress, chunk_s)
    else:
        cleaned, summary = _clean_ica(raw, arts, progress, chunk_s)
    return cleaned, summary


# ------------------------------------------------------------------------------------------------
def _chunked_transform(raw, picks, transform, progress, chunk_s, margin_s, label):
    """Run ``transform(eeg_chunk) -> cleaned`` over chunks; returns (RawArray, removed_ss per pick)."""
    import mne

    from .apply import OutputBuffer, iter_chunks

    sf = raw.info["sfreq"]
    buf = OutputBuffer(len(raw.ch_names), raw.n_times)
    removed_ss = np.zeros(len(picks))
    ptp = np.zeros(len(picks))
    chunks = list(iter_chunks(raw.n_times, sf, chunk_s, margin_s))
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=label, unit="chunk")
    fname = raw.filenames[0] if raw.filenames and raw.filenames[0] else "the recording"
    for start, stop, a, b in chunks:
        data = raw.get_data(start=a, stop=b)
        if not np.isfinite(data).all():
            bad = np.flatnonzero(~np.isfinite(data).all(1))[0]
            raise InputFileError(f"{fname}: channel {raw.ch_names[bad]} has NaN or infinite samples; "
                                 "repair or mark the channel bad before cleaning.")
        eeg = data[picks]
        ptp = np.maximum(ptp, np.ptp(eeg, axis=1))
        new = transform(eeg, a)
        k0, k1 = start - a, stop - a
        removed_ss += ((eeg - new)[:, k0:k1] ** 2).sum(1)
        data[picks] = new
        buf.array[:, start:stop] = data[:, k0:k1]
        buf.release()
    flat = [raw.ch_names[picks[i]] for i in np.flatnonzero(ptp == 0)]
    if flat:
        raise InputFileError(f"{fname}: channel(s) {', '.join(flat)} are flat (constant) over the whole recording; "
                             "mark them bad (info['bads']) or drop them before cleaning.")
    cleaned = mne.io.RawArray(buf.array, raw.info.copy(), first_samp=raw.first_samp, copy=None, verbose="error")
    cleaned._neurodecode_buffer = buf
    cleaned.set_annotations(raw.annotations.copy())
    return cleaned, removed_ss


def _eeg_picks(raw):
    import mne

    picks = mne.pick_types(raw.info, eeg=True, exclude="bads")
    if len(picks) == 0:
        name = raw.filenames[0] if raw.filenames and raw.filenames[0] else "the recording"
        raise InputFileError(f"{name}: no EEG channels to clean (channel types: {sorted(set(raw.get_channel_types()))}).")
    return picks


def _summary(method, arts, raw, picks, removed_ss, t0, **extra):
    return {
        "method": method,
        "artifacts": arts,
        "n_channels_cleaned": int(len(picks)),
        "duration_s": raw.n_times / raw.info["sfreq"],
        "seconds": round(time.time() - t0, 3),
        "removed_rms_uv": {"all": {raw.ch_names[p]: float(np.sqrt(v / raw.n_times) * 1e6)
                                   for p, v in zip(picks, removed_ss)}},
        **extra,
    }


def _clean_filter(raw, arts, progress, chunk_s):
    from scipy.signal import butter, sosfiltfilt

    from .apply import add_provenance, check_recording

    t0 = time.time()
    sf = raw.info["sfreq"]
    picks = _eeg_picks(raw)
    check_recording(raw, picks, 2 * FILTER_SETTINGS["emg"][1] + 1 if "emg" in arts else 5.0, 1.0)
    soss = [butter(4, FILTER_SETTINGS[a][1], btype=FILTER_SETTINGS[a][0], fs=sf, output="sos") for a in arts]

    def transform(eeg, _):
        for sos in soss:
            eeg = sosfiltfilt(sos, eeg, axis=-1)
        return eeg

    cleaned, removed_ss = _chunked_transform(raw, picks, transform, progress, chunk_s, 10.0, "filtering")
    summary = _summary("filter", arts, raw, picks, removed_ss, t0,
                       settings={a: {"kind": FILTER_SETTINGS[a][0], "cutoff_hz": FILTER_SETTINGS[a][1],
                                     "order": 4, "zero_phase": True} for a in arts},
                       n_annotations_added=0)
    add_provenance(cleaned, summary)
    return cleaned, summary


def _clean_ica(raw, arts, progress, chunk_s):
    import mne

    from .apply import add_provenance, check_recording

    t0 = time.time()
    sf = raw.info["sfreq"]
    picks = _eeg_picks(raw)
    n_comp = min(ICA_SETTINGS["n_components"], len(picks) - 1)
    check_recording(raw, picks, 2.0, 10.0)
    if n_comp < 2:
        raise InputFileError("ICA needs at least 3 EEG channels; use --method atat or filter.")
    if raw.get_montage() is None:
        raise InputFileError("ICLabel needs electrode positions: the recording has no montage "
                             "(set one with raw.set_montage, or use --method atat or filter).")
    # fit on at most max_fit_s of data, taken as evenly spaced 10 s pieces (bounded memory)
    piece = int(10 * sf)
    n_pieces = max(1, min(raw.n_times // piece, int(ICA_SETTINGS["max_fit_s"] // 10)))
    starts = np.linspace(0, max(0, raw.n_times - piece), n_pieces).astype(int)
    fit_data = np.concatenate([raw.get_data(picks, start=s, stop=s + piece) for s in starts], axis=1)
    info = mne.pick_info(raw.info, picks)
    fit_raw = mne.io.RawArray(fit_data, info, verbose="error")
    fit_raw.filter(1.0, min(100.0, 0.45 * sf), verbose="error")
    fit_raw.set_eeg_reference("average", verbose="error")
    ica = mne.preprocessing.ICA(n_components=n_comp, method="picard", max_iter="auto", random_state=97,
                                fit_params=dict(ortho=False, extended=True), verbose="error")
    ica.fit(fit_raw, verbose="error")
    from mne_icalabel import label_components

    lab = label_components(fit_raw, ica, method="iclabel")
    wanted = {ICA_SETTINGS["labels"][a] for a in arts}
    exclude = [i for i, (l, p) in enumerate(zip(lab["labels"], lab["y_pred_proba"]))
               if l in wanted and p > ICA_SETTINGS["threshold"]]
    del fit_raw, fit_data

    def transform(eeg, _):
        chunk = mne.io.RawArray(eeg, info, verbose="error")
        return ica.apply(chunk, exclude=exclude, verbose="error").get_data()

    cleaned, removed_ss = _chunked_transform(raw, picks, transform, progress, chunk_s, 0.0, "ICA")
    summary = _summary("ica", arts, raw, picks, removed_ss, t0,
                       settings={**{k: v for k, v in ICA_SETTINGS.items()}, "n_components": n_comp,
                                 "fit_seconds": float(n_pieces * 10)},
                       excluded_components=[{"index": i, "label": lab["labels"][i],
                                             "probability": float(lab["y_pred_proba"][i])} for i in exclude],
                       n_annotations_added=0)
    add_provenance(cleaned, summary)
    return cleaned, summary


# ------------------------------------------------------------------------------------------------
def make_demo_raw(seed=0, duration_s=60.0, sfreq=256.0):
    """A **simulated** 19-channel 10-20 recording with blinks and muscle bursts, for demonstrations.

    Background EEG is pink-ish noise plus a 10 Hz posterior alpha rhythm; blinks are 300 ms
    Gaussian-shaped deflections decaying from Fp1/Fp2 backwards; muscle bursts are band-limited
    (20-100 Hz) noise on temporal channels. Nothing here is a real recording; real benchmarks use
    ``shared/data`` (see ``docs/benchmarks/artifacts.md``).

    Returns
    -------
    raw : mne.io.RawArray
        Annotated ``SIMULATED_BLINK`` and ``SIMULATED_EMG`` spans.
    """
    import mne
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(seed)
    names = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4",
             "P8", "O1", "O2"]
    n = int(duration_s * sfreq)
    t = np.arange(n) / sfreq
    white = rng.standard_normal((len(names), n))
    spec = np.fft.rfft(white, axis=1)
    f = np.fft.rfftfreq(n, 1 / sfreq)
    spec /= np.sqrt(np.maximum(f, 1.0))
    eeg = np.fft.irfft(spec, n, axis=1)
    eeg = sosfiltfilt(butter(4, [1.0, 45.0], "bandpass", fs=sfreq, output="sos"), eeg, axis=1)
    eeg *= 10e-6 / eeg.std(axis=1, keepdims=True)
    post = np.array([1.0 if n_[0] in "PO" else 0.3 for n_ in names])
    eeg += post[:, None] * 8e-6 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 2 * np.pi))
    info = mne.create_info(names, sfreq, "eeg")
    raw = mne.io.RawArray(eeg, info, verbose="error")
    raw.set_montage("standard_1020", verbose="error")
    pos = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
    front = np.exp(-(pos[:, 1].max() - pos[:, 1]) / 0.04)
    onsets, durs, descs = [], [], []
    for b in np.arange(3.0, duration_s - 1, 6.0) + rng.uniform(-1, 1, int(np.ceil((duration_s - 4) / 6))):
        blink = 150e-6 * np.exp(-0.5 * ((t - b) / 0.08) ** 2)
        eeg += front[:, None] * blink
        onsets.append(b - 0.25), durs.append(0.5), descs.append("SIMULATED_BLINK")
    temporal = [names.index(c) for c in ("T7", "T8", "F7", "F8", "P7", "P8")]
    sos = butter(4, [20.0, min(100.0, 0.45 * sfreq)], "bandpass", fs=sfreq, output="sos")
    for b in np.arange(8.0, duration_s - 3, 15.0):
        d = int(1.5 * sfreq)
        i0 = int(b * sfreq)
        burst = sosfiltfilt(sos, rng.standard_normal((len(temporal), d)), axis=1)
        burst *= 30e-6 / burst.std() * np.hanning(d)
        eeg[temporal, i0 : i0 + d] += burst
        onsets.append(b), durs.append(1.5), descs.append("SIMULATED_EMG")
    raw = mne.io.RawArray(eeg, info, verbose="error")
    raw.set_montage("standard_1020", verbose="error")
    raw.set_annotations(mne.Annotations(onsets, durs, descs))
    with raw.info._unlock():
        raw.info["description"] = "SIMULATED demonstration recording made by neurodecode.artifacts.clean.make_demo_raw"
    return raw
