"""``write_raw``: EDF+/BDF/FIF/BrainVision output, atomic, never overwriting an input."""

from pathlib import Path

import numpy as np

from ..utils import UsageError, atomic_path
from ..utils._atomic import check_output_path

_FORMATS = {".edf": "edf", ".bdf": "bdf", ".fif": "fif", ".fif.gz": "fif", ".vhdr": "brainvision"}


def output_format(path):
    """Return the format name for an output path, or raise :class:`UsageError`."""
    path = Path(path)
    name = path.name.lower()
    ext = next((e for e in sorted(_FORMATS, key=len, reverse=True) if name.endswith(e)), path.suffix.lower())
    if ext not in _FORMATS:
        raise UsageError(
            f"Cannot write {path}: unsupported output extension {ext or '(none)'!r}. "
            f"Allowed extensions: {', '.join(sorted(_FORMATS))}."
        )
    return _FORMATS[ext]


def write_raw(raw, path, *, overwrite=False):
    """Write ``raw`` to ``path`` in the format its extension names.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording; its annotations (``BAD_*`` included) are written too.
    path : path-like
        ``.edf`` (EDF+, the clinicians' default), ``.bdf``, ``.fif`` or ``.vhdr``.
    overwrite : bool
        Replace an existing file. Writing onto the recording's own source file is refused
        even then.

    Returns
    -------
    path : Path

    Notes
    -----
    EDF and BDF store integers: each channel gets its own physical range (its own minimum
    and maximum), so one channel driven off-scale does not coarsen the quantisation of the
    others. NaN samples cannot be stored in EDF/BDF; they are written as 0 and must already
    be marked (``read_raw`` marks them ``BAD_NAN``); a recording whose NaNs are not covered
    by a ``BAD_`` annotation is refused. The file is written under a temporary name in the
    target folder, flushed to disk and renamed, so a crash never leaves a half-written file.
    """
    path = Path(path)
    fmt = output_format(path)
    sources = [Path(f) for f in (raw.filenames or []) if f is not None]
    if fmt == "brainvision":
        return _write_brainvision(raw, path, overwrite=overwrite, sources=sources)
    with atomic_path(path, overwrite=overwrite, inputs=sources) as tmp:
        if fmt == "fif":
            raw.save(tmp, overwrite=True, verbose="error")
            return path
        import mne

        out = raw
        if fmt in ("edf", "bdf"):
            out = _fill_marked_nans(raw)
        kwargs = {"physical_range": "channelwise"} if fmt in ("edf", "bdf") else {}
        mne.export.export_raw(tmp, out, fmt=fmt, overwrite=True, verbose="error", **kwargs)
    return path


def _write_brainvision(raw, path, *, overwrite, sources):
    """BrainVision is three files that name each other: write them in a temporary folder
    beside the target under their final names, then move the data and marker files first
    and the header last, so a reader never finds a header without its data."""
    import os
    import shutil
    import tempfile

    import mne

    parts = [path.with_suffix(ext) for ext in (".eeg", ".vmrk", ".vhdr")]
    for p in parts:
        check_output_path(p, overwrite=overwrite, inputs=sources)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.stem}.tmp-", dir=path.parent))
    try:
        mne.export.export_raw(tmpdir / path.name, raw, fmt="brainvision", overwrite=True, verbose="error")
        for p in parts:
            with open(tmpdir / p.name, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmpdir / p.name, p)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path


def _fill_marked_nans(raw):
    """Return ``raw`` itself, or a loaded copy with annotated NaNs set to 0."""
    data = raw.get_data()
    nan = np.isnan(data)
    if not nan.any():
        return raw
    sf = raw.info["sfreq"]
    covered = np.zeros(raw.n_times, bool)
    first = raw.first_time if raw.annotations.orig_time is not None else 0.0
    for a in raw.annotations:
        if a["description"].upper().startswith("BAD"):
            i0 = int(round((a["onset"] - first) * sf))
            covered[max(i0, 0) : i0 + int(round(a["duration"] * sf)) + 1] = True
    if (nan.any(axis=0) & ~covered).any():
        raise UsageError(
            "The recording has NaN samples outside BAD_ annotations; EDF/BDF cannot store NaN. "
            "Read it with neurodecode.io.read_raw (which marks them BAD_NAN) or write FIF."
        )
    out = raw.copy().load_data(verbose="error")
    out._data[np.isnan(out._data)] = 0.0
    return out
