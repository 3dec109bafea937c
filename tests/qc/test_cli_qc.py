"""``neurodecode qc``: summary, annotated output, HTML report, and user errors (exit codes)."""

import mne
import numpy as np
import pytest
import torch

from neurodecode.artifacts.hveegnet import BAD_DESCRIPTION, CHANNELS_1020, HVEEGNet
from neurodecode.cli import main


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny untrained model calibrated on smooth noise (fast; the shipped weights are tested elsewhere)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    m = HVEEGNet()
    x = np.cumsum(rng.normal(size=(19, 160 * 40)), axis=1)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True) * 15e-6
    w, _ = m.windows_from_array(x, 160.0)
    m.calibrate(w, groups=np.zeros(len(w)))  # one 40 s "recording"
    return m.save_pretrained(tmp_path_factory.mktemp("w") / "tiny.safetensors")


def _write_fif(path, names=CHANNELS_1020, seconds=30.0, spike_at=None):
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=(len(names), int(160 * seconds))), axis=1)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True) * 15e-6
    if spike_at is not None:
        i = int(spike_at * 160)
        x[2, i:i + 8] += 400e-6
    raw = mne.io.RawArray(x, mne.create_info(list(names), 160.0, "eeg"), verbose="error")
    raw.save(path, verbose="error")
    return path


def _run(args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code


def test_qc_writes_annotated_copy_and_report(tmp_path, weights, capsys):
    src = _write_fif(tmp_path / "rec_raw.fif", spike_at=17.3)
    out, rep = tmp_path / "out_raw.fif", tmp_path / "qc.html"
    code = _run(["qc", str(src), "-o", str(out), "--report", str(rep), "--weights", str(weights)])
    text = capsys.readouterr().out
    assert code == 0, text
    worst = next(line for line in text.splitlines() if "worst channels" in line)
    assert "flagged" in text and "F7 (1)" in worst
    ann = mne.io.read_raw_fif(out, verbose="error").annotations
    bad = [a for a in ann if a["description"] == BAD_DESCRIPTION]
    assert any(a["onset"] <= 17.3 < a["onset"] + a["duration"] for a in bad)
    html = rep.read_text()
    assert "Score over time" in html and "Window at 17.0 s" in html
    assert len(mne.io.read_raw_fif(src, verbose="error").annotations) == 0  # input untouched
    # outputs are never overwritten silently
    assert _run(["qc", str(src), "-o", str(out), "--weights", str(weights)]) == 2
    assert "Refusing to overwrite" in capsys.readouterr().err
    # and never onto the input, even with --overwrite
    src_bytes = src.read_bytes()
    assert _run(["qc", str(src), "-o", str(src), "--weights", str(weights), "--overwrite"]) == 2
    assert "input file itself" in capsys.readouterr().err
    assert src.read_bytes() == src_bytes


def test_qc_missing_channels_is_a_clear_error(tmp_path, weights, capsys):
    src = _write_fif(tmp_path / "few_raw.fif", names=["Cz", "Pz", "C3"], seconds=5)
    assert _run(["qc", str(src), "--weights", str(weights)]) == 1
    err = capsys.readouterr().err
    assert "missing: Fp1, Fp2" in err and "The file has: Cz, Pz, C3" in err


def test_qc_too_short_and_bad_report_name(tmp_path, weights, capsys):
    src = _write_fif(tmp_path / "short_raw.fif", seconds=0.5)
    assert _run(["qc", str(src), "--weights", str(weights)]) == 1
    assert "shorter than one hvEEGNet window" in capsys.readouterr().err
    assert _run(["qc", str(src), "--report", str(tmp_path / "r.txt"), "--weights", str(weights)]) == 2
    assert "expected a .html path" in capsys.readouterr().err
