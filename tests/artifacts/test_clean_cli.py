"""``neurodecode clean``: demo, outputs, reports, exit codes, no partial files."""

import mne
import numpy as np
import pytest

from neurodecode.artifacts.clean import make_demo_raw
from neurodecode.cli import main


def _run(args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code


def test_clean_file_with_filter_and_report(tmp_path):
    src = tmp_path / "in_raw.fif"
    make_demo_raw(duration_s=12.0).save(src, verbose="error")
    before = mne.io.read_raw_fif(src, verbose="error").get_data()
    out, rep = tmp_path / "out.edf", tmp_path / "rep.html"
    assert _run([ "clean", str(src), "-o", str(out), "--method", "filter", "--report", str(rep), "--quiet"]) == 0
    cleaned = mne.io.read_raw_edf(out, verbose="error")
    assert cleaned.get_data().shape == before.shape
    assert np.array_equal(mne.io.read_raw_fif(src, verbose="error").get_data(), before)  # input untouched
    html = rep.read_text()
    assert "PSD before / after" in html and "Annotations added" in html
    # never overwrites without --overwrite, never onto the input
    assert _run(["clean", str(src), "-o", str(out), "--method", "filter", "--quiet"]) == 2
    assert _run(["clean", str(src), "-o", str(src), "--method", "filter", "--overwrite", "--quiet"]) == 2


def test_usage_errors(tmp_path, capsys):
    assert _run(["clean", "--demo"]) == 2
    assert "-o/--out" in capsys.readouterr().err
    assert _run(["clean", "--demo", "-o", str(tmp_path / "a.edf"), "--method", "wavelet"]) == 2
    assert "method" in capsys.readouterr().err
    assert not (tmp_path / "a.edf").exists()


def test_nan_recording_fails_without_partial_output(tmp_path, capsys):
    raw = make_demo_raw(duration_s=10.0)
    data = raw.get_data()
    data[2, 500:600] = np.nan
    bad = tmp_path / "nan_raw.fif"
    mne.io.RawArray(data, raw.info, verbose="error").save(bad, verbose="error")
    out = tmp_path / "never.edf"
    from neurodecode.utils._errors import RecoverableDamageWarning

    # read_raw marks the NaN span BAD_NAN with a recorded warning; cleaning then refuses.
    with pytest.warns(RecoverableDamageWarning, match="NaN"):
        assert _run(["clean", str(bad), "-o", str(out), "--method", "filter", "--quiet"]) == 1
    assert "NaN" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.tmp-*"))


def test_demo_with_shipped_atat(tmp_path):
    from neurodecode.artifacts.atat import _WEIGHTS

    if not (_WEIGHTS / "atat_emg.safetensors").exists() or not (_WEIGHTS / "atat_eog.safetensors").exists():
        pytest.skip("shipped AT-AT weights not built yet")
    out = tmp_path / "demo_clean.edf"
    assert _run(["clean", "--demo", "-o", str(out), "--quiet"]) == 0
    cleaned = mne.io.read_raw_edf(out, verbose="error")
    assert cleaned.n_times == 30 * 256 and len(cleaned.ch_names) == 19
    assert "SIMULATED_BLINK" in set(cleaned.annotations.description)


def test_thorough_turns_the_atat_screens_off(tmp_path):
    import json

    from neurodecode.artifacts.atat import _WEIGHTS

    if not (_WEIGHTS / "atat_emg.safetensors").exists() or not (_WEIGHTS / "atat_eog.safetensors").exists():
        pytest.skip("shipped AT-AT weights not built yet")
    screened, dense = tmp_path / "s.json", tmp_path / "d.json"
    assert _run(["clean", "--demo", "-o", str(tmp_path / "s.edf"), "--summary", str(screened), "--quiet"]) == 0
    assert _run(["clean", "--demo", "-o", str(tmp_path / "d.edf"), "--summary", str(dense), "--quiet",
                 "--thorough"]) == 0
    s, d = json.loads(screened.read_text()), json.loads(dense.read_text())
    assert s["screen"]["eog"] is not None and d["screen"] == {"eog": None, "emg": None}
    # without the screens the EOG gate judges (and sends on) more windows
    assert d["gate_fraction"]["eog"] > s["gate_fraction"]["eog"]
