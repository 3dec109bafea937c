"""Every reader over every real file in the data folder: metadata right, lazy == loaded."""

import warnings

import numpy as np
import pytest

from neurodecode.io import read_raw, supported_extensions
from neurodecode.io._read import _suffix, problems
from neurodecode.utils import InputFileError, data_dir

# Expected values from the data folder's MANIFEST.md (independent of our reader).
# path -> (sfreq, n_channels or None, duration in s, channel types that must be present)
EXPECTED = {
    "eegmmidb/S001/S001R01.edf": (160.0, 64, 61.0, {"eeg"}),
    "eegmmidb/S005/S005R08.edf": (160.0, 64, (123.0, 125.0), {"eeg"}),  # "about 123-125 s"
    "eeglab_sample/eeglab_data.set": (128.0, 32, 238.3, {"eeg", "eog"}),
    "eximia_eeg_eog/test_eximia.nxe": (1450.0, None, 10.8, {"eeg", "eog"}),
    "emgdb_physionet/emg_healthy.hea": (4000.0, 1, 12.7, {"emg"}),
    "emgdb_physionet/emg_myopathy.hea": (4000.0, 1, 27.6, {"emg"}),
    "emgdb_physionet/emg_neuropathy.hea": (4000.0, 1, 37.0, {"emg"}),
    "mne_testing_elekta_meg/test_elekta_3ch_raw.fif": (1000.0, 4, 80.0, {"mag", "stim"}),
    "mne_python_kit_meg/test.sqd": (1000.0, None, 2.0, {"mag"}),
    "nihon_kohden_clinical/MB0400FU.EEG": (200.0, None, 29.0, {"eeg"}),
    "nihon_kohden_clinical/MB0400FU.EDF": (200.0, None, 29.0, {"eeg"}),
    "clinical_edf_annotated/chtypes_edf.edf": (200.0, 42, 5.0, {"eeg", "ecg"}),
    "mne_python_brainvision/test.vhdr": (1000.0, None, 7.9, {"eeg"}),
    "iclabel_eeglab_sample/sample-raw.set": (128.0, 30, 10.0, {"eeg"}),
    "mne_testing_eeglab_cleaned/test_raw.cleaned.set": (128.0, 32, 238.3, {"eeg"}),
}
# Files of a supported extension that are not continuous recordings: a clear error is right.
NOT_RAW = {
    "eeglab_sample/eeglab_data_epochs_ica.set": "epochs",
    "iclabel_eeglab_sample/sample-epo.set": "epochs",
    "mne_python_kit_meg/test_mrk.sqd": "epochs",
}


def _real_files():
    root = data_dir()
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_dir() and not p.name.endswith(".ds"):
            continue
        ext = _suffix(p)
        if ext not in supported_extensions():
            continue
        if ext == ".eeg" and p.with_suffix(".vhdr").exists():
            continue  # the BrainVision data file; its header is the recording
        out.append(p.relative_to(root).as_posix())
    return out


REAL_FILES = _real_files()


def test_every_expected_file_is_in_the_sweep(shared_data):
    missing = [p for p in list(EXPECTED) + list(NOT_RAW) if p not in REAL_FILES]
    assert not missing, f"files named in MANIFEST.md not found by the sweep: {missing}"


@pytest.mark.parametrize("rel", REAL_FILES or ["<no data>"])
def test_reader_conformance(rel, shared_data):
    path = shared_data / rel
    if rel in NOT_RAW:
        with pytest.raises(InputFileError, match=NOT_RAW[rel]):
            read_raw(path)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damage warnings are checked elsewhere
        lazy = read_raw(path, preload=False)
        loaded = read_raw(path, preload=True)
    assert lazy.ch_names == loaded.ch_names
    assert lazy.get_channel_types() == loaded.get_channel_types()
    np.testing.assert_array_equal(lazy.get_data(), loaded.get_data())
    assert len(lazy.annotations) == len(loaded.annotations)
    assert lazy.n_times > 0 and len(lazy.ch_names) > 0
    assert not problems(loaded), problems(loaded)
    if rel in EXPECTED:
        sfreq, n_ch, dur, types = EXPECTED[rel]
        assert loaded.info["sfreq"] == pytest.approx(sfreq)
        if n_ch is not None:
            assert len(loaded.ch_names) == n_ch
        lo, hi = dur if isinstance(dur, tuple) else (dur, dur)
        assert lo - 0.15 <= loaded.n_times / loaded.info["sfreq"] <= hi + 0.15
        assert types <= set(loaded.get_channel_types())


def test_bci2000_names_are_normalised(data_file):
    raw = read_raw(data_file("eegmmidb", "S001", "S001R04.edf"))
    assert "FC5" in raw.ch_names and "Fc5." not in raw.ch_names
    assert raw.get_montage() is not None
    assert {"T0", "T1", "T2"} <= set(raw.annotations.description)


def test_clinical_edf_names_and_types(data_file):
    raw = read_raw(data_file("clinical_edf_annotated", "chtypes_edf.edf"))
    types = dict(zip(raw.ch_names, raw.get_channel_types()))
    assert types["Fp1"] == "eeg" and types["ECG1"] == "ecg" and types["X9"] == "misc"
    assert raw.get_montage() is not None
    assert "starts turning head" in " ".join(raw.annotations.description)


def test_eog_channels_typed_from_names(data_file):
    raw = read_raw(data_file("eeglab_sample", "eeglab_data.set"))
    types = dict(zip(raw.ch_names, raw.get_channel_types()))
    assert types["EOG1"] == "eog" and types["EOG2"] == "eog"
