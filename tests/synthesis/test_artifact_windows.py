"""Labelled windows built from the real recordings."""

import json

import h5py
import numpy as np
import pytest

from neurodecode.datasets.artifact_windows import CHANNELS, LABELS, load_artifact_windows, write_artifact_windows
from neurodecode.utils import InputFileError, UsageError


def test_windows_have_all_classes_and_subject_splits(tiny_store):
    X, y, s = load_artifact_windows(tiny_store, split="train")
    assert X.shape[1:] == (len(CHANNELS), 256)
    assert set(np.unique(y)) == {0, 1, 2}
    assert set(s) == {"S001"}
    Xt, yt, st = load_artifact_windows(tiny_store, split="test")
    assert set(st) == {"S010"}
    # real blinks: frontal peak-to-peak of eye windows well above that of clean windows
    ptp = np.ptp(X[:, :2], axis=-1).max(1)
    assert np.median(ptp[y == 1]) > 2 * np.median(ptp[y == 0])
    # added EMG: 30-58 Hz power at temporal sites much higher in muscle windows
    f = np.fft.rfftfreq(256, 1 / 128)
    hf = (np.abs(np.fft.rfft(X[:, 6:8], axis=-1)) ** 2)[..., (f >= 30) & (f <= 58)].mean((1, 2))
    assert np.median(hf[y == 2]) > 5 * np.median(hf[y == 0])


def test_store_records_provenance_and_recipe(tiny_store):
    with h5py.File(tiny_store, "r") as f:
        g = f["S001_eye"]
        assert json.loads(g.attrs["split"]) == "train"
        assert len(g.attrs["source_sha256"].split(",")[0]) == 64
        cfg = json.loads(f.attrs["config"])
    assert cfg["channels"] == list(CHANNELS) and cfg["snr_db"] == [-7.0, 2.0]


def test_label_filter_and_bad_arguments(tiny_store, tmp_path, shared_data):
    _, y, _ = load_artifact_windows(tiny_store, labels=["eye"])
    assert set(y) == {LABELS.index("eye")}
    with pytest.raises(UsageError, match="'split' parameter"):
        load_artifact_windows(tiny_store, split="training")
    with pytest.raises(UsageError, match="in no split"):
        write_artifact_windows(tmp_path / "x.h5", root=shared_data, subjects=["S099"])
    with pytest.raises(InputFileError, match="no such window store"):
        load_artifact_windows(tmp_path / "missing.h5")
    with pytest.raises(UsageError, match="Refusing to overwrite"):
        write_artifact_windows(tiny_store, root=shared_data, subjects=["S010"], max_runs=1)
