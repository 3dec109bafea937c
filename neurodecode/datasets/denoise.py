"""Semi-synthetic denoising benchmarks built from the real recordings in ``shared/data``.

EEGdenoiseNet's files cannot be had offline, so its protocol (Zhang et al. 2021, see
``shared/research/artifact_anchors.md`` section 0) is rebuilt from real clean EEG, real EMG and
real EOG:

* mixing ``y = x + lambda * n`` with ``SNR_dB = 10 log10(RMS(x) / RMS(lambda n))`` (an amplitude
  ratio under 10 log10, exactly the EEGdenoiseNet convention);
* training SNRs drawn per pair from U(-7, 2) dB, every clean segment recombined with
  ``combin_num`` random noise segments; test pairs mixed at every integer SNR from -7 to 2 dB;
* both ``x`` and ``y`` divided by ``std(y)`` per pair; the std is stored so the scale can be undone.

Splits never leak: test clean segments come from subjects never used in training and test noise
from files never used in training (see the recipes in ``datasets/denoise_*.yaml``).

Cleanliness criterion for clean EEG (documented in ``docs/benchmarks/artifacts.md``): a 2 s
single-channel segment is kept when (a) its peak-to-peak amplitude is under ``max_ptp_uv``,
(b) its std is under ``max_std_ratio`` times the median segment std of that channel in that
recording, (c) less than ``max_hf_ratio`` of its power lies above 30 Hz (no muscle activity) and
(d) less than ``max_lf_ratio`` of its power lies below 4 Hz (no blinks or drifts); channels whose
names start with Fp/AF (where blinks dominate) are never used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..utils import InputFileError, UsageError, data_dir, sha256_file

__all__ = [
    "load_recipe",
    "load_clean_segments",
    "load_emg_sources",
    "load_eog_sources",
    "mix_pairs",
    "build_single_channel",
    "build_multichannel",
    "build_from_recipe",
    "load_benchmark",
]

TEST_SNRS = tuple(range(-7, 3))


# --------------------------------------------------------------------------------------------
# recipes
# --------------------------------------------------------------------------------------------
def load_recipe(path):
    """Read a ``datasets/denoise_*.yaml`` recipe into a dict (raises InputFileError when broken)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such recipe file.")
    try:
        recipe = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputFileError(f"{path}: not valid YAML ({err}).") from err
    if not isinstance(recipe, dict) or recipe.get("builder") not in ("denoise_single", "denoise_multichannel"):
        raise InputFileError(
            f"{path}: expected a recipe with 'builder: denoise_single' or 'builder: denoise_multichannel'."
        )
    return recipe


def _source_path(rel, root=None):
    p = Path(root or data_dir()) / rel
    if not p.exists():
        raise InputFileError(f"{p}: source recording is missing (set NEURODECODE_DATA; see MANIFEST.md).")
    return p


def verify_sources(recipe, root=None):
    """Check every source file's sha256 against the recipe; raise InputFileError on a mismatch."""
    for rel, digest in (recipe.get("sha256") or {}).items():
        p = _source_path(rel, root)
        got = sha256_file(p)
        if got != digest:
            raise InputFileError(f"{p}: sha256 is {got}, the recipe expects {digest}; the source has changed.")


# --------------------------------------------------------------------------------------------
# signal helpers
# --------------------------------------------------------------------------------------------
def _bandpass(x, sfreq, l_freq, h_freq):
    """Zero-phase FIR band-pass (MNE defaults) along the last axis; h_freq capped below Nyquist."""
    import mne

    if h_freq is not None and h_freq >= 0.45 * sfreq:
        h_freq = 0.45 * sfreq
    return mne.filter.filter_data(np.asarray(x, np.float64), sfreq, l_freq, h_freq, verbose="error")


def _notch(x, sfreq, freqs):
    import mne

    freqs = [f for f in (freqs or []) if f < 0.45 * sfreq]
    if not freqs:
        return x
    return mne.filter.notch_filter(x, sfreq, freqs, verbose="error")


