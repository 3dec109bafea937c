"""Motor-imagery builder: windows, recipe-keyed cache, and bad input named and survived."""

import os

import numpy as np
import pytest

from neurodecode.datasets.motor_imagery import build_motor_imagery, default_recipe, load_motor_imagery
from neurodecode.utils import InputFileError, UsageError


def test_windows_labels_and_order(mi_folder, tmp_path):
    d = load_motor_imagery(mi_folder, cache_dir=tmp_path)
    assert d.X.shape == (72, 21, 192) and d.X.dtype == np.float32
    assert d.subjects == ["S001", "S002", "S003"] and d.classes == ["left_fist", "right_fist"]
    assert d.y[:8].tolist() == [0, 1] * 4  # chronological within a run
    assert d.run[:24].tolist() == [4] * 8 + [8] * 8 + [12] * 8
    assert d.ch_names[:3] == ["FC5", "FC3", "FC1"] and d.sfreq == 64.0
    # microvolts, band-limited: the 12 Hz rhythm survives the 8-30 Hz filter
    assert 1 < d.X.std() < 100
    assert d.signal_kwargs() == {"n_chans": 21, "n_times": 192, "sfreq": 64.0, "n_outputs": 2}


def test_store_is_reused_and_keyed_by_recipe(mi_folder, tmp_path):
    p1 = build_motor_imagery(mi_folder, cache_dir=tmp_path)
    stamp = os.stat(p1).st_mtime_ns
    assert build_motor_imagery(mi_folder, cache_dir=tmp_path) == p1
    assert os.stat(p1).st_mtime_ns == stamp
    p2 = build_motor_imagery(mi_folder, cache_dir=tmp_path, h_freq=26.0)
    assert p2 != p1 and p1.exists()


def test_missing_run_and_other_channel_set_are_named(tmp_path, write_mi_run):
    write_run, MOTOR = write_mi_run, write_mi_run.motor
    root = tmp_path / "data"
    for r in (4, 8):
        write_run(root / "S001" / f"S001R{r:02d}.edf", seed=r)
    for r in (4, 8, 12):
        write_run(root / "S002" / f"S002R{r:02d}.edf", seed=r, ch_names=MOTOR[:-1] + ["Fp1."])
        write_run(root / "S003" / f"S003R{r:02d}.edf", seed=r, sfreq=128.0)
    problems = []
    with pytest.warns(UserWarning) as rec:
        d = load_motor_imagery(root, cache_dir=tmp_path, problems=problems)
    msgs = " ".join(str(w.message) for w in rec)
    assert "S001R12.edf" in msgs and "S002R04.edf" in msgs and "CP6" in msgs
    # S001 keeps its two runs, S002 is skipped, S003 (128 Hz) is resampled like the others
    assert d.subjects == ["S001", "S003"] and d.X.shape == (40, 21, 192)
    assert len(problems) == 4


def test_bad_folder_subject_and_recipe(tmp_path, mi_folder):
    with pytest.raises(InputFileError, match="no such data folder"):
        build_motor_imagery(tmp_path / "nope", cache_dir=tmp_path)
    with pytest.raises(InputFileError, match=r"\['S009'\] not found"):
        build_motor_imagery(mi_folder, subjects=["S009"], cache_dir=tmp_path)
    with pytest.raises(UsageError, match="'task'.*but got 'tongue'"):
        default_recipe(task="tongue")
    with pytest.raises(UsageError, match="h_freq"):
        default_recipe(h_freq=40.0)
    with pytest.raises(UsageError, match="Unknown recipe key"):
        default_recipe(notch=50)


def test_real_eegmmidb_subject(data_file, tmp_path):
    root = data_file("eegmmidb", "S001").parent
    d = load_motor_imagery(root, subjects=["S001"], cache_dir=tmp_path)
    assert d.X.shape == (45, 21, 192)
    assert np.bincount(d.y).tolist() == [23, 22]
    assert np.isfinite(d.X).all() and 1 < d.X.std() < 100
