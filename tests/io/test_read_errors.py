"""Malformed inputs built in tmp_path by byte edits: one clear error or a recorded warning."""

import numpy as np
import pytest

from neurodecode.io import read_bold, read_raw, write_raw
from neurodecode.io._read import problems
from neurodecode.utils import InputFileError
from neurodecode.utils._errors import RecoverableDamageWarning


@pytest.fixture
def edf_bytes(tmp_path):
    """A valid EDF+ written by us (no real data needed), returned as bytes."""
    import mne

    rng = np.random.default_rng(0)
    info = mne.create_info(["Fp1", "Fp2", "Cz", "EOG"], 128.0, "eeg")
    raw = mne.io.RawArray(rng.normal(0, 20e-6, (4, 128 * 10)), info, verbose="error")
    p = write_raw(raw, tmp_path / "good.edf")
    return p.read_bytes()


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_missing_path(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_raw(tmp_path / "nothing.edf")


def test_unsupported_extension_lists_supported(tmp_path):
    p = _write(tmp_path, "notes.txt", b"hello")
    with pytest.raises(InputFileError, match=r"unsupported file type '\.txt'.*\.edf.*\.vhdr"):
        read_raw(p)


def test_empty_file(tmp_path):
    p = _write(tmp_path, "empty.edf", b"")
    with pytest.raises(InputFileError, match="empty"):
        read_raw(p)


def test_truncated_header(tmp_path, edf_bytes):
    p = _write(tmp_path, "trunc.edf", edf_bytes[:100])
    with pytest.raises(InputFileError, match="truncated EDF header"):
        read_raw(p)


def test_corrupted_header_signal_count(tmp_path, edf_bytes):
    p = _write(tmp_path, "corrupt.edf", edf_bytes[:252] + b"xx!!" + edf_bytes[256:])
    with pytest.raises(InputFileError, match="corrupted EDF header"):
        read_raw(p)


def test_non_eeg_file_renamed_edf(tmp_path):
    p = _write(tmp_path, "photo.edf", b"\x89PNG\r\n\x1a\n" + bytes(600))
    with pytest.raises(InputFileError, match="not an EDF file"):
        read_raw(p)


def test_bdf_extension_with_edf_content(tmp_path, edf_bytes):
    p = _write(tmp_path, "wrong.bdf", edf_bytes)
    with pytest.raises(InputFileError, match="not a BDF file"):
        read_raw(p)


def test_truncated_data_is_a_recorded_warning(tmp_path, edf_bytes):
    p = _write(tmp_path, "short.edf", edf_bytes[: len(edf_bytes) * 2 // 3])
    with pytest.warns(RecoverableDamageWarning, match="truncated data"):
        raw = read_raw(p, preload=True)
    assert any("truncated data" in m for m in problems(raw))
    assert 0 < raw.n_times < 128 * 10


def test_eeglab_without_fdt(tmp_path, data_file):
    src = data_file("eeglab_sample", "eeglab_data.set")
    p = _write(tmp_path, "eeglab_data.set", src.read_bytes())
    with pytest.raises(InputFileError, match=r"eeglab_data\.fdt.*missing"):
        read_raw(p)


def test_nan_samples_become_bad_nan(tmp_path):
    import mne

    data = np.random.default_rng(1).normal(0, 1e-5, (3, 1000))
    data[1, 200:300] = np.nan
    raw = mne.io.RawArray(data, mne.create_info(3, 100.0, "eeg"), verbose="error")
    p = tmp_path / "nan_raw.fif"
    raw.save(p, verbose="error")
    with pytest.warns(RecoverableDamageWarning, match="NaN"):
        back = read_raw(p, preload=False)
    bad = [a for a in back.annotations if a["description"] == "BAD_NAN"]
    assert len(bad) == 1
    assert bad[0]["onset"] == pytest.approx(2.0) and bad[0]["duration"] == pytest.approx(1.0)
    assert np.isnan(back.get_data()[1, 250])  # marked, not zeroed


def test_nifti_not_4d(tmp_path):
    import nibabel as nib

    p = tmp_path / "anat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.eye(4)), p)
    with pytest.raises(InputFileError, match="expected a 4D"):
        read_bold(p)