def _resample(x, sfreq, target):
    from scipy.signal import resample_poly
    from fractions import Fraction

    if sfreq == target:
        return np.asarray(x, np.float64)
    frac = Fraction(target / sfreq).limit_denominator(1000)
    return resample_poly(x, frac.numerator, frac.denominator, axis=-1)


def _segments(x, n, stride):
    """Cut (n_times,) into (n_segments, n) with the given stride (samples)."""
    if x.shape[-1] < n:
        return np.zeros((0, n))
    starts = np.arange(0, x.shape[-1] - n + 1, stride)
    return np.stack([x[s : s + n] for s in starts])


def _zscore(seg):
    seg = seg - seg.mean(axis=-1, keepdims=True)
    sd = seg.std(axis=-1, keepdims=True)
    return seg / np.where(sd > 0, sd, 1.0)


def _band_ratio(seg, sfreq, lo=None, hi=None):
    spec = np.abs(np.fft.rfft(seg - seg.mean(-1, keepdims=True), axis=-1)) ** 2
    f = np.fft.rfftfreq(seg.shape[-1], 1 / sfreq)
    tot = spec[..., f >= 0.5].sum(-1) + 1e-30
    sel = np.ones_like(f, bool)
    if lo is not None:
        sel &= f >= lo
    if hi is not None:
        sel &= f < hi
    sel &= f >= 0.5
    return spec[..., sel].sum(-1) / tot


# --------------------------------------------------------------------------------------------
# clean EEG
# --------------------------------------------------------------------------------------------
def _read_eeg(path):
    from ..io import read_raw

    raw = read_raw(path, preload=True)
    if path.suffix == ".set":
        eog = [c for c in raw.ch_names if c.upper().startswith("EOG")]
        if eog:
            raw.set_channel_types({c: "eog" for c in eog}, verbose="error")
    return raw


def _spans(raw, rest_label):
    """Spans (start_s, stop_s) of rest: the annotation ``rest_label``, or the whole file if none."""
    spans = [(a["onset"] - raw.first_time, a["onset"] - raw.first_time + a["duration"])
             for a in raw.annotations if a["description"] == rest_label]
    return spans or [(0.0, raw.n_times / raw.info["sfreq"])]


def load_clean_segments(files, *, sfreq=256.0, segment_s=2.0, l_freq=1.0, h_freq=80.0, notch=(60.0,),
                        rest_label="T0", channels_per_segment=4, max_ptp_uv=150.0, max_std_ratio=1.5,
                        max_hf_ratio=0.2, max_lf_ratio=0.6, seed=0, root=None):
    """Clean single-channel EEG segments from real recordings.

    Parameters
    ----------
    files : list of str
        Paths relative to the data folder (eegmmidb EDFs, the EEGLAB sample ``.set`` ...).
    sfreq, segment_s : float
        Target rate (Hz) and segment length (s); segments have ``round(sfreq * segment_s)`` samples.
    l_freq, h_freq, notch :
        Band-pass (capped at 0.45 x the source rate) and notch frequencies applied to the
        continuous recording before cutting.
    rest_label : str
        Annotation marking rest spans (eegmmidb ``T0``); files without it are used whole.
    channels_per_segment : int
        At most this many channels (drawn at random among those passing the criterion) are kept
        from each 2 s span, so that one recording does not dominate.
    max_ptp_uv, max_std_ratio, max_hf_ratio, max_lf_ratio : float
        The cleanliness criterion (module docstring).

    Returns
    -------
    segments : ndarray, shape (n_segments, n_times)
        z-scored segments (float64).
    meta : list of dict
        ``file``, ``channel``, ``start_s`` of each segment.
    """
    rng = np.random.default_rng(seed)
    n = int(round(sfreq * segment_s))
    out, meta = [], []
    for rel in files:
        path = _source_path(rel, root)
        raw = _read_eeg(path)
        picks = [i for i, (c, t) in enumerate(zip(raw.ch_names, raw.get_channel_types()))
                 if t == "eeg" and not c.upper().startswith(("FP", "AF"))]
        sf = raw.info["sfreq"]
        data = raw.get_data(picks)
        data = _notch(data, sf, notch)
        data = _bandpass(data, sf, l_freq, h_freq)
        data = _resample(data, sf, sfreq)
        names = [raw.ch_names[i] for i in picks]
        cand = []
        for a, b in _spans(raw, rest_label):
            s0 = int(np.ceil(a * sfreq))
            s1 = int(np.floor(b * sfreq))
            for s in range(s0, s1 - n + 1, n):
                cand.append(s)
        if not cand:
            continue
        segs = np.stack([data[:, s : s + n] for s in cand], axis=1)  # (n_ch, n_seg, n)
        std = segs.std(-1)
        ptp = np.ptp(segs, axis=-1) * 1e6
        ok = (ptp < max_ptp_uv) & (std < max_std_ratio * np.median(std, axis=1, keepdims=True))
        ok &= _band_ratio(segs, sfreq, lo=30.0) < max_hf_ratio
        ok &= _band_ratio(segs, sfreq, hi=4.0) < max_lf_ratio
        for j, s in enumerate(cand):
            good = np.flatnonzero(ok[:, j])
            if len(good) == 0:
                continue
            for c in sorted(rng.choice(good, size=min(channels_per_segment, len(good)), replace=False)):
                out.append(segs[c, j])
                meta.append({"file": rel, "channel": names[c], "start_s": s / sfreq})
    if not out:
        return np.zeros((0, n)), meta
    return _zscore(np.stack(out)), meta


