"""The batch configuration: defaults, a YAML file on top, command-line options on top of that.

Every key is checked; an unknown key or a wrong type is a usage error (exit 2) naming the key,
so a typo never silently falls back to a default.
"""

import copy
from pathlib import Path

from ..utils import UsageError

#: Every key a ``batch.yaml`` may hold, with its default.
DEFAULTS = {
    "steps": ["clean", "qc"],
    "workers": 2,
    "memory_limit": "3GB",  # per worker; the nanny restarts a worker that exceeds it
    "scheduler": None,  # address of an existing scheduler, e.g. tcp://127.0.0.1:8786
    "on_error": "continue",
    "retries": 0,  # resubmissions of a file whose worker died; capped to avoid retry storms
    "include": [],  # glob patterns (relative to INPUT) restricting discovery; empty = all recordings
    "trust_file_stat": False,  # reuse an input's content hash while its size/mtime/ctime/inode are unchanged
    "clean": {"method": "bandpass", "l_freq": 1.0, "h_freq": 40.0, "chunk_s": 60.0, "artifacts": ["emg", "eog"]},
    "qc": {"method": "auto", "window_s": 1.0, "peak": 500e-6, "flat": 1e-7, "bad_percent": 5.0, "chunk_s": 60.0},
    "report": {"psd_segments": 6, "psd_segment_s": 4.0},
}

_TYPES = {
    "steps": list, "workers": int, "memory_limit": (str, int, type(None)), "scheduler": (str, type(None)),
    "on_error": str, "retries": int, "include": list, "trust_file_stat": bool,
}


def _merge(base, new, where):
    for key, value in new.items():
        if key not in base:
            raise UsageError(
                f"Unknown configuration key {where + key!r}. Allowed keys: {', '.join(sorted(base))}."
            )
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise UsageError(f"Configuration key {where + key!r} must be a mapping, got {value!r}.")
            _merge(base[key], value, f"{where}{key}.")
        else:
            base[key] = value


def load_config(path=None, overrides=None):
    """Return the full configuration dict.

    Parameters
    ----------
    path : path-like | None
        A YAML file with any subset of :data:`DEFAULTS`.
    overrides : dict | None
        Values from the command line (``None`` values are ignored).
    """
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise UsageError(f"Configuration file {path} does not exist.")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise UsageError(f"Configuration file {path} is not valid YAML ({err}).") from err
        if not isinstance(data, dict):
            raise UsageError(f"Configuration file {path} must hold a mapping of keys to values.")
        _merge(cfg, data, "")
    _merge(cfg, {k: v for k, v in (overrides or {}).items() if v is not None}, "")
    if isinstance(cfg["steps"], str):
        cfg["steps"] = [s.strip() for s in cfg["steps"].split(",") if s.strip()]
    for key, kind in _TYPES.items():
        if not isinstance(cfg[key], kind) or (kind is int and isinstance(cfg[key], bool)):
            raise UsageError(f"Configuration key {key!r} has the wrong type: got {cfg[key]!r}.")
    if cfg["on_error"] not in ("continue", "abort"):
        raise UsageError(
            f"Invalid value for 'on_error'. Allowed values are 'continue' and 'abort', but got {cfg['on_error']!r}."
        )
    if cfg["workers"] < 1:
        raise UsageError(f"'workers' must be at least 1, got {cfg['workers']}.")
    if not 0 <= cfg["retries"] <= 3:
        raise UsageError(f"'retries' must be between 0 and 3, got {cfg['retries']}.")
    from .steps import check_steps

    cfg["steps"] = check_steps(cfg["steps"], cfg)
    return cfg
