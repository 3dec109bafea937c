"""``read_raw``: one entry point for every M/EEG format MNE reads, with our normalisation.

The reader is chosen from the file name; MNE does the reading. What we add is what a
clinician needs around it: a sentence instead of a traceback for a bad file, warnings for
damage that can be worked around (kept on the returned object and listed by
:func:`problems`), channel types and names
normalised, a montage where the names allow one, and NaN spans marked ``BAD_NAN``.
"""

import logging
import re
import warnings
from pathlib import Path

import numpy as np

from ..utils import InputFileError, record_warning
from ._edf_header import check_edf_header

logger = logging.getLogger("neurodecode")

# Extension (lower case) -> name of the reader in mne.io, or a callable of ours.
_READERS = {
    ".edf": "read_raw_edf",
    ".rec": "read_raw_edf",
    ".bdf": "read_raw_bdf",
    ".gdf": "read_raw_gdf",
    ".fif": "read_raw_fif",
    ".fif.gz": "read_raw_fif",
    ".vhdr": "read_raw_brainvision",
    ".ahdr": "read_raw_brainvision",
    ".set": "read_raw_eeglab",
    ".eeg": "read_raw_nihon",  # BrainVision's .eeg is redirected to its .vhdr below
    ".nxe": "read_raw_eximia",
    ".sqd": "read_raw_kit",
    ".con": "read_raw_kit",
    ".ds": "read_raw_ctf",
    ".cnt": "read_raw_cnt",
    ".mff": "read_raw_egi",
    ".lay": "read_raw_persyst",
    ".nedf": "read_raw_nedf",
    ".snirf": "read_raw_snirf",
    ".nsx": "read_raw_nsx",
    ".ns5": "read_raw_nsx",
    ".ns6": "read_raw_nsx",
    ".hea": "_read_raw_wfdb",
}

# Attribute of the returned Raw holding the problems found while reading it; see problems().
_PROBLEMS_ATTR = "_neurodecode_problems"


def supported_extensions():
    """Return the sorted list of file extensions :func:`read_raw` accepts."""
    return sorted(_READERS)