# --------------------------------------------------------------------------------------------
# artifact sources
# --------------------------------------------------------------------------------------------
def _read_emg(path):
    """Return (signal 1-D, sfreq) of one EMG source file."""
    if path.suffix in (".dat", ".hea"):
        import wfdb

        rec = wfdb.rdrecord(str(path.with_suffix("")))
        return rec.p_signal[:, 0].astype(np.float64), float(rec.fs)
    if path.suffix == ".txt":
        sf = 1000.0
        with open(path) as f:
            for line in f:
                if not line.startswith("#"):
                    break
                if "Sampling Rate" in line:
                    sf = float(line.split("=")[-1])
        x = np.loadtxt(path, comments="#").astype(np.float64)
        return x - x.mean(), sf
    raise InputFileError(f"{path}: unknown EMG source format (expected WFDB .dat/.hea or BioSPPy .txt).")


def _read_eog(path, channel=None):
    """Return a list of (signal 1-D, sfreq, name) of the EOG channels in one source file."""
    if path.suffix == ".csv":
        import pandas as pd

        df = pd.read_csv(path)
        sf = 100.0 if "100hz" in path.name else 200.0
        cols = [channel] if channel else list(df.columns)
        return [(df[c].to_numpy(np.float64), sf, c) for c in cols]
    raw = _read_eeg(path)
    names = [c for c, t in zip(raw.ch_names, raw.get_channel_types()) if t == "eog"]
    if channel:
        names = [channel]
    return [(raw.get_data([c])[0], raw.info["sfreq"], c) for c in names]


def _active(segs, quantile, frac):
    """Keep segments whose RMS is at least ``frac`` x the ``quantile`` of segment RMS."""
    if len(segs) == 0:
        return segs, np.zeros(0, bool)
    rms = np.sqrt(((segs - segs.mean(-1, keepdims=True)) ** 2).mean(-1))
    keep = rms >= frac * np.quantile(rms, quantile)
    return segs[keep], keep


def _active_segments(x, sfreq, n, stride_s, span, active_quantile, active_frac):
    """Cut the ``span`` fraction of ``x`` into segments of ``n`` samples and keep the active ones.

    Returns the kept segments (n_kept, n) and their start times in seconds.
    """
    a, b = int(span[0] * len(x)), int(span[1] * len(x))
    stride = int(round(stride_s * sfreq))
    segs, keep = _active(_segments(x[a:b], n, stride), active_quantile, active_frac)
    return segs, [(a + i * stride) / sfreq for i in np.flatnonzero(keep)]


