"""Shared helpers: errors, validation, atomic writes, data location, seeding."""

from ._atomic import atomic_path, check_output_path, sha256_file
from ._checks import check_option
from ._data import cache_dir, data_dir, requires_data_path
from ._hash import config_hash
from ._errors import NeurodecodeError, InputFileError, UsageError, record_warning
from ._seed import seed_everything
from ._weights import read_safetensors

__all__ = [
    "atomic_path",
    "check_output_path",
    "sha256_file",
    "check_option",
    "cache_dir",
    "data_dir",
    "requires_data_path",
    "NeurodecodeError",
    "InputFileError",
    "UsageError",
    "record_warning",
    "seed_everything",
    "read_safetensors",
    "config_hash",
]