def _suffix(path):
    name = path.name.lower()
    for ext in sorted(_READERS, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return path.suffix.lower()


def problems(raw):
    """Return the list of problems (recoverable damage) found when ``raw`` was read."""
    return list(getattr(raw, _PROBLEMS_ATTR, []))


def read_raw(path, *, preload=False, check_nan=True, rename_channels=True, verbose="error", **kwargs):
    """Read any supported M/EEG recording into an :class:`mne.io.BaseRaw`.

    Parameters
    ----------
    path : path-like
        The recording. The reader is chosen from the extension (see
        :func:`supported_extensions`); BrainVision is opened by its ``.vhdr`` (a ``.eeg``
        with a ``.vhdr`` beside it is redirected), CTF by its ``.ds`` folder.
    preload : bool
        Load the data into memory now. ``False`` reads lazily; both give identical data.
    check_nan : bool
        Scan the data (in chunks) for NaN samples and mark them as ``BAD_NAN`` annotations.
    rename_channels : bool
        Normalise known naming schemes: BCI2000 (``Fc5.`` -> ``FC5``) and the clinical EDF
        convention ``<TYPE> <label>-<ref>`` (``EEG Fp1-Ref`` -> ``Fp1`` of type EEG,
        ``ECG ECG1`` -> ``ECG1`` of type ECG, ``POL X1`` -> ``X1`` of type misc).
    verbose : str
        MNE's verbosity.
    **kwargs
        Passed on to the MNE reader.

    Returns
    -------
    raw : mne.io.BaseRaw
        Channel types set from names (EOG, ECG, EMG, respiration, misc), BCI2000-style
        names normalised (``Fc5.`` -> ``FC5``), a standard 10-05 montage set where the names
        allow it, annotations kept. Problems found are warnings, also listed by
        :func:`problems`.

    Raises
    ------
    InputFileError
        The file is missing, empty, of an unsupported type, or cannot be read; the message
        names the file and what was expected.
    """
    import mne

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file or folder.")
    ext = _suffix(path)
    if ext == ".eeg" and path.with_suffix(".vhdr").exists():
        path, ext = path.with_suffix(".vhdr"), ".vhdr"
    if ext not in _READERS:
        raise InputFileError(
            f"{path}: unsupported file type {ext or '(no extension)'!r}. "
            f"Supported extensions: {', '.join(supported_extensions())}."
        )
    if path.is_file() and path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty (0 bytes); expected a {ext} recording.")
    found = []
    if ext in (".edf", ".bdf", ".rec"):
        for msg in check_edf_header(path):
            found.append(msg)
    if ext == ".set":
        _check_eeglab(path)
    name = _READERS[ext]
    reader = globals()[name] if name.startswith("_") else getattr(mne.io, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            raw = reader(path, preload=preload, verbose=verbose, **kwargs)
        except InputFileError:
            raise
        except Exception as err:  # MNE raises many types; the user needs one sentence.
            reason = str(err).strip().rstrip(".") or type(err).__name__
            raise InputFileError(f"{path}: could not be read as a {ext} recording ({reason}).") from err
    found += [f"{path.name}: {w.message}" for w in caught if not issubclass(w.category, DeprecationWarning)]
    _normalise(raw, rename=rename_channels)
    if ext in (".vhdr", ".ahdr"):
        _unwrap_brainvision_comments(raw)
    if check_nan:
        nan = nan_annotations(raw)
        if len(nan):
            raw.set_annotations(raw.annotations + nan)
            total = float(np.sum(nan.duration))
            found.append(f"{path.name}: {len(nan)} span(s) of NaN samples ({total:.3f} s) marked as BAD_NAN.")
    setattr(raw, _PROBLEMS_ATTR, [])
    for msg in found:
        record_warning(msg, getattr(raw, _PROBLEMS_ATTR), stacklevel=2)
    return raw


def _unwrap_brainvision_comments(raw):
    """MNE reads BrainVision free-text comments as ``Comment/<text>``; the text itself is the
    annotation (a ``BAD_`` span must come back as ``BAD_...`` so MNE still rejects it, and
    EDF+ annotations written to BrainVision must round-trip). ``Stimulus/S 1`` etc. stay."""
    desc = raw.annotations.description
    fixed = [d.split("/", 1)[1] if d.startswith("Comment/") else d for d in desc]
    if fixed != list(desc):
        raw.annotations.description = np.array(fixed, dtype=desc.dtype if len(desc) else object)


def _check_eeglab(path):
    """Refuse an EEGLAB file whose data file is missing, or that holds epochs."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=["EEG", "data", "trials"], squeeze_me=True, struct_as_record=False)
    except NotImplementedError:  # MATLAB v7.3 (HDF5) files: let MNE's reader handle them
        return
    except Exception as err:
        raise InputFileError(f"{path}: not a readable EEGLAB .set file ({err}).") from err
    eeg = mat.get("EEG")
    data = getattr(eeg, "data", mat.get("data"))
    trials = getattr(eeg, "trials", mat.get("trials", 1))
    if isinstance(data, str):
        fdt = path.parent / data
        if not fdt.exists():
            raise InputFileError(
                f"{path}: its data file {data!r} is missing; expected it beside the .set file ({fdt})."
            )
    try:
        n_trials = int(np.asarray(trials).ravel()[0])
    except (TypeError, ValueError, IndexError):
        n_trials = 1
    if n_trials > 1:
        raise InputFileError(
            f"{path}: holds {n_trials} epochs, not a continuous recording; read it with mne.read_epochs_eeglab."
        )


def _read_raw_wfdb(path, preload=False, verbose=None):
    """PhysioNet WFDB record (``.hea`` + ``.dat``) as a RawArray; channel types from names."""
    import mne
    import wfdb

    record = wfdb.rdrecord(str(path.with_suffix("")))
    units = [u.lower() for u in record.units]
    scale = np.array([{"mv": 1e-3, "uv": 1e-6, "v": 1.0}.get(u, 1.0) for u in units])
    data = record.p_signal.T * scale[:, None]
    names = [str(n) for n in record.sig_name]
    types = ["emg" if "emg" in n.lower() else "ecg" if "ecg" in n.lower() else "misc" for n in names]
    info = mne.create_info(names, float(record.fs), types)
    return mne.io.RawArray(data, info, verbose="error")


_TYPE_HINTS = (
    ("EOG", "eog"),
    ("ECG", "ecg"),
    ("EKG", "ecg"),
    ("EMG", "emg"),
    ("RESP", "resp"),
    ("SAO2", "misc"),
    ("SPO2", "misc"),
    ("PHOTIC", "stim"),
)


# Clinical EDF exports (Nihon Kohden, Natus, ...) label channels "<TYPE> <name>-<ref>".
_CLINICAL = re.compile(r"^(EEG|ECG|EKG|EOG|EMG|POL|SAO2|SPO2|RESP|PHOTIC)\s+(\S+?)(?:-(?:REF|AV|AVG|LE|A1|A2))?$", re.I)
_CLINICAL_TYPES = {"EEG": "eeg", "ECG": "ecg", "EKG": "ecg", "EOG": "eog", "EMG": "emg", "RESP": "resp", "PHOTIC": "stim"}


def _rename_clinical(raw):
    matches = [_CLINICAL.match(n) for n in raw.ch_names]
    if sum(m is not None for m in matches) < 0.5 * len(raw.ch_names):
        return
    mapping, types = {}, {}
    taken = set(raw.ch_names)
    for name, m in zip(raw.ch_names, matches):
        if m is None:
            continue
        new = m.group(2)
        if new != name and new not in taken:
            mapping[name] = new
            taken.add(new)
        types[mapping.get(name, name)] = _CLINICAL_TYPES.get(m.group(1).upper(), "misc")
    raw.rename_channels(mapping, verbose="error")
    current = dict(zip(raw.ch_names, raw.get_channel_types()))
    # Only EEG/misc channels are retyped: MEG or stim types read from the file are trusted.
    types = {n: t for n, t in types.items() if current[n] in ("eeg", "misc") and current[n] != t}
    if types:
        raw.set_channel_types(types, verbose="error")


def _normalise(raw, rename=True):
    """Fix channel names and types in place; the data are not touched."""
    import mne

    if rename:
        _rename_clinical(raw)
    if rename and raw.ch_names and all(n.endswith(".") or n[-1].isalnum() for n in raw.ch_names) and any(
        n.endswith(".") for n in raw.ch_names
    ):
        # BCI2000 pads names with dots (Fc5., C3..): MNE's eegbci helper maps them to 10-05.
        mne.datasets.eegbci.standardize(raw)
    types = {}
    for name, kind in zip(raw.ch_names, raw.get_channel_types()):
        if kind not in ("eeg", "misc"):
            continue
        upper = name.upper()
        for hint, new in _TYPE_HINTS:
            if hint in upper:
                if new != kind:
                    types[name] = new
                break
    if types:
        raw.set_channel_types(types, verbose="error")
    if raw.get_montage() is None and "eeg" in raw:
        montage = mne.channels.make_standard_montage(_standard_montage_name())
        known = {n.lower() for n in montage.ch_names}
        eeg = [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True)]
        if eeg and sum(n.lower() in known for n in eeg) >= 0.8 * len(eeg):
            raw.set_montage(montage, match_case=False, on_missing="ignore", verbose="error")
    return raw


def _standard_montage_name():
    """MNE 1.13 renamed the 10-05 template; use whichever name this MNE has."""
    import mne

    names = mne.channels.get_builtin_montages()
    return "colin27_1005" if "colin27_1005" in names else "standard_1005"


def nan_annotations(raw, chunk_s=60.0):
    """Return ``BAD_NAN`` annotations for spans where any channel is NaN.

    Parameters
    ----------
    raw : mne.io.BaseRaw
    chunk_s : float
        Seconds read at a time, so an unloaded long recording is scanned in bounded memory.

    Returns
    -------
    annotations : mne.Annotations
    """
    import mne

    sf = raw.info["sfreq"]
    step = max(1, int(chunk_s * sf))
    bad = np.zeros(raw.n_times, dtype=bool)
    for start in range(0, raw.n_times, step):
        stop = min(raw.n_times, start + step)
        bad[start:stop] = np.isnan(raw.get_data(start=start, stop=stop)).any(axis=0)
    if not bad.any():
        return mne.Annotations([], [], [], orig_time=raw.annotations.orig_time)
    edges = np.flatnonzero(np.diff(np.r_[0, bad.astype(np.int8), 0]))
    onsets, ends = edges[::2], edges[1::2]
    first = raw.first_time if raw.annotations.orig_time is not None else 0.0
    return mne.Annotations(
        onsets / sf + first,
        (ends - onsets) / sf,
        ["BAD_NAN"] * len(onsets),
        orig_time=raw.annotations.orig_time,
    )