def load_emg_sources(files, *, sfreq=256.0, segment_s=2.0, l_freq=1.0, h_freq=120.0, notch=(),
                     stride_s=0.5, span=(0.0, 1.0), active_quantile=0.9, active_frac=0.25, root=None):
    """Real EMG segments, band-limited and resampled like EEGdenoiseNet's EMG.

    Parameters
    ----------
    files : list of str
        PhysioNet emgdb WFDB records (``.dat``) or BioSPPy ``.txt`` files, relative to the data folder.
    stride_s : float
        Hop between segments (overlapping segments multiply the few minutes of EMG available).
    span : (float, float)
        Fraction of each file to use (e.g. ``(0, 0.85)`` for training and ``(0.85, 1)`` for
        validation, so that the two never share samples).
    active_quantile, active_frac : float
        Segments whose RMS is below ``active_frac`` x the ``active_quantile`` RMS of the file are
        dropped (silent rest between contractions holds no EMG).

    Returns
    -------
    segments : ndarray, shape (n_segments, n_times), z-scored
    meta : list of dict
    """
    n = int(round(sfreq * segment_s))
    out, meta = [], []
    for rel in files:
        x, sf = _read_emg(_source_path(rel, root))
        x = _notch(x, sf, notch)
        x = _bandpass(x, sf, l_freq, h_freq)
        segs, starts = _active_segments(_resample(x, sf, sfreq), sfreq, n, stride_s, span, active_quantile, active_frac)
        out.append(segs)
        meta += [{"file": rel, "start_s": t} for t in starts]
    out = np.concatenate(out) if out else np.zeros((0, n))
    return _zscore(out), meta


def load_eog_sources(files, *, sfreq=256.0, segment_s=2.0, l_freq=0.3, h_freq=10.0, stride_s=1.0,
                     span=(0.0, 1.0), active_quantile=0.5, active_frac=1.0, root=None):
    """Real EOG segments (band-pass 0.3-10 Hz, like EEGdenoiseNet's EOG).

    Parameters
    ----------
    files : list of str
        NeuroKit ``.csv`` files (every column is one EOG channel) or EEG recordings whose
        EOG-typed channels are used (EEGLAB sample, eXimia). ``path::channel`` picks one channel.
    active_quantile, active_frac : float
        Segments with an RMS below ``active_frac`` x the ``active_quantile`` RMS of that channel
        are dropped (keeps the half with blinks and saccades by default).

    Returns
    -------
    segments : ndarray, shape (n_segments, n_times), z-scored
    meta : list of dict
    """
    n = int(round(sfreq * segment_s))
    out, meta = [], []
    for rel in files:
        rel_path, _, ch = rel.partition("::")
        for x, sf, name in _read_eog(_source_path(rel_path, root), ch or None):
            x = _bandpass(x, sf, l_freq, h_freq)
            segs, starts = _active_segments(_resample(x, sf, sfreq), sfreq, n, stride_s, span, active_quantile,
                                            active_frac)
            out.append(segs)
            meta += [{"file": rel_path, "channel": name, "start_s": t} for t in starts]
    out = np.concatenate(out) if out else np.zeros((0, n))
    return _zscore(out), meta


