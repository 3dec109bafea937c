"""``write_raw``: EDF+/BDF/FIF/BrainVision output, atomic, never overwriting an input."""

import os
from pathlib import Path

import numpy as np

from ..utils import UsageError, atomic_path
from ..utils._atomic import check_output_path

# Above this many bytes of data, EDF is written in chunks (bounded memory) instead of through
# MNE's exporter, which holds the whole recording in memory.
STREAM_ABOVE_BYTES = 256 * 2**20

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


def write_raw(raw, path, *, overwrite=False, inputs=()):
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
    inputs : iterable of path-like
        Further files this recording came from. A cleaned or annotated copy held in memory
        no longer knows its source file; pass it here so it is protected like ``raw``'s own.

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
    sources = [Path(f) for f in (raw.filenames or []) if f is not None] + [Path(f) for f in inputs]
    if fmt == "brainvision":
        return _write_brainvision(raw, path, overwrite=overwrite, sources=sources)
    if fmt == "edf" and len(raw.ch_names) * raw.n_times * 8 > STREAM_ABOVE_BYTES:
        return _write_edf_chunked(raw, path, overwrite=overwrite, sources=sources)
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


def _write_edf_chunked(raw, path, *, overwrite, sources, chunk_s=60.0):
    """EDF+ for long recordings: read, scan and write in chunks; NaN samples are written as 0
    (``read_raw`` has marked them ``BAD_NAN``)."""
    check_output_path(path, overwrite=overwrite, inputs=sources)
    step = max(1, int(chunk_s * raw.info["sfreq"]))

    def chunks():
        for s in range(0, raw.n_times, step):
            e = min(s + step, raw.n_times)
            yield s, e, np.nan_to_num(raw.get_data(start=s, stop=e), nan=0.0)

    ann = raw.annotations
    offset = raw.first_time if ann.orig_time is not None else 0.0
    rel = [(float(o - offset), float(d), str(t)) for o, d, t in zip(ann.onset, ann.duration, ann.description)]
    write_edf_streamed(path, raw, chunks, n_times=raw.n_times, annotations=rel, prefilter="", sources=sources)
    return path


def write_edf_streamed(path, raw, chunks, *, n_times, annotations, prefilter, sources):
    """Two passes over ``chunks()``: ranges first (to a float32 spill file), then EDF records.

    ``annotations`` is a list, or a function returning one that is called after the first pass.

    EDF needs each channel's physical range in the header, before the first record; the
    filtered data are spilled once as float32 to a temporary file beside the output (plain
    file I/O, not a memory map, so the page cache does not count against the worker's RSS).
    """
    from ._edf_stream import EdfStreamWriter

    n_ch = len(raw.ch_names)
    lo = np.full(n_ch, np.inf)
    hi = np.full(n_ch, -np.inf)
    spill = path.parent / f".{path.name}.tmp-spill-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        with open(spill, "wb") as f:
            for _, _, block in chunks():
                lo = np.minimum(lo, block.min(axis=1))
                hi = np.maximum(hi, block.max(axis=1))
                f.write(np.ascontiguousarray(block.T, dtype="<f4").tobytes())
        with atomic_path(path, overwrite=True, inputs=sources) as tmp, open(tmp, "wb") as out:
            writer = EdfStreamWriter(
                out, ch_names=raw.ch_names, ch_types=raw.get_channel_types(), sfreq=raw.info["sfreq"],
                n_times=n_times, ranges=np.c_[lo, hi],
                annotations=annotations() if callable(annotations) else annotations,
                meas_date=raw.info["meas_date"], prefilter=prefilter,
            )
            step = 1 << 16
            with open(spill, "rb") as f:
                for s in range(0, n_times, step):
                    n = min(step, n_times - s)
                    block = np.fromfile(f, dtype="<f4", count=n * n_ch).reshape(n, n_ch)
                    writer.write(block.T.astype(float))
            writer.close()
    finally:
        if spill.exists():
            spill.unlink()


