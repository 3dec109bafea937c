"""``read_bold``: 4D fMRI as data + affine + TR, and a masker to (n_volumes, n_voxels) arrays.

Follows nilearn's pattern (an image plus a masker that turns it into a 2D array and back)
without depending on nilearn.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..utils import InputFileError, record_warning


@dataclass
class RunMasker:
    """Map 4D volumes to ``(n_volumes, n_voxels)`` arrays and back.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels kept.
    """

    mask: np.ndarray

    @classmethod
    def from_mean(cls, data, threshold=0.2):
        """Keep voxels that vary over time and whose mean exceeds ``threshold`` x the mean
        of the positive voxels: background and constant voxels carry no response (the same
        idea as nilearn's EPI mask, simplified).

        Parameters
        ----------
        data : ndarray, shape (X, Y, Z, n_volumes)
        threshold : float
        """
        mean = data.mean(axis=-1)
        varies = data.std(axis=-1) > 0
        positive = mean[mean > 0]
        bright = mean > threshold * positive.mean() if positive.size else np.ones_like(varies)
        mask = varies & bright
        if not mask.any():
            mask = varies
        return cls(mask)

    @property
    def n_voxels(self):
        return int(self.mask.sum())

    def transform(self, data):
        """(X, Y, Z, n_volumes) -> (n_volumes, n_voxels) float32."""
        if data.shape[:3] != self.mask.shape:
            raise ValueError(f"volume shape {data.shape[:3]} does not match the mask shape {self.mask.shape}")
        return np.ascontiguousarray(data[self.mask].T, dtype=np.float32)

    def inverse_transform(self, X):
        """(n_volumes, n_voxels) -> (X, Y, Z, n_volumes), zeros outside the mask."""
        X = np.asarray(X)
        out = np.zeros(self.mask.shape + (X.shape[0],), dtype=X.dtype)
        out[self.mask] = X.T
        return out


@dataclass
class BoldRun:
    """One fMRI run (or a set of per-trial response maps).

    Attributes
    ----------
    data : ndarray, shape (X, Y, Z, n_volumes)
    affine : ndarray, shape (4, 4)
    tr : float
        Repetition time in seconds.
    masker : RunMasker
        Default: :meth:`RunMasker.from_mean`.
    source : str
        The file it came from.
    """

    data: np.ndarray
    affine: np.ndarray
    tr: float
    masker: RunMasker = field(default=None)
    source: str = ""

    def __post_init__(self):
        if self.masker is None:
            self.masker = RunMasker.from_mean(self.data)

    @property
    def n_volumes(self):
        return self.data.shape[-1]

    @property
    def mask(self):
        """The masker's boolean mask, shape (X, Y, Z)."""
        return self.masker.mask

    def to_array(self):
        """Masked voxels, shape (n_volumes, n_voxels)."""
        return self.masker.transform(self.data)


def read_bold(path, *, dataset=None, tr=None):
    """Read 4D BOLD from NIfTI, or an HDF5 array of fMRI responses.

    Parameters
    ----------
    path : path-like
        ``.nii``/``.nii.gz`` (4D), or ``.h5``/``.hdf5`` holding ``dataset``.
    dataset : str | None
        HDF5 dataset name. Default ``"betas"`` when present (NSD-style), else the only
        dataset. Shape (n_trials, n_voxels) (already masked: every voxel kept) or 4D
        (X, Y, Z, n_trials).
    tr : float | None
        Override the repetition time (seconds) in the header.

    Returns
    -------
    run : BoldRun
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file.")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _read_nifti(path, tr)
    if name.endswith((".h5", ".hdf5")):
        return _read_h5(path, dataset, tr)
    raise InputFileError(f"{path}: unsupported fMRI file type; expected .nii, .nii.gz, .h5 or .hdf5.")


def _read_nifti(path, tr):
    import nibabel as nib

    try:
        img = nib.load(path)
        shape = img.shape
    except Exception as err:
        raise InputFileError(f"{path}: not a readable NIfTI file ({err}).") from err
    if len(shape) != 4:
        raise InputFileError(
            f"{path}: expected a 4D BOLD image (x, y, z, time) but it has {len(shape)} dimensions {tuple(shape)}."
        )
    if tr is None:
        zooms = img.header.get_zooms()
        tr = float(zooms[3]) if len(zooms) > 3 else 0.0
        unit = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "sec"
        tr *= {"msec": 1e-3, "usec": 1e-6}.get(unit, 1.0)
        if tr <= 0:
            raise InputFileError(f"{path}: the header has no repetition time; pass tr=... (seconds).")
        if tr > 100:
            # No BOLD sequence has a TR over 100 s; such headers store milliseconds under 'sec'.
            record_warning(
                f"{path.name}: the header's repetition time {tr:g} s is implausible; read as {tr / 1000:g} s "
                "(milliseconds labelled as seconds). Pass tr=... to override."
            )
            tr /= 1000.0
    data = np.asarray(img.dataobj, dtype=np.float32)
    return BoldRun(data, img.affine, float(tr), source=str(path))


def _read_h5(path, dataset, tr):
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputFileError(f"{path}: not a readable HDF5 file ({err}).") from err
    with f:
        datasets = [k for k in f if isinstance(f[k], h5py.Dataset)]
        key = dataset or ("betas" if "betas" in f else (datasets[0] if len(datasets) == 1 else None))
        if key is None or key not in f:
            raise InputFileError(
                f"{path}: name the dataset to read (dataset=...); it holds {', '.join(datasets) or 'no datasets'}."
            )
        arr = np.asarray(f[key], dtype=np.float32)
        tr = float(tr if tr is not None else f[key].attrs.get("tr", 1.0))
    if arr.ndim == 2:  # (n_trials, n_voxels): store as a 1 x 1 x n_voxels volume per trial
        data = arr.T[None, None]
        return BoldRun(data, np.eye(4), tr, masker=RunMasker(np.ones(data.shape[:3], bool)), source=str(path))
    if arr.ndim == 4:
        return BoldRun(arr, np.eye(4), tr, source=str(path))
    raise InputFileError(f"{path}: dataset {key!r} must be 2D (trials, voxels) or 4D, got shape {arr.shape}.")
