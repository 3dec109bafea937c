"""Chunked filtering and the streaming EDF+ writer: same numbers as the in-memory path."""

import io

import mne
import numpy as np
import pytest

from neurodecode.io._edf_stream import EdfStreamWriter, physical_range, record_duration
from neurodecode.batch.streaming import (amplitude_annotations, amplitude_qc_chunks, design_fir, filtered_chunks,
                                         merge_spans)
from neurodecode.utils import UsageError


def _array_raw(data, sfreq, types="eeg"):
    info = mne.create_info([f"C{i}" for i in range(len(data))], sfreq, types)
    return mne.io.RawArray(data, info, verbose="error")


@pytest.mark.parametrize("chunk_s", [1.3, 5.0, 1000.0])  # shorter than, longer than the FIR halo; one chunk
def test_chunked_filter_equals_mne_filter_data(data_file, chunk_s):
    from neurodecode.io import read_raw

    raw = read_raw(data_file("eegmmidb", "S001", "S001R04.edf")).crop(0, 20)
    sf = raw.info["sfreq"]
    h = design_fir(sf, 1.0, 40.0)
    picks = np.arange(len(raw.ch_names))
    parts = list(filtered_chunks(raw, h=h, picks=picks, chunk_samples=int(chunk_s * sf)))
    got = np.concatenate([p[2] for p in parts], axis=1)
    ref = mne.filter.filter_data(raw.get_data(), sf, 1.0, 40.0, method="fir", phase="zero",
                                 fir_design="firwin", verbose="error")
    assert len(parts) == -(-raw.n_times // int(chunk_s * sf))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_unpicked_channels_pass_through_and_nan_is_reported():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 2000)) * 1e-5
    data[1, 500:520] = np.nan
    raw = _array_raw(data, 100.0, ["eeg", "eeg", "stim"])
    spans = []
    out = np.concatenate([c for _, _, c in filtered_chunks(
        raw, h=design_fir(100.0, 1.0, 30.0), picks=np.array([0, 1]), chunk_samples=300, nan_spans=spans)], axis=1)
    np.testing.assert_array_equal(out[2], data[2])
    assert merge_spans(spans) == [(500, 520)]
    assert np.isfinite(out).all()


def _write(data, sfreq, annotations=(), types=None):
    buf = io.BytesIO()
    types = types or ["eeg"] * len(data)
    w = EdfStreamWriter(buf, ch_names=[f"C{i}" for i in range(len(data))], ch_types=types, sfreq=sfreq,
                        n_times=data.shape[1], ranges=np.c_[data.min(1), data.max(1)], annotations=annotations)
    for s in range(0, data.shape[1], 777):
        w.write(data[:, s:s + 777])
    w.close()
    return buf.getvalue()


def test_edf_writer_round_trip_and_determinism(tmp_path):
    rng = np.random.default_rng(1)
    sf = 128.0
    data = rng.standard_normal((4, int(sf * 10.5))) * 50e-6  # 10.5 s: last record is padded
    data[3] = 2e-6  # constant channel
    ann = [(1.25, 0.5, "BAD_peak"), (7.0, 0.0, "T1")]
    b1 = _write(data, sf, ann)
    assert b1 == _write(data, sf, ann), "the writer must be deterministic"
    path = tmp_path / "x.edf"
    path.write_bytes(b1)
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert raw.n_times == int(sf * 11)
    got = raw.get_data()[:, : data.shape[1]]
    lsb = (data.max(1) - data.min(1)) / 65535
    assert np.all(np.abs(got[:3] - data[:3]).max(1) <= 0.51 * lsb[:3] + 1e-12)
    np.testing.assert_allclose(got[3], 2e-6, atol=1e-9)
    desc = list(raw.annotations.description)
    assert desc == ["BAD_peak", "T1", "BAD_ACQ_SKIP"]
    np.testing.assert_allclose(raw.annotations.onset, [1.25, 7.0, 10.5])
    np.testing.assert_allclose(raw.annotations.duration, [0.5, 0.0, 0.5])
    import edfio

    assert edfio.read_edf(path).num_signals == 4


def test_edf_writer_refuses_what_edf_cannot_hold():
    with pytest.raises(UsageError, match="longer than the 16 characters"):
        EdfStreamWriter(io.BytesIO(), ch_names=["A" * 17], ch_types=["eeg"], sfreq=100.0, n_times=10,
                        ranges=[[0, 1]])
    with pytest.raises(UsageError, match="whole number of samples"):
        record_duration(511.9123, 8)
    (smin, vmin), (smax, vmax) = physical_range(-123.456789, 98765.4321)
    assert len(smin) <= 8 and len(smax) <= 8 and vmin <= -123.456789 and vmax >= 98765.4321


def test_amplitude_qc_finds_peaks_and_flat_windows_and_bad_channels():
    sf = 100.0
    rng = np.random.default_rng(2)
    data = rng.standard_normal((3, 1000)) * 10e-6
    data[0, 250:260] += 500e-6  # window 2 has a peak on channel 0
    data[1, 700:800] = 0.0  # window 7 is flat on channel 1
    data[2, ::50] += 400e-6  # channel 2 is broken: a peak in every window
    raw = _array_raw(data, sf)
    masks = amplitude_qc_chunks(raw, picks=np.array([0, 1, 2]), chunk_samples=333, window_samples=100,
                                peak=150e-6, flat=1e-7)
    assert masks["BAD_peak"].shape == (3, 10)
    assert masks["BAD_peak"].sum(axis=1).tolist() == [1, 0, 10] and masks["BAD_flat"].sum(axis=1).tolist() == [0, 1, 0]
    spans, bads, frac = amplitude_annotations(masks, 100, bad_percent=50.0)
    # The broken channel is reported as bad, not allowed to mark every window.
    assert bads["BAD_peak"].tolist() == [2] and bads["BAD_flat"].tolist() == []
    assert spans["BAD_peak"] == [(200, 300)] and spans["BAD_flat"] == [(700, 800)]
    np.testing.assert_allclose(frac["BAD_peak"], [0.1, 0.0, 1.0])
