"""``neurodecode info``: correct facts on real files; one sentence and an exit code for bad ones."""

import json
import subprocess
import sys

import numpy as np
import pytest

from neurodecode.cli import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_info_json_on_real_edf(data_file, capsys):
    code, out, err = _run(["info", "--json", str(data_file("eegmmidb", "S001", "S001R04.edf"))], capsys)
    assert code == 0, err
    s = json.loads(out)
    assert s["sfreq"] == 160.0 and s["n_channels"] == 64
    assert s["duration_s"] == pytest.approx(125.0)
    assert s["channel_type_counts"] == {"eeg": 64}
    assert {a["description"] for a in s["annotations"]} == {"T0", "T1", "T2"}
    assert s["problems"] == []


def test_info_text_lists_types_and_annotations(data_file, capsys):
    code, out, _ = _run(["info", str(data_file("eeglab_sample", "eeglab_data.set"))], capsys)
    assert code == 0
    assert "128 Hz" in out and "30 eeg" in out and "2 eog" in out and "problems      : none" in out


def test_info_on_fmri(data_file, capsys):
    code, out, _ = _run(["info", "--json", str(data_file("fmri_nitime", "fmri1.nii.gz"))], capsys)
    assert code == 0
    s = json.loads(out)
    assert s["n_volumes"] == 40 and s["tr_s"] == pytest.approx(1.35)


def test_info_reports_recoverable_damage(tmp_path, capsys):
    import mne

    from neurodecode.io import write_raw

    raw = mne.io.RawArray(np.zeros((2, 1280)), mne.create_info(["Cz", "Pz"], 128.0, "eeg"), verbose="error")
    good = write_raw(raw, tmp_path / "g.edf").read_bytes()
    bad = tmp_path / "cut.edf"
    bad.write_bytes(good[: len(good) - 600])
    code, out, _ = _run(["info", "--json", str(bad)], capsys)
    assert code == 0
    assert any("truncated data" in p for p in json.loads(out)["problems"])


@pytest.mark.parametrize(
    "name, content, code, pattern",
    [
        ("missing.edf", None, 1, "no such file"),
        ("notes.txt", b"abc", 1, "unsupported file type"),
        ("empty.edf", b"", 1, "empty"),
        ("short.edf", b"0       " + b"x" * 40, 1, "truncated EDF header"),
        ("photo.edf", b"\x89PNG" + bytes(400), 1, "not an EDF file"),
    ],
)
def test_bad_inputs_one_sentence(tmp_path, capsys, name, content, code, pattern):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    rc, out, err = _run(["info", str(p)], capsys)
    assert rc == code
    assert pattern in err and str(p) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_usage_error_exit_code_2(capsys):
    rc, _, err = _run(["info", "--no-such-option", "x.edf"], capsys)
    assert rc == 2 and "No such option" in err


def test_several_files_some_bad_exit_1(tmp_path, data_file, capsys):
    bad = tmp_path / "b.edf"
    bad.write_bytes(b"")
    rc, out, err = _run(["info", "--json", str(data_file("eegmmidb", "S001", "S001R01.edf")), str(bad)], capsys)
    assert rc == 1
    assert len(json.loads(out)) == 1 and "empty" in err


def test_no_traceback_from_the_installed_command(tmp_path):
    p = tmp_path / "x.set"
    p.write_bytes(b"MATLAB 5.0 MAT-file garbage")
    r = subprocess.run([sys.executable, "-m", "neurodecode", "info", str(p)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and str(p) in r.stderr
