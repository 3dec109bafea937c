"""Reading our safetensors files: tensors and metadata in one pass, one clear error."""

from pathlib import Path

from ._errors import InputFileError


def read_safetensors(path, *, what="weights", framework="pt"):
    """Return ``(tensors, metadata)`` of a safetensors file.

    Parameters
    ----------
    path : path-like
    what : str
        What the file should be, for the error message (e.g. ``"AT-AT weights"``).
    framework : {"pt", "numpy"}
        Type of the returned tensors.

    Returns
    -------
    tensors : dict of str -> Tensor or ndarray
    metadata : dict of str -> str
        Empty when the file has none.

    Raises
    ------
    InputFileError
        The file is missing or not a readable safetensors file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file; expected {what} (.safetensors).")
    try:
        with safe_open(str(path), framework=framework) as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise InputFileError(f"{path}: not a readable safetensors file with {what} ({err}).") from err
    return tensors, meta