# --------------------------------------------------------------------------------------------
# mixing
# --------------------------------------------------------------------------------------------
def mix_pairs(clean, noise, snr_db):
    """EEGdenoiseNet mixing of paired segments.

    Parameters
    ----------
    clean, noise : ndarray, shape (n_pairs, n_times)
    snr_db : ndarray, shape (n_pairs,)
        Target ``10 log10(RMS(x) / RMS(lambda n))`` per pair.

    Returns
    -------
    x, y : ndarray, shape (n_pairs, n_times), float32
        Clean target and noisy input, both divided by ``std(y)``.
    std_y : ndarray, shape (n_pairs,)
        The divisor, to undo the scaling.
    """
    clean = np.asarray(clean, np.float64)
    noise = np.asarray(noise, np.float64)
    snr_db = np.asarray(snr_db, np.float64).reshape(-1, 1)
    rms = lambda a: np.sqrt(np.mean(a**2, axis=-1, keepdims=True))  # noqa: E731
    lam = rms(clean) / (rms(noise) * 10 ** (0.1 * snr_db))
    y = clean + lam * noise
    sd = y.std(axis=-1, keepdims=True)
    return (clean / sd).astype(np.float32), (y / sd).astype(np.float32), sd[:, 0]


def _rec(name, arr, labels=None, attrs=None, sfreq=256.0):
    """Segments (n, t) as one single-channel store recording with one window per segment."""
    arr = np.asarray(arr, np.float32)
    n, t = arr.shape
    return {
        "name": name,
        "data": arr.reshape(1, n * t),
        "sfreq": sfreq,
        "ch_names": ["EEG"],
        "windows": np.stack([np.arange(n) * t, np.arange(1, n + 1) * t], 1) if n else np.zeros((0, 2)),
        "labels": labels,
        "attrs": attrs or {},
    }


def _pairs_train(clean, noise, combin_num, rng, snr_range):
    ci = np.repeat(np.arange(len(clean)), combin_num)
    ni = rng.integers(0, len(noise), size=len(ci))
    snr = rng.uniform(snr_range[0], snr_range[1], size=len(ci))
    return ci, ni, snr


def _pairs_test(clean, noise, rng, snrs):
    ni = rng.permutation(np.resize(np.arange(len(noise)), len(clean)))
    ci = np.tile(np.arange(len(clean)), len(snrs))
    return ci, np.tile(ni, len(snrs)), np.repeat(np.asarray(snrs, np.float64), len(clean))


def build_single_channel(recipe, out, *, overwrite=False, root=None):
    """Build a single-channel EMG or EOG benchmark store from a recipe (see ``datasets/``).

    The store holds, for each split ``train``/``val``/``test``: ``<split>_x`` (clean target) and
    ``<split>_y`` (noisy input) with one window per pair and labels ``(n_pairs, 4)`` =
    ``[snr_db, std_y, clean_index, noise_index]``, plus the unmixed pools ``<split>_clean`` and
    ``<split>_noise`` for on-the-fly mixing.
    """
    from ..io import write_windows

    verify_sources(recipe, root)
    rng = np.random.default_rng(int(recipe["seed"]))
    sf = float(recipe.get("sfreq", 256))
    seg = float(recipe.get("segment_s", 2.0))
    art = recipe["artifact"]
    if art not in ("emg", "eog"):
        raise UsageError(f"Invalid value for 'artifact' in the recipe: allowed 'emg' and 'eog', got {art!r}.")
    noise_loader = load_emg_sources if art == "emg" else load_eog_sources
    recs = []
    for split in ("train", "val", "test"):
        cfg = recipe["splits"][split]
        clean, cmeta = load_clean_segments(cfg["clean"], sfreq=sf, segment_s=seg, seed=int(recipe["seed"]),
                                           root=root, **(recipe.get("clean_options") or {}))
        cap = cfg.get("max_clean")
        if cap and len(clean) > cap:
            keep = np.sort(rng.choice(len(clean), cap, replace=False))
            clean, cmeta = clean[keep], [cmeta[i] for i in keep]
        noise, nmeta = noise_loader(cfg["noise"], sfreq=sf, segment_s=seg, root=root,
                                    span=tuple(cfg.get("noise_span", (0.0, 1.0))),
                                    **(recipe.get("noise_options") or {}))
        if len(clean) == 0 or len(noise) == 0:
            raise InputFileError(f"recipe split {split!r}: no clean ({len(clean)}) or no noise ({len(noise)}) segments.")
        if split == "train":
            ci, ni, snr = _pairs_train(clean, noise, int(recipe.get("combin_num", 10)), rng,
                                       recipe.get("train_snr_db", (-7.0, 2.0)))
        else:
            ci, ni, snr = _pairs_test(clean, noise, rng, recipe.get("test_snr_db", TEST_SNRS))
        x, y, sd = mix_pairs(clean[ci], noise[ni], snr)
        labels = np.stack([snr, sd, ci, ni], 1).astype(np.float32)
        files = sorted({m["file"] for m in cmeta})
        recs += [
            _rec(f"{split}_clean", clean, attrs={"files": files}, sfreq=sf),
            _rec(f"{split}_noise", noise, attrs={"files": sorted({m["file"] for m in nmeta})}, sfreq=sf),
            _rec(f"{split}_x", x, sfreq=sf),
            _rec(f"{split}_y", y, labels=labels, attrs={"labels": ["snr_db", "std_y", "clean_index", "noise_index"]},
                 sfreq=sf),
        ]
    return write_windows(out, recs, config=recipe, overwrite=overwrite)


