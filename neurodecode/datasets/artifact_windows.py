"""Labelled ``clean`` / ``eye`` / ``muscle`` EEG windows built from real recordings.

The windows train and evaluate the artifact synthesis models
(:mod:`neurodecode.artifacts.synthesis`) and the fidelity suite
(:mod:`neurodecode.artifacts.fidelity`).

Sources (all under :func:`neurodecode.utils.data_dir`)
-------------------------------------------------------
* ``clean`` — windows of PhysioNet eegmmidb (11 subjects, all runs present) with no detected
  blink within 0.5 s, frontal peak-to-peak below a per-recording robust threshold, every
  channel's peak-to-peak below twice that channel's median over the recording, and no high-frequency (30-58 Hz) power outlier on any
  channel (so spontaneous muscle bursts are kept out).
* ``eye`` — real blinks recorded in the same eegmmidb recordings: events found by
  :func:`mne.preprocessing.find_eog_events` on Fp1/Fp2, kept when the 1-10 Hz frontal peak is
  at least ``blink_min_z`` robust standard deviations; the window is placed so the blink peak
  falls at a random position in its middle half. All 8 channels carry the real propagation.
* ``muscle`` — semi-synthetic, following the EEGdenoiseNet mixing convention
  (``SNR_dB = 10 log10(RMS(eeg) / RMS(lambda * emg))``, SNR ~ U(-7, 2) dB): a clean eegmmidb
  window (never one used in the ``clean`` class) plus two real EMG segments (PhysioNet emgdb
  needle EMG and BioSPPy surface EMG, band-passed 20-60 Hz) spread over the scalp with
  temporal-dominant left/right weights.

Splits are by subject: eegmmidb subjects ``S001-S007`` train, ``S008-S009`` validation,
``S010-S011`` test; EMG sources are split by record so no EMG segment crosses a split.

Store layout (:func:`neurodecode.io.write_windows`): one group per ``<subject>_<label>``,
``data`` (8, n_windows * 256) float32 in µV, ``windows`` (n_windows, 2), ``labels``
(n_windows,) int64, attributes ``subject``, ``split``, ``label``.
"""

import logging
from pathlib import Path

import numpy as np

from ..utils import InputFileError, UsageError, check_option, data_dir, sha256_file

logger = logging.getLogger(__name__)

LABELS = ("clean", "eye", "muscle")
CHANNELS = ("Fp1", "Fp2", "C3", "C4", "O1", "O2", "T7", "T8")
SFREQ = 128.0
N_TIMES = 256
SPLITS = {
    "train": ("S001", "S002", "S003", "S004", "S005", "S006", "S007"),
    "val": ("S008", "S009"),
    "test": ("S010", "S011"),
}
# Record-wise EMG split: each record is a different person (or muscle), none crosses a split.
EMG_SPLITS = {
    "train": ("emgdb_physionet/emg_neuropathy", "emgdb_physionet/emg_myopathy", "biosppy_semg/emg_1.txt"),
    "val": ("biosppy_semg/emg.txt",),
    "test": ("emgdb_physionet/emg_healthy",),
}
# Relative EMG gain per channel for a left-side source; the right side is mirrored.
# Temporal sites sit over temporalis/masseter, frontal sites over the frontalis.
_LEFT_WEIGHTS = np.array([0.5, 0.15, 0.3, 0.1, 0.2, 0.05, 1.0, 0.1])
_MIRROR = np.array([1, 0, 3, 2, 5, 4, 7, 6])

DEFAULT_CONFIG = {
    "name": "artifact_windows",
    "version": 1,
    "channels": list(CHANNELS),
    "sfreq": SFREQ,
    "n_times": N_TIMES,
    "highpass_hz": 0.5,
    "notch_hz": 60.0,
    "clean_stride_s": 1.0,
    "blink_exclusion_s": 0.5,
    "blink_min_z": 6.0,
    "clean_ptp_ratio": 2.0,
    "clean_frontal_z": 3.0,
    "clean_hf_z": 2.5,
    "emg_band_hz": [20.0, 60.0],
    "snr_db": [-7.0, 2.0],
    "splits": {k: list(v) for k, v in SPLITS.items()},
    "emg_splits": {k: list(v) for k, v in EMG_SPLITS.items()},
    "seed": 0,
}


