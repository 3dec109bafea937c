"""``write_raw``: EDF+/BDF/FIF/BrainVision output, atomic, never overwriting an input."""

from pathlib import Path

from ..utils import UsageError, atomic_path

_FORMATS = {".edf": "EDF", ".bdf": "BDF", ".fif": "FIF", ".fif.gz": "FIF", ".vhdr": "BrainVision"}


def write_raw(raw, path, *, overwrite=False):
    """Write ``raw`` to ``path`` in the format its extension names.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording; ``BAD_*`` and other annotations are written too.
    path : path-like
        ``.edf`` (EDF+, the clinicians' default), ``.bdf``, ``.fif`` or ``.vhdr``.
    overwrite : bool
        Replace an existing file. Writing onto the recording's own source file is refused.

    Returns
    -------
    path : Path
    """
    path = Path(path)
    ext = next((e for e in sorted(_FORMATS, key=len, reverse=True) if path.name.lower().endswith(e)), path.suffix.lower())
    if ext not in _FORMATS:
        raise UsageError(
            f"Cannot write {path}: unsupported output extension {ext!r}. "
            f"Allowed: {', '.join(sorted(_FORMATS))}."
        )
    sources = [Path(f) for f in (raw.filenames or []) if f is not None]
    with atomic_path(path, overwrite=overwrite, inputs=sources) as tmp:
        if _FORMATS[ext] == "FIF":
            raw.save(tmp, overwrite=True, verbose="error")
        else:
            import mne

            mne.export.export_raw(tmp, raw, fmt=_FORMATS[ext].lower() if ext != ".vhdr" else "brainvision", overwrite=True, verbose="error")
    return path
