"""HDF5 window store: layout, attributes, atomic completion, no pickles."""

import h5py
import numpy as np
import pytest

from neurodecode.io import WindowStore, write_windows
from neurodecode.utils import InputFileError, UsageError


def _rec(name="sub-01", n_ch=3, n_t=1024):
    rng = np.random.default_rng(0)
    return {
        "name": name,
        "data": rng.normal(size=(n_ch, n_t)),
        "sfreq": 256.0,
        "ch_names": ["C3", "Cz", "C4"][:n_ch],
        "windows": [[0, 256], [256, 512], [512, 768]],
        "labels": [0, 1, 0],
        "source_sha256": "ab" * 32,
    }


def test_layout_and_round_trip(tmp_path):
    p = write_windows(tmp_path / "w.h5", [_rec(), _rec("sub-02")], config={"band": [1, 40]})
    with h5py.File(p, "r") as f:
        d = f["sub-01/data"]
        assert d.dtype == np.float32 and d.shape == (3, 1024)
        assert d.chunks == (3, 256)  # about one second, all channels
        for key in ("sfreq", "ch_names", "ch_types", "source_sha256", "config_hash", "version"):
            assert key in f["sub-01"].attrs
        # No object (pickled) datasets anywhere.
        f.visititems(lambda n, o: isinstance(o, h5py.Dataset) and o.dtype.kind == "O" and pytest.fail(n))
    with WindowStore(p) as s:
        assert s.recordings == ["sub-01", "sub-02"]
        X, y = s.windows("sub-01")
        assert X.shape == (3, 3, 256) and list(y) == [0, 1, 0]
        np.testing.assert_allclose(X[1], _rec()["data"][:, 256:512].astype(np.float32))
        assert s.info("sub-01")["ch_names"] == ["C3", "Cz", "C4"]
        assert s.config == {"band": [1, 40]}


def test_half_written_store_is_refused(tmp_path):
    p = tmp_path / "half.h5"
    with h5py.File(p, "w") as f:
        f.attrs["complete"] = False
        f.create_dataset("sub-01/data", data=np.zeros((2, 10), np.float32))
    with pytest.raises(InputFileError, match="incomplete"):
        WindowStore(p)


def test_failure_mid_write_leaves_no_file(tmp_path):
    bad = _rec()
    bad["data"] = np.zeros(5)  # 1-D: rejected after the first recording was written
    with pytest.raises(ValueError, match="must be"):
        write_windows(tmp_path / "w.h5", [_rec(), bad])
    assert list(tmp_path.iterdir()) == []


def test_refuses_overwrite(tmp_path):
    p = write_windows(tmp_path / "w.h5", [_rec()])
    with pytest.raises(UsageError, match="Refusing to overwrite"):
        write_windows(p, [_rec()])


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.h5"
    p.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputFileError, match="not a readable HDF5"):
        WindowStore(p)