def _robust_std(x, axis=-1):
    med = np.median(x, axis=axis, keepdims=True)
    return 1.4826 * np.median(np.abs(x - med), axis=axis)


def _load_eegmmidb(path, cfg):
    """Read one eegmmidb run: 8 channels, high-passed, notched, resampled; µV."""
    import mne

    raw = mne.io.read_raw_edf(path, preload=True, verbose="ERROR")
    mne.datasets.eegbci.standardize(raw)
    missing = [c for c in CHANNELS if c not in raw.ch_names]
    if missing:
        raise InputFileError(f"{path}: channels {missing} are missing; expected the 64-channel eegmmidb montage.")
    raw.pick(list(CHANNELS))
    raw.filter(cfg["highpass_hz"], None, verbose="ERROR")
    raw.notch_filter(cfg["notch_hz"], verbose="ERROR")
    # Blinks are located on the original rate, then everything is resampled.
    blinks = mne.preprocessing.find_eog_events(raw, ch_name=["Fp1", "Fp2"], verbose="ERROR")
    blink_t = blinks[:, 0] / raw.info["sfreq"] - raw.first_time if len(blinks) else np.zeros(0)
    frontal = raw.copy().pick(["Fp1", "Fp2"]).filter(1.0, 10.0, verbose="ERROR").get_data().mean(0) * 1e6
    raw.resample(cfg["sfreq"], verbose="ERROR")
    data = raw.get_data() * 1e6
    sf0 = len(frontal) / (raw.n_times / cfg["sfreq"])
    return data.astype(np.float64), blink_t, frontal, sf0


def _emg_segments_pool(files, cfg, root):
    """Load the EMG records of one split, band-pass at the native rate and resample to ``sfreq``."""
    from scipy.signal import butter, resample_poly, sosfiltfilt

    out = []
    for rel in files:
        p = root / rel
        if rel.startswith("emgdb"):
            import wfdb

            rec = wfdb.rdrecord(str(p))
            x, fs = rec.p_signal[:, 0].astype(np.float64), float(rec.fs)
            src = Path(str(p) + ".dat")
        else:
            x = np.loadtxt(p, comments="#").astype(np.float64)
            fs = 1000.0
            src = p
        x = x - x.mean()
        lo, hi = cfg["emg_band_hz"]
        sos = butter(4, [lo, hi], btype="band", fs=fs, output="sos")
        x = sosfiltfilt(sos, x)
        from fractions import Fraction

        frac = Fraction(cfg["sfreq"] / fs).limit_denominator(1000)
        x = resample_poly(x, frac.numerator, frac.denominator)
        out.append((rel, x / (np.std(x) + 1e-12), sha256_file(src)))
    return out


def _emg_segment(pool, rng, n):
    """Draw an active EMG segment of ``n`` samples: RMS above the record's median segment RMS."""
    rel, x, _ = pool[rng.integers(len(pool))]
    for _ in range(50):
        a = rng.integers(0, len(x) - n)
        seg = x[a : a + n]
        if np.sqrt(np.mean(seg**2)) >= 0.8:  # records are unit-variance: keep active stretches
            break
    return seg / (np.std(seg) + 1e-12)