# --------------------------------------------------------------------------------------------
# multichannel benchmark
# --------------------------------------------------------------------------------------------
_TEMPORAL = ("T7", "T8", "FT7", "FT8", "TP7", "TP8", "T9", "T10", "F7", "F8")


def eog_profile(raw, decay_m=0.05):
    """Spatial weight of vertical EOG per EEG channel: 1 at the most frontal electrode, decaying
    exponentially (``decay_m`` metres) towards the back of the head.

    Returns
    -------
    v : ndarray, shape (n_eeg,)
        Vertical (blink) weights.
    h : ndarray, shape (n_eeg,)
        Horizontal (saccade) weights: left-right antisymmetric, also frontal.
    """
    pos = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
    y, x = pos[:, 1], pos[:, 0]
    v = np.exp(-(y.max() - y) / decay_m)
    h = v * np.clip(x / (np.abs(x).max() + 1e-12), -1, 1)
    return v, h


def build_multichannel(recipe, out, *, overwrite=False, root=None):
    """Build the 64-channel benchmark: real eegmmidb EEG + real EOG and EMG placed spatially.

    For every recording in the recipe: the band-passed (1 Hz high-pass, notch) EEG is the clean
    reference; real vertical/horizontal EOG is added with :func:`eog_profile` weights (RMS at the
    most frontal channel = ``eog_gain`` x that channel's EEG RMS); real EMG bursts (1-3 s, Tukey
    tapered, covering about ``emg_fraction`` of the time) are added on temporal channels with an
    RMS of ``emg_gain`` x each channel's EEG RMS. Stored groups: ``<rec>_clean`` and
    ``<rec>_contaminated`` (64, n_times) at the source rate, plus ``<rec>_emg_mask`` spans.
    ``noise_span`` (default ``[0, 1]``): the fraction of every EOG/EMG source used, so that a
    validation store can take the spans the training split never used.
    """
    from scipy.signal.windows import tukey

    from ..io import write_windows

    verify_sources(recipe, root)
    rng = np.random.default_rng(int(recipe["seed"]))
    eog_files = recipe["eog"]
    emg_files = recipe["emg"]
    s0, s1 = (float(v) for v in recipe.get("noise_span", (0.0, 1.0)))

    def span(x):
        return x[int(s0 * len(x)) : int(s1 * len(x))]
    recs = []
    for rel in recipe["recordings"]:
        raw = _read_eeg(_source_path(rel, root))
        raw.pick("eeg")
        sf = raw.info["sfreq"]
        clean = raw.get_data()
        clean = _notch(clean, sf, recipe.get("notch", (60.0,)))
        clean = _bandpass(clean, sf, recipe.get("l_freq", 1.0), None)
        n_t = clean.shape[1]
        rms = np.sqrt(np.mean(clean**2, axis=1))
        # EOG: vertical + horizontal traces from the (test-only) EOG file, random offset
        eogs = []
        for spec in eog_files:
            p, _, ch = spec.partition("::")
            (x, esf, _), = _read_eog(_source_path(p, root), ch or None)
            x = span(x)
            x = _resample(_bandpass(x, esf, 0.3, 10.0), esf, sf)
            off = int(rng.integers(0, max(1, len(x) - n_t)))
            x = np.resize(x[off:], n_t)
            eogs.append(x / (x.std() + 1e-30))
        v, h = eog_profile(raw)
        front = int(np.argmax(v))
        eog = np.outer(v, eogs[0]) + (np.outer(h, eogs[1]) if len(eogs) > 1 else 0.0)
        eog *= recipe.get("eog_gain", 2.0) * rms[front] / (eog[front].std() + 1e-30)
        # EMG bursts on temporal channels
        emg_x = []
        for f in emg_files:
            x, esf = _read_emg(_source_path(f, root))
            x = span(x)
            emg_x.append(_resample(_bandpass(x, esf, 1.0, 0.45 * min(esf, sf * 2)), esf, sf))
        emg = np.zeros_like(clean)
        mask = np.zeros(n_t, bool)
        temporal = [i for i, c in enumerate(raw.ch_names) if c in _TEMPORAL]
        t = 0
        while True:
            t += int(rng.uniform(2.0, 10.0) * sf)
            dur = int(rng.uniform(1.0, 3.0) * sf)
            if t + dur >= n_t:
                break
            side = rng.choice(temporal, size=max(1, len(temporal) // 2), replace=False)
            src = emg_x[int(rng.integers(len(emg_x)))]
            for c in side:
                o = int(rng.integers(0, len(src) - dur))
                seg = src[o : o + dur]
                seg = seg / (seg.std() + 1e-30) * recipe.get("emg_gain", 2.0) * rms[c]
                emg[c, t : t + dur] += seg * tukey(dur, 0.2)
            mask[t : t + dur] = True
            t += dur
        name = Path(rel).stem
        common = {"sfreq": sf, "ch_names": raw.ch_names}
        recs.append({"name": f"{name}_clean", "data": clean, **common})
        recs.append({"name": f"{name}_contaminated", "data": clean + eog + emg, **common,
                     "attrs": {"emg_fraction": float(mask.mean()), "source": rel}})
    return write_windows(out, recs, config=recipe, overwrite=overwrite)


def build_from_recipe(path, out=None, *, overwrite=False, root=None):
    """Build the store a recipe describes; ``out`` defaults to ``build/datasets/<name>.h5``."""
    recipe = load_recipe(path)
    out = Path(out) if out else Path("build") / "datasets" / f"{recipe['name']}.h5"
    out.parent.mkdir(parents=True, exist_ok=True)
    if recipe["builder"] == "denoise_single":
        return build_single_channel(recipe, out, overwrite=overwrite, root=root)
    return build_multichannel(recipe, out, overwrite=overwrite, root=root)


def load_benchmark(path, split):
    """Load one split of a single-channel store.

    Returns
    -------
    x, y : ndarray, shape (n_pairs, n_times), float32
        Clean target and noisy input (both scaled by 1/std(y)).
    labels : ndarray, shape (n_pairs, 4)
        ``snr_db, std_y, clean_index, noise_index``.
    """
    from ..io import WindowStore

    with WindowStore(path) as st:
        x, _ = st.windows(f"{split}_x")
        y, labels = st.windows(f"{split}_y")
    return x[:, 0], y[:, 0], labels


def describe(path):
    """Counts per split of a single-channel store, as a dict (for docs and checks)."""
    from ..io import WindowStore

    out = {}
    with WindowStore(path) as st:
        for r in st.recordings:
            info = st.info(r)
            out[r] = {"n_windows": int(st._f[r]["windows"].shape[0]) if "windows" in st._f[r] else 1,
                      **({"files": json.loads(info["files"])} if "files" in info else {})}
    return out
