"""Readers and writers for M/EEG and fMRI recordings, and the HDF5 window store."""

from ._read import problems, read_raw, supported_extensions
from ._bold import RunMasker, BoldRun, read_bold
from ._write import write_raw
from .store import WindowStore, write_windows

__all__ = [
    "read_raw",
    "supported_extensions",
    "problems",
    "read_bold",
    "BoldRun",
    "RunMasker",
    "write_raw",
    "WindowStore",
    "write_windows",
]