def build_artifact_windows(root=None, *, config=None, subjects=None, max_runs=None):
    """Build the labelled windows from the real recordings.

    Parameters
    ----------
    root : path-like | None
        Folder of real recordings (default :func:`neurodecode.utils.data_dir`).
    config : dict | None
        Overrides of :data:`DEFAULT_CONFIG`.
    subjects : list of str | None
        Restrict to these eegmmidb subjects (tests use one or two).
    max_runs : int | None
        Use at most this many runs per subject.

    Returns
    -------
    recordings : list of dict
        Ready for :func:`neurodecode.io.write_windows`; one per subject and label.
    config : dict
        The full recipe used (stored with the windows).
    """
    cfg = dict(DEFAULT_CONFIG, **(config or {}))
    root = Path(root) if root is not None else data_dir()
    base = root / "eegmmidb"
    if not base.is_dir():
        raise InputFileError(f"{base}: eegmmidb folder not found; set NEURODECODE_DATA (see MANIFEST.md).")
    rng = np.random.default_rng(cfg["seed"])
    split_of = {s: k for k, v in cfg["splits"].items() for s in v}
    subjects = list(subjects) if subjects is not None else sorted(split_of)
    for s in subjects:
        if s not in split_of:
            raise UsageError(f"Subject {s!r} is in no split; allowed subjects are {sorted(split_of)}.")
    emg_pools = {}
    recs = []
    n = int(cfg["n_times"])
    sf = float(cfg["sfreq"])
    for subj in subjects:
        split = split_of[subj]
        if split not in emg_pools:
            emg_pools[split] = _emg_segments_pool(cfg["emg_splits"][split], cfg, root)
        runs = sorted((base / subj).glob(f"{subj}R*.edf"))[: max_runs or None]
        if not runs:
            raise InputFileError(f"{base / subj}: no EDF runs found.")
        per_label = {lab: [] for lab in LABELS}
        shas = []
        for run in runs:
            data, blink_t, frontal, sf0 = _load_eegmmidb(run, cfg)
            shas.append(sha256_file(run))
            # Blink events: keep strong ones only (find_eog_events also fires on slow drifts).
            fz = (frontal - np.median(frontal)) / (_robust_std(frontal) + 1e-12)
            keep = [t for t in blink_t if np.abs(fz[int(np.clip(t * sf0, 0, len(fz) - 1))]) >= cfg["blink_min_z"]]
            blink_t = np.asarray(keep)
            T = data.shape[1]
            # eye windows: blink peak anywhere in the middle half of the window
            for t in blink_t:
                c = int(round(t * sf)) - int(rng.integers(n // 4, 3 * n // 4))
                if 0 <= c and c + n <= T:
                    per_label["eye"].append(data[:, c : c + n])
            # clean candidates on a regular grid
            stride = int(cfg["clean_stride_s"] * sf)
            starts = np.arange(0, T - n + 1, stride)
            segs = np.stack([data[:, a : a + n] for a in starts])
            ptp = np.ptp(segs, axis=-1)
            fr_ptp = ptp[:, :2].max(1)
            fr_z = (fr_ptp - np.median(fr_ptp)) / (_robust_std(fr_ptp) + 1e-12)
            spec = np.abs(np.fft.rfft(segs * np.hanning(n), axis=-1)) ** 2
            freqs = np.fft.rfftfreq(n, 1 / sf)
            hf = np.log(spec[..., (freqs >= 30) & (freqs <= 58)].mean(-1) + 1e-12)
            hf_z = ((hf - np.median(hf, 0)) / (_robust_std(hf, axis=0) + 1e-12)).max(1)
            near = np.zeros(len(starts), bool)
            for t in blink_t:
                b = t * sf
                ex = cfg["blink_exclusion_s"] * sf
                near |= (starts - ex <= b) & (b <= starts + n + ex)
            ok = ~near & (ptp <= cfg["clean_ptp_ratio"] * np.median(ptp, 0)).all(1) & (fr_z <= cfg["clean_frontal_z"])
            ok &= hf_z <= cfg["clean_hf_z"]
            idx = np.flatnonzero(ok)
            # Alternate clean candidates between the clean class and the muscle base, so that
            # no EEG stretch appears in two classes.
            for j, i in enumerate(idx):
                if j % 2 == 0:
                    per_label["clean"].append(segs[i])
                else:
                    per_label["muscle"].append(_add_muscle(segs[i], emg_pools[split], rng, cfg))
        for li, lab in enumerate(LABELS):
            W = per_label[lab]
            if not W:
                logger.warning("subject %s: no %s windows", subj, lab)
                continue
            W = np.stack(W).astype(np.float32)
            recs.append(
                {
                    "name": f"{subj}_{lab}",
                    "data": np.concatenate(list(W), axis=1),
                    "sfreq": sf,
                    "ch_names": list(CHANNELS),
                    "ch_types": ["eeg"] * len(CHANNELS),
                    "windows": np.stack([np.arange(len(W)) * n, (np.arange(len(W)) + 1) * n], 1),
                    "labels": np.full(len(W), li, np.int64),
                    "source_sha256": ",".join(shas),
                    "attrs": {
                        "subject": subj,
                        "split": split,
                        "label": lab,
                        "label_names": list(LABELS),
                        "units": "uV",
                        "emg_sources": [r for r, _, _ in emg_pools[split]] if lab == "muscle" else [],
                    },
                }
            )
    return recs, cfg


def _add_muscle(eeg, pool, rng, cfg):
    """Add left/right EMG to one clean window at an SNR drawn from ``cfg['snr_db']``."""
    n = eeg.shape[1]
    left, right = rng.uniform(0.0, 1.0, 2)
    # at least one side strongly active: unilateral or bilateral contractions
    if max(left, right) < 0.5:
        left, right = (1.0, right) if left > right else (left, 1.0)
    emg = np.outer(_LEFT_WEIGHTS * left, _emg_segment(pool, rng, n))
    emg += np.outer(_LEFT_WEIGHTS[_MIRROR] * right, _emg_segment(pool, rng, n))
    snr = rng.uniform(*cfg["snr_db"])
    # EEGdenoiseNet convention (RMS ratio, 10 log10) on the most contaminated channel.
    k = int(np.argmax(np.sqrt(np.mean(emg**2, 1))))
    rms_eeg = np.sqrt(np.mean(eeg[k] ** 2))
    rms_emg = np.sqrt(np.mean(emg[k] ** 2))
    lam = rms_eeg / (rms_emg * 10 ** (0.1 * snr))
    return eeg + lam * emg


def write_artifact_windows(path, *, root=None, config=None, subjects=None, max_runs=None, overwrite=False):
    """Build the windows and write them as an HDF5 window store; returns the path."""
    from ..io import write_windows

    recs, cfg = build_artifact_windows(root, config=config, subjects=subjects, max_runs=max_runs)
    return write_windows(path, recs, config=cfg, overwrite=overwrite)


def load_artifact_windows(path, split=None, labels=None):
    """Read windows from a store written by :func:`write_artifact_windows`.

    Parameters
    ----------
    path : path-like
        The ``.h5`` window store.
    split : {'train', 'val', 'test'} | None
        Keep one subject-wise split (None: all).
    labels : list of str | None
        Keep these labels (None: all).

    Returns
    -------
    X : ndarray, shape (n_windows, n_chans, n_times), float32, µV
    y : ndarray, shape (n_windows,), int64 index into :data:`LABELS`
    subjects : ndarray of str, shape (n_windows,)
    """
    import json

    from ..io import WindowStore

    if split is not None:
        check_option("split", split, ("train", "val", "test"))
    for lab in labels or ():
        check_option("labels", lab, LABELS)
    Xs, ys, ss = [], [], []
    with WindowStore(path) as st:
        for name in st.recordings:
            a = st.info(name)
            if "split" not in a or "label" not in a:
                raise InputFileError(f"{path}: group {name!r} has no split/label; not an artifact-window store.")
            if split is not None and json.loads(a["split"]) != split:
                continue
            if labels is not None and json.loads(a["label"]) not in labels:
                continue
            X, y = st.windows(name)
            Xs.append(X)
            ys.append(y)
            ss.append(np.full(len(y), json.loads(a["subject"])))
    if not Xs:
        raise InputFileError(f"{path}: no windows for split={split!r}, labels={labels!r}.")
    return np.concatenate(Xs), np.concatenate(ys).astype(np.int64), np.concatenate(ss)
