"""``read_bold``: 4D fMRI as a nibabel image plus a masker to (n_volumes, n_voxels) arrays."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..utils import InputFileError


@dataclass
class BoldRun:
    """One fMRI run.

    Attributes
    ----------
    data : ndarray, shape (X, Y, Z, n_volumes)
    affine : ndarray, shape (4, 4)
    tr : float
        Repetition time in seconds.
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels kept by :meth:`to_array`.
    """

    data: np.ndarray
    affine: np.ndarray
    tr: float
    mask: np.ndarray = field(default=None)
    source: str = ""

    def __post_init__(self):
        if self.mask is None:
            # A voxel whose signal never changes carries no response; a mean above a
            # fraction of the global mean separates brain from background as nilearn's
            # epi mask does in spirit.
            mean = self.data.mean(axis=-1)
            self.mask = (self.data.std(axis=-1) > 0) & (mean > 0.2 * mean[mean > 0].mean() if (mean > 0).any() else True)

    @property
    def n_volumes(self):
        return self.data.shape[-1]

    def to_array(self):
        """Return masked voxels as an array of shape (n_volumes, n_voxels)."""
        return self.data[self.mask].T.astype(np.float32)


def read_bold(path, *, dataset=None, tr=None):
    """Read 4D BOLD from NIfTI, or an HDF5 array of fMRI responses.

    Parameters
    ----------
    path : path-like
        ``.nii``/``.nii.gz`` (4D) or ``.h5``/``.hdf5`` holding ``dataset``.
    dataset : str | None
        HDF5 dataset name (NSD-style ``betas``), shape (n_trials, n_voxels) or 4D.
    tr : float | None
        Override the repetition time in the header.

    Returns
    -------
    run : BoldRun
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file.")
    name = path.name.lower()
    if name.endswith((".h5", ".hdf5")):
        import h5py

        with h5py.File(path, "r") as f:
            key = dataset or ("betas" if "betas" in f else next(iter(f)))
            arr = np.asarray(f[key], dtype=np.float32)
            tr_attr = f[key].attrs.get("tr", tr or 1.0)
        if arr.ndim == 2:  # (n_trials, n_voxels): a 1 x 1 x n_voxels volume per trial
            data = arr.T[None, None]
            return BoldRun(data, np.eye(4), float(tr or tr_attr), mask=np.ones(data.shape[:3], bool), source=str(path))
        arr4 = arr
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        try:
            img = nib.load(path)
        except Exception as err:
            raise InputFileError(f"{path}: not a readable NIfTI file ({err}).") from err
        if img.ndim != 4:
            raise InputFileError(f"{path}: expected a 4D BOLD image (x, y, z, time) but it has {img.ndim} dimensions.")
        arr4 = np.asarray(img.dataobj, dtype=np.float32)
        zooms = img.header.get_zooms()
        tr_attr = float(zooms[3]) if len(zooms) > 3 else 1.0
        return BoldRun(arr4, img.affine, float(tr or tr_attr), source=str(path))
    else:
        raise InputFileError(f"{path}: unsupported fMRI file type; expected .nii, .nii.gz, .h5 or .hdf5.")
    if arr4.ndim != 4:
        raise InputFileError(f"{path}: dataset must be 2D (trials, voxels) or 4D, got shape {arr4.shape}.")
    return BoldRun(arr4, np.eye(4), float(tr or tr_attr), source=str(path))
