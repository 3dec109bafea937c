"""Writers: round trips per format, independent EDF reader, per-channel range, atomicity."""

import numpy as np
import pytest

from neurodecode.io import read_raw, write_raw
from neurodecode.utils import UsageError


def _raw(n_ch=4, sf=256.0, seconds=8, seed=0):
    import mne

    rng = np.random.default_rng(seed)
    names = ["Fp1", "Fp2", "Cz", "O1", "O2", "Pz"][:n_ch]
    raw = mne.io.RawArray(rng.normal(0, 30e-6, (n_ch, int(sf * seconds))), mne.create_info(names, sf, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([1.0, 3.5], [0.5, 1.25], ["BAD_muscle", "stimulus"]))
    return raw


def _quant_step(data, fmt):
    bits = 24 if fmt == "bdf" else 16
    return (data.max(axis=1) - data.min(axis=1)) / (2**bits - 1)


@pytest.mark.parametrize("ext", [".edf", ".bdf", ".fif", ".vhdr"])
def test_round_trip(tmp_path, ext):
    raw = _raw()
    out = write_raw(raw, tmp_path / f"rec{ext}")
    back = read_raw(out, preload=True)
    assert back.ch_names == raw.ch_names
    assert back.info["sfreq"] == raw.info["sfreq"]
    a, b = raw.get_data(), back.get_data()
    assert a.shape == b.shape
    if ext in (".edf", ".bdf"):
        step = _quant_step(a, ext[1:])
        # EDF stores the physical range as 8 ASCII characters: allow that rounding too.
        assert (np.abs(a - b).max(axis=1) <= step * 1.01 + 1e-8).all()
    else:
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-12)
    got = [(d, round(o, 3), round(du, 3)) for o, du, d in zip(back.annotations.onset, back.annotations.duration, back.annotations.description)]
    assert ("BAD_muscle", 1.0, 0.5) in got and ("stimulus", 3.5, 1.25) in got


def test_edf_opens_in_independent_reader(tmp_path):
    pyedflib = pytest.importorskip("pyedflib")
    raw = _raw()
    out = write_raw(raw, tmp_path / "clean.edf")
    f = pyedflib.EdfReader(str(out))
    try:
        assert f.signals_in_file == 4
        assert f.getSampleFrequency(0) == 256.0
        onsets, durations, texts = f.readAnnotations()
        assert "BAD_muscle" in list(texts)
        i = list(texts).index("BAD_muscle")
        assert onsets[i] == pytest.approx(1.0) and durations[i] == pytest.approx(0.5)
        sig = f.readSignal(2) * 1e-6  # pyedflib gives the physical unit, uV
    finally:
        f.close()
    assert np.corrcoef(sig, raw.get_data()[2])[0, 1] > 0.9999


def test_off_scale_channel_does_not_flatten_the_others(tmp_path):
    raw = _raw()
    raw._data[0, 100:200] = 0.5  # 0.5 V on one channel: a disconnected electrode
    back = read_raw(write_raw(raw, tmp_path / "pop.edf"), preload=True)
    err = np.abs(back.get_data()[1:] - raw.get_data()[1:]).max()
    assert err < 0.01e-6  # other channels keep sub-0.01 uV resolution
    assert back.get_data()[0, 150] == pytest.approx(0.5, rel=1e-3)


def test_refuses_overwrite_and_own_input(tmp_path):
    raw = _raw()
    out = write_raw(raw, tmp_path / "a.edf")
    before = out.read_bytes()
    with pytest.raises(UsageError, match="Refusing to overwrite"):
        write_raw(raw, out)
    src = read_raw(out, preload=True)
    with pytest.raises(UsageError, match="input file itself"):
        write_raw(src, out, overwrite=True)
    assert out.read_bytes() == before
    write_raw(raw, out, overwrite=True)  # allowed when asked


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import mne

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mne.export, "export_raw", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_raw(_raw(), tmp_path / "x.edf")
    assert list(tmp_path.iterdir()) == []


def test_unsupported_output_extension(tmp_path):
    with pytest.raises(UsageError, match=r"unsupported output extension '\.csv'.*\.edf"):
        write_raw(_raw(), tmp_path / "x.csv")


def test_nan_spans_written_as_marked(tmp_path):
    import mne

    raw = _raw()
    raw._data[1, 512:768] = np.nan
    with pytest.raises(UsageError, match="NaN samples outside BAD_"):
        write_raw(raw, tmp_path / "n.edf")
    raw.set_annotations(raw.annotations + mne.Annotations([2.0], [1.0], ["BAD_NAN"]))
    back = read_raw(write_raw(raw, tmp_path / "n.edf"), preload=True)
    assert "BAD_NAN" in back.annotations.description
    assert np.isnan(raw.get_data()[1, 600])  # the caller's object is untouched


def test_real_recording_edf_round_trip(tmp_path, data_file):
    raw = read_raw(data_file("eegmmidb", "S001", "S001R04.edf"), preload=True)
    back = read_raw(write_raw(raw, tmp_path / "r.edf"), preload=True)
    step = _quant_step(raw.get_data(), "edf")
    assert (np.abs(back.get_data() - raw.get_data()).max(axis=1) <= step * 1.01 + 1e-8).all()
    assert list(back.annotations.description) == list(raw.annotations.description)


def test_long_recordings_are_written_in_chunks(tmp_path, monkeypatch):
    """Above STREAM_ABOVE_BYTES, EDF goes through the chunked writer: same data and annotations."""
    from neurodecode.io import _write

    monkeypatch.setattr(_write, "STREAM_ABOVE_BYTES", 0)
    calls = []
    real = _write._write_edf_chunked
    monkeypatch.setattr(_write, "_write_edf_chunked", lambda *a, **k: calls.append(1) or real(*a, **k))
    raw = _raw(seconds=20)
    out = write_raw(raw, tmp_path / "long.edf")
    assert calls == [1]
    back = read_raw(out, preload=True)
    step = _quant_step(raw.get_data(), "edf")
    assert (np.abs(back.get_data() - raw.get_data()).max(axis=1) <= step * 1.01 + 1e-8).all()
    assert ("BAD_muscle", 1.0, 0.5) in [(d, round(o, 3), round(du, 3)) for o, du, d in
                                        zip(back.annotations.onset, back.annotations.duration, back.annotations.description)]
    with pytest.raises(UsageError, match="Refusing to overwrite"):
        write_raw(raw, out)


def test_in_memory_copy_is_protected_through_inputs(tmp_path):
    import mne

    src = write_raw(_raw(), tmp_path / "in.edf")
    raw = read_raw(src, preload=True)
    copy = mne.io.RawArray(raw.get_data(), raw.info, verbose="error")  # like a cleaned copy: no filenames
    before = src.read_bytes()
    with pytest.raises(UsageError, match="input file itself"):
        write_raw(copy, src, overwrite=True, inputs=[src])
    assert src.read_bytes() == before
