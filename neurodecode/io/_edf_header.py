"""Checks of an EDF/BDF header before MNE reads it, for clear errors and damage warnings."""

from pathlib import Path

from ..utils import InputFileError


def check_edf_header(path):
    """Validate an EDF/EDF+/BDF header; return warnings for recoverable damage.

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    problems : list of str
        Recoverable damage (e.g. a record count that does not match the file size).

    Raises
    ------
    InputFileError
        The header is truncated or not an EDF/BDF header.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(256)
    kind = "BDF" if path.suffix.lower() == ".bdf" else "EDF"
    if len(head) < 256:
        raise InputFileError(
            f"{path}: truncated {kind} header ({size} bytes); an {kind} file starts with a 256-byte header."
        )
    version = head[:8]
    if kind == "EDF" and version != b"0       ":
        if version == b"\xffBIOSEMI":
            kind = "BDF"
        else:
            raise InputFileError(
                f"{path}: not an EDF file (its first 8 bytes are {version!r}, expected '0' padded with spaces)."
            )
    if kind == "BDF" and version != b"\xffBIOSEMI":
        raise InputFileError(f"{path}: not a BDF file (its first 8 bytes are {version!r}, expected b'\\xffBIOSEMI').")
    try:
        header_bytes = int(head[184:192].decode("ascii").strip())
        n_records = int(head[236:244].decode("ascii").strip())
        n_signals = int(head[252:256].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as err:
        raise InputFileError(
            f"{path}: corrupted {kind} header (header length, record count or signal count is not a number)."
        ) from err
    if n_signals <= 0 or header_bytes != 256 * (n_signals + 1):
        raise InputFileError(
            f"{path}: corrupted {kind} header ({n_signals} signals but a header length of {header_bytes} bytes; "
            f"expected 256 x (signals + 1))."
        )
    if size < header_bytes:
        raise InputFileError(
            f"{path}: truncated {kind} header ({size} bytes, but the header alone should take {header_bytes})."
        )
    with open(path, "rb") as f:
        f.seek(256)
        sig = f.read(header_bytes - 256)
    off = 216 * n_signals  # samples-per-record field starts after label..prefiltering
    try:
        spr = [int(sig[off + 8 * i : off + 8 * (i + 1)].decode("ascii").strip()) for i in range(n_signals)]
    except (UnicodeDecodeError, ValueError) as err:
        raise InputFileError(f"{path}: corrupted {kind} header (samples per record is not a number).") from err
    bytes_per_record = sum(spr) * (3 if kind == "BDF" else 2)
    problems = []
    if bytes_per_record <= 0:
        raise InputFileError(f"{path}: corrupted {kind} header (records hold no samples).")
    available = (size - header_bytes) // bytes_per_record
    if n_records < 0:
        problems.append(f"{path.name}: the header does not state the number of records; {available} found in the file.")
    elif available < n_records:
        problems.append(
            f"{path.name}: truncated data: the header announces {n_records} records but the file holds only "
            f"{available} complete ones; the recording is read up to the last complete record."
        )
    elif (size - header_bytes) > n_records * bytes_per_record:
        extra = size - header_bytes - n_records * bytes_per_record
        problems.append(f"{path.name}: {extra} bytes after the last record announced by the header were ignored.")
    return problems
