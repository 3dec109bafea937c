"""clean_raw and the chunked apply: copies, annotations, provenance, bad input, bounded memory."""

import mne
import numpy as np
import pytest
import torch

from neurodecode.artifacts import apply as A
from neurodecode.artifacts.atat import ATAT, ATATNet
from neurodecode.artifacts.clean import clean_raw, make_demo_raw
from neurodecode.utils import InputFileError, UsageError

TINY = dict(ae_widths=(4, 4), d_model=16, n_heads=2, n_layers=1, ff=32, stem=4)


def _models(tau=2.0):
    torch.manual_seed(0)
    return [ATAT(ATATNet(tau=tau, **TINY), "eog", 256.0, 0.3), ATAT(ATATNet(tau=tau, **TINY), "emg", 256.0, 1.0)]


@pytest.fixture(scope="module")
def demo():
    return make_demo_raw(duration_s=20.0)


def test_atat_clean_returns_new_annotated_raw(demo):
    before = demo.get_data().copy()
    cleaned, summary = clean_raw(demo, models=_models(), chunk_s=7.0)
    assert np.array_equal(demo.get_data(), before)  # input untouched
    assert cleaned is not demo and cleaned.get_data().shape == before.shape
    assert not np.allclose(cleaned.get_data(), before)
    assert "clean:" in cleaned.info["description"] and '"method": "atat"' in cleaned.info["description"]
    assert summary["artifacts"] == ["eog", "emg"] and summary["n_channels_cleaned"] == 19
    added = [d for d in cleaned.annotations.description if d.startswith(("EDITED_", "BAD_"))]
    assert len(added) == summary["n_annotations_added"]
    assert set(demo.annotations.description) <= set(cleaned.annotations.description)


def test_chunking_does_not_change_the_result(demo):
    a, _ = clean_raw(demo, method="filter", chunk_s=5.0)
    b, _ = clean_raw(demo, method="filter", chunk_s=100.0)
    assert np.allclose(a.get_data(), b.get_data(), atol=1e-9)
    c, _ = clean_raw(demo, models=_models(), chunk_s=6.0)
    d, _ = clean_raw(demo, models=_models(), chunk_s=100.0)
    err = np.sqrt(np.mean((c.get_data() - d.get_data()) ** 2)) / np.sqrt(np.mean(d.get_data() ** 2))
    assert err < 0.05


def test_filter_removes_high_frequencies(demo):
    out, s = clean_raw(demo, method="filter", artifacts="emg")
    from scipy.signal import welch

    f, p_in = welch(demo.get_data(), fs=256.0, nperseg=512)
    _, p_out = welch(out.get_data(), fs=256.0, nperseg=512)
    hi = f > 60
    assert p_out[:, hi].mean() < 0.01 * p_in[:, hi].mean()
    assert s["settings"]["emg"]["cutoff_hz"] == 30.0


def test_memory_mapped_output(demo, monkeypatch):
    monkeypatch.setattr(A, "MEMMAP_BYTES", 1000)
    out, _ = clean_raw(demo, method="filter", chunk_s=5.0)
    ref, _ = clean_raw(demo.copy(), method="filter", chunk_s=5.0)
    assert isinstance(out._neurodecode_buffer._mm, object) and out._neurodecode_buffer._mm is not None
    assert np.allclose(out.get_data(), ref.get_data())


def test_bad_inputs(demo):
    data = demo.get_data().copy()
    data[3, 100:110] = np.nan
    nan_raw = mne.io.RawArray(data, demo.info, verbose="error")
    with pytest.raises(InputFileError, match="NaN"):
        clean_raw(nan_raw, models=_models())
    flat = demo.get_data().copy()
    flat[5] = 0.0
    with pytest.raises(InputFileError, match="flat"):
        clean_raw(mne.io.RawArray(flat, demo.info, verbose="error"), models=_models())
    # a flat channel that is marked bad is skipped, not an error
    r = mne.io.RawArray(flat, demo.info.copy(), verbose="error")
    r.info["bads"] = [demo.ch_names[5]]
    out, s = clean_raw(r, method="filter")
    assert s["n_channels_cleaned"] == 18 and np.array_equal(out.get_data()[5], flat[5])
    short = demo.copy().crop(0, 1.0)
    with pytest.raises(InputFileError, match="one window"):
        clean_raw(short, models=_models())
    slow = demo.copy().resample(64.0, verbose="error")
    with pytest.raises(InputFileError, match="sampling rate"):
        clean_raw(slow, models=_models())
    with pytest.raises(UsageError, match="method"):
        clean_raw(demo, method="asr")
    with pytest.raises(UsageError, match="artifacts"):
        clean_raw(demo, artifacts="ecg")


def test_ica_needs_a_montage(demo):
    r = mne.io.RawArray(demo.get_data(), mne.create_info([f"X{i}" for i in range(19)], 256.0, "eeg"), verbose="error")
    with pytest.raises(InputFileError, match="electrode positions"):
        clean_raw(r, method="ica")
