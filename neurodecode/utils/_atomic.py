"""Atomic file output: write to a temporary file beside the target, fsync, then rename."""

import contextlib
import hashlib
import os
from pathlib import Path

from ._errors import UsageError


def sha256_file(path, chunk_size=1 << 20):
    """Return the hex SHA-256 of the file at ``path``, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def check_output_path(path, *, overwrite=False, inputs=()):
    """Raise :class:`UsageError` unless ``path`` may be written; return it as a Path.

    Refused: an existing file without ``overwrite``, any of ``inputs`` (even with
    ``overwrite``), and a path whose folder does not exist.
    """
    path = Path(path)
    for src in inputs:
        if src is not None and Path(src).exists() and path.exists() and os.path.samefile(src, path):
            raise UsageError(
                f"Refusing to write {path}: it is the input file itself. Choose another output path."
            )
    if path.exists() and not overwrite:
        raise UsageError(f"Refusing to overwrite {path}: the file exists. Pass overwrite=True (--overwrite).")
    if not path.parent.is_dir():
        raise UsageError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    return path


@contextlib.contextmanager
def atomic_path(path, *, overwrite=False, inputs=()):
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` on success.

    The temporary file keeps the target's suffix so that writers that dispatch on the
    extension (MNE's exporters) still work. On any exception the temporary file is removed
    and the target is left as it was.

    Parameters
    ----------
    path : path-like
        Final destination.
    overwrite : bool
        Replace an existing file at ``path``. Without it an existing file is an error.
    inputs : iterable of path-like
        Files this output was made from; writing onto one of them is refused even with
        ``overwrite=True``, so a user's recording can never be replaced by its own output.
    """
    path = check_output_path(path, overwrite=overwrite, inputs=inputs)
    suffix = "".join(path.suffixes) or ""
    tmp = path.parent / f".{path.name.removesuffix(suffix)}.tmp-{os.getpid()}-{os.urandom(4).hex()}{suffix}"
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()
