"""HDF5 window store for training data: one group per recording, no pickles.

Layout::

    /<recording>/data      float32 (n_chans, n_times), chunks (n_chans, ~1 s)
    /<recording>/windows   int64 (n_windows, 2): start sample, stop sample
    /<recording>/labels    int64 or float32 (n_windows, ...)
    /<recording>.attrs     sfreq, ch_names, ch_types, source_sha256, config_hash, version
    /.attrs                complete=True once the file is finished, format version
"""

import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..utils import InputFileError, atomic_path

FORMAT_VERSION = 1


def write_windows(path, recordings, *, config=None, overwrite=False):
    """Write a complete window store atomically.

    Parameters
    ----------
    path : path-like
        Destination ``.h5`` file.
    recordings : iterable of dict
        Each with ``name``, ``data`` (n_chans, n_times), ``sfreq``, ``ch_names``,
        optional ``ch_types``, ``windows`` (n_windows, 2), ``labels``, ``source_sha256``
        and any extra ``attrs`` (JSON-serialisable).
    config : dict | None
        The recipe that produced the data; its hash is stored with every recording.
    """
    import h5py

    from ..utils._hash import config_hash

    chash = config_hash(config or {})
    with atomic_path(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["complete"] = False
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["neurodecode_version"] = __version__
            f.attrs["config"] = json.dumps(config or {}, sort_keys=True)
            f.attrs["config_hash"] = chash
            for rec in recordings:
                data = np.asarray(rec["data"], dtype=np.float32)
                if data.ndim != 2:
                    raise ValueError(f"recording {rec['name']!r}: data must be (n_chans, n_times), got {data.shape}")
                g = f.create_group(rec["name"])
                chunk_t = int(min(data.shape[1], max(1, round(rec["sfreq"]))))
                g.create_dataset("data", data=data, chunks=(data.shape[0], chunk_t))
                if rec.get("windows") is not None:
                    g.create_dataset("windows", data=np.asarray(rec["windows"], dtype=np.int64))
                if rec.get("labels") is not None:
                    g.create_dataset("labels", data=np.asarray(rec["labels"]))
                g.attrs["sfreq"] = float(rec["sfreq"])
                g.attrs["ch_names"] = json.dumps(list(rec["ch_names"]))
                g.attrs["ch_types"] = json.dumps(list(rec.get("ch_types") or ["eeg"] * data.shape[0]))
                g.attrs["source_sha256"] = rec.get("source_sha256", "")
                g.attrs["config_hash"] = chash
                g.attrs["version"] = __version__
                for k, v in (rec.get("attrs") or {}).items():
                    g.attrs[k] = json.dumps(v)
            f.attrs["complete"] = True
    return Path(path)


class WindowStore:
    """Read-only access to a window store written by :func:`write_windows`.

    Parameters
    ----------
    path : path-like
        The ``.h5`` file. A file that was not finished raises :class:`InputFileError`.
    """

    def __init__(self, path):
        import h5py

        self.path = Path(path)
        if not self.path.exists():
            raise InputFileError(f"{self.path}: no such window store.")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as err:
            raise InputFileError(f"{self.path}: not a readable HDF5 window store ({err}).") from err
        if not bool(self._f.attrs.get("complete", False)):
            self._f.close()
            raise InputFileError(f"{self.path}: the window store is incomplete (half-written); rebuild it.")
        self.config = json.loads(self._f.attrs.get("config", "{}"))
        self.config_hash = self._f.attrs.get("config_hash", "")

    @property
    def recordings(self):
        return list(self._f.keys())

    def info(self, name):
        """Return the attributes of one recording as a dict."""
        a = self._f[name].attrs
        out = {k: a[k] for k in a}
        for k in ("ch_names", "ch_types"):
            out[k] = json.loads(out[k])
        return out

    def data(self, name):
        """Return the continuous data of one recording, (n_chans, n_times) float32."""
        return self._f[name]["data"][()]

    def windows(self, name):
        """Return ``(X, y)``: windows (n_windows, n_chans, n_times) and labels (or None)."""
        g = self._f[name]
        # One read of the recording, then slicing in memory: overlapping windows would otherwise
        # decompress the same HDF5 chunks again and again.
        data = g["data"][()]
        if "windows" not in g:
            return data[None], None
        idx = g["windows"][()]
        X = np.stack([data[:, a:b] for a, b in idx]) if len(idx) else np.zeros((0, data.shape[0], 0), np.float32)
        y = g["labels"][()] if "labels" in g else None
        return X, y

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
