"""``read_raw``: one entry point for every M/EEG format MNE reads, with our normalisation."""

import logging
from pathlib import Path

import numpy as np

from ..utils import InputFileError

logger = logging.getLogger("neurodecode")

# Extension -> MNE reader name. Multi-part suffixes first so ".fif.gz" wins over ".gz".
_READERS = {
    ".edf": "read_raw_edf",
    ".bdf": "read_raw_bdf",
    ".gdf": "read_raw_gdf",
    ".fif": "read_raw_fif",
    ".fif.gz": "read_raw_fif",
    ".vhdr": "read_raw_brainvision",
    ".set": "read_raw_eeglab",
    ".eeg": "read_raw_nihon",
    ".nxe": "read_raw_eximia",
    ".sqd": "read_raw_kit",
    ".con": "read_raw_kit",
    ".ds": "read_raw_ctf",
    ".cnt": "read_raw_cnt",
    ".mff": "read_raw_egi",
    ".egi": "read_raw_egi",
    ".lay": "read_raw_persyst",
    ".mef": "read_raw_nsx",
    ".ns5": "read_raw_nsx",
    ".nedf": "read_raw_nedf",
    ".xdf": None,
    ".snirf": "read_raw_snirf",
    ".hdr": "read_raw_nirx",
    ".bin": "read_raw_fieldtrip",
    ".data": "read_raw_nicolet",
    ".edf+": "read_raw_edf",
}
_READERS.pop(".xdf")


def supported_extensions():
    """Return the sorted list of file extensions :func:`read_raw` accepts."""
    return sorted(_READERS)


def _suffix(path):
    name = path.name.lower()
    for ext in sorted(_READERS, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return path.suffix.lower()


def read_raw(path, *, preload=False, verbose="error", **kwargs):
    """Read any supported M/EEG recording into an :class:`mne.io.BaseRaw`.

    Parameters
    ----------
    path : path-like
        The recording. The reader is chosen from the extension (see
        :func:`supported_extensions`); a BrainVision recording is opened by its ``.vhdr``.
    preload : bool
        Load the data into memory now. ``False`` reads lazily; both give identical data.
    verbose : str
        MNE's verbosity.
    **kwargs
        Passed on to the MNE reader.

    Returns
    -------
    raw : mne.io.BaseRaw
        Channel types set from names (EOG, ECG, EMG, misc), BCI2000-style names normalised,
        a standard montage set where the names allow it, annotations kept.
    """
    import mne

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file or folder.")
    ext = _suffix(path)
    if ext not in _READERS:
        raise InputFileError(
            f"{path}: unsupported file type {ext or '(no extension)'!r}. "
            f"Supported extensions: {', '.join(supported_extensions())}."
        )
    if path.is_file() and path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty (0 bytes).")
    reader = getattr(mne.io, _READERS[ext])
    try:
        raw = reader(path, preload=preload, verbose=verbose, **kwargs)
    except Exception as err:  # MNE raises many types; the user needs one sentence.
        raise InputFileError(f"{path}: could not be read as {ext} ({err}).") from err
    _normalise(raw)
    return raw


_TYPE_HINTS = (("EOG", "eog"), ("ECG", "ecg"), ("EKG", "ecg"), ("EMG", "emg"), ("RESP", "resp"), ("SAO2", "misc"))


def _normalise(raw):
    """Fix names and types in place; this never touches the data."""
    import mne

    names = raw.ch_names
    if any(n.endswith(".") for n in names):
        mne.datasets.eegbci.standardize(raw)
    types = {}
    for name, kind in zip(raw.ch_names, raw.get_channel_types()):
        upper = name.upper()
        for hint, new in _TYPE_HINTS:
            if hint in upper and kind in ("eeg", "misc") and kind != new:
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


def nan_annotations(raw):
    """Return ``BAD_NAN`` annotations for spans where any channel is NaN."""
    import mne

    data = raw.get_data()
    bad = np.isnan(data).any(axis=0)
    if not bad.any():
        return mne.Annotations([], [], [], orig_time=raw.annotations.orig_time)
    edges = np.flatnonzero(np.diff(np.r_[0, bad.astype(np.int8), 0]))
    onsets, ends = edges[::2], edges[1::2]
    sf = raw.info["sfreq"]
    return mne.Annotations(
        onsets / sf + raw.first_time, (ends - onsets) / sf, ["BAD_NAN"] * len(onsets),
        orig_time=raw.annotations.orig_time,
    )


def _standard_montage_name():
    """MNE 1.13 renamed the 10-05 template; use whichever name this MNE has."""
    import mne

    names = mne.channels.get_builtin_montages()
    return "colin27_1005" if "colin27_1005" in names else "standard_1005"
