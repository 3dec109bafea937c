"""run_batch on real and broken recordings: per-file status, continue-on-error, caching, safety."""

import csv
import json
import os
import shutil
from pathlib import Path

import mne
import numpy as np
import pytest

from neurodecode.batch import run_batch
from neurodecode.batch.cache import input_hash, read_manifest
from neurodecode.batch.config import load_config
from neurodecode.batch.discover import discover
from neurodecode.batch.runner import process_recording
from neurodecode.utils import UsageError

from .conftest import tree_hashes

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")  # dask's sockets at cluster shutdown

STATUS = ("batch_status.csv", "batch_status.json", ".neurodecode-batch.lock")

# Amplitude QC keeps these expectations independent of which model weights are shipped.
AMPLITUDE = {"method": "amplitude"}


@pytest.fixture(scope="module")
def client2():
    """One loopback LocalCluster (2 workers) for the whole module; starting one costs seconds."""
    from neurodecode.batch.runner import _client

    os.environ["NEURODECODE_BATCH_FAULT"] = "crash:crashme.edf"  # inherited by the spawned workers
    try:
        with _client(load_config(None, {"workers": 2})) as client:
            yield client
    finally:
        del os.environ["NEURODECODE_BATCH_FAULT"]


@pytest.fixture(scope="module")
def mixed(real_folder, tmp_path_factory, client2):
    """Real recordings, malformed files and one file that kills its worker, run once on 2 workers."""
    root = tmp_path_factory.mktemp("mixed_in")
    shutil.copytree(real_folder, root, dirs_exist_ok=True)
    data = (root / "S001" / "S001R04.edf").read_bytes()
    bad = root / "broken"
    bad.mkdir()
    (bad / "trunc_header.edf").write_bytes(data[:100])
    (bad / "garbage.edf").write_bytes(np.random.default_rng(0).bytes(4096))
    (bad / "empty.fif").write_bytes(b"")
    shutil.copyfile(root / "lab" / "eeglab_data.set", bad / "nofdt.set")
    (bad / "cutrecords.edf").write_bytes(data[: int(len(data) * 0.4)])  # recoverable: whole records kept
    (root / "crash").mkdir()
    shutil.copyfile(root / "S001" / "S001R04.edf", root / "crash" / "crashme.edf")
    before = tree_hashes(root)
    deriv = tmp_path_factory.mktemp("mixed_out") / "deriv"
    result = run_batch(root, deriv, steps="clean,qc", client=client2, qc=AMPLITUDE)
    return root, deriv, result, before


def _status(result, file, step="clean"):
    return next(r for r in result.rows if r["file"] == file and r["step"] == step)


def test_continue_on_error_marks_each_file(mixed):
    root, deriv, result, _ = mixed
    assert result.exit_code == 1
    for f in ("S001/S001R04.edf", "lab/eeglab_data.set", "broken/cutrecords.edf"):
        assert [_status(result, f, s)["status"] for s in ("clean", "qc", "report")] == ["done"] * 3, f
    for f in ("broken/trunc_header.edf", "broken/garbage.edf", "broken/empty.fif", "broken/nofdt.set"):
        row = _status(result, f)
        assert row["status"] == "failed" and row["error_class"] == "InputFileError"
        assert Path(f).name in row["error_message"]
        assert [_status(result, f, s)["status"] for s in ("qc", "report")] == ["skipped", "skipped"]
    assert "empty" in _status(result, "broken/empty.fif")["error_message"]
    crash = _status(result, "crash/crashme.edf")
    assert crash["status"] == "failed" and crash["error_class"] == "KilledWorker", crash
    assert "died" in crash["error_message"]
    assert sorted(result.summary["files_failed"]) == sorted(
        ["broken/trunc_header.edf", "broken/garbage.edf", "broken/empty.fif", "broken/nofdt.set", "crash/crashme.edf"])


def test_reader_warnings_are_recorded_per_file(mixed):
    _, _, result, _ = mixed
    row = _status(result, "broken/cutrecords.edf")
    assert row["n_warnings"] >= 1
    assert any("cutrecords.edf" in w and "record" in w.lower() for w in row["warnings"]), row["warnings"]
    assert _status(result, "S001/S001R04.edf")["n_warnings"] == 0


def test_inputs_untouched_and_outputs_in_bids_layout(mixed):
    root, deriv, result, before = mixed
    assert tree_hashes(root) == before
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    gen = desc["GeneratedBy"][0]
    assert gen["Name"] == "neurodecode" and gen["Version"] and len(gen["ConfigHash"]) == 16
    eeg = deriv / "sub-S001" / "eeg"
    names = sorted(p.name for p in eeg.iterdir())
    assert names == ["sub-S001_task-S001R04_desc-clean_eeg.edf", "sub-S001_task-S001R04_desc-qc_annotations.tsv",
                     "sub-S001_task-S001R04_desc-qc_channels.tsv", "sub-S001_task-S001R04_report.html"]
    channels = (eeg / "sub-S001_task-S001R04_desc-qc_channels.tsv").read_text().splitlines()
    assert channels[0] == "name\ttype\tstatus\tstatus_description" and len(channels) == 65
    assert {line.split("\t")[2] for line in channels[1:]} <= {"good", "bad"}
    assert (deriv / "sub-lab" / "eeg" / "sub-lab_task-eeglabdata_desc-clean_eeg.edf").is_file()
    assert not [p for p in deriv.rglob("*") if ".tmp-" in p.name], "temporary files left behind"
    html = (eeg / "sub-S001_task-S001R04_report.html").read_text()
    assert "<svg" in html and "S001R04.edf" in html
    tsv = (eeg / "sub-S001_task-S001R04_desc-qc_annotations.tsv").read_text().splitlines()
    assert tsv[0] == "onset\tduration\ttrial_type\tchannels"


def test_clean_output_is_the_band_passed_recording(mixed):
    root, deriv, _, _ = mixed
    src = mne.io.read_raw_edf(root / "S001" / "S001R04.edf", preload=True, verbose="error")
    out = mne.io.read_raw_edf(deriv / "sub-S001/eeg/sub-S001_task-S001R04_desc-clean_eeg.edf", preload=True,
                              verbose="error")
    assert out.info["sfreq"] == 160 and len(out.ch_names) == 64
    out.pick(out.ch_names[:8])
    src.pick(src.ch_names[:8])  # eight channels keep the reference filter cheap
    ref = mne.filter.filter_data(src.get_data(), 160.0, 1.0, 40.0, method="fir", phase="zero", fir_design="firwin",
                                 verbose="error")
    got = out.get_data()[:, : src.n_times]
    lsb = (ref.max(1) - ref.min(1)) / 65535
    assert np.all(np.abs(got - ref).max(1) <= lsb * 1.01)
    assert sorted(out.annotations.description) == sorted(src.annotations.description)


def test_status_tables_match_the_rows(mixed):
    _, deriv, result, _ = mixed
    with open(deriv / "batch_status.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.rows) == 8 * 3
    assert {r["status"] for r in rows} == {"done", "failed", "skipped"}
    js = json.loads((deriv / "batch_status.json").read_text())
    assert js["rows"] == json.loads(json.dumps(result.rows))
    done = next(r for r in rows if r["file"] == "S001/S001R04.edf" and r["step"] == "clean")
    out = deriv / done["outputs"]
    from neurodecode.utils import sha256_file

    assert sha256_file(out) == done["output_sha256"]
    assert float(done["peak_rss_mb"]) > 50


def test_unchanged_rerun_recomputes_nothing(mixed):
    root, deriv, first, _ = mixed
    before = tree_hashes(deriv, skip=STATUS)
    # New modification times without new content (network file systems do this): still cached.
    for p in (root / "S001" / "S001R04.edf", root / "lab" / "eeglab_data.fdt"):
        os.utime(p, (p.stat().st_atime + 3600, p.stat().st_mtime + 3600))
    result = run_batch(root, deriv, steps="clean,qc", include=["S001/*", "lab/*", "broken/cut*"], qc=AMPLITUDE)
    assert result.exit_code == 0
    assert {r["status"] for r in result.rows} == {"cached"}
    assert len(result.rows) == 9
    assert tree_hashes(deriv, skip=STATUS) == before
    cached = _status(result, "broken/cutrecords.edf")
    assert cached["warnings"] == _status(first, "broken/cutrecords.edf")["warnings"]


def _one(root, rel):
    return next(r for r in discover(root) if r.relpath == rel)


def test_changed_output_or_config_is_redone(mixed, tmp_path):
    root, deriv_src, _, _ = mixed
    deriv = tmp_path / "d"
    shutil.copytree(deriv_src, deriv)
    rec = _one(root, "S001/S001R04.edf")
    h = input_hash(rec.path, rec.companions)
    cfg = load_config(None, {"steps": "clean,qc", "qc": AMPLITUDE})
    out = deriv / "sub-S001/eeg/sub-S001_task-S001R04_desc-clean_eeg.edf"
    good = out.read_bytes()
    out.write_bytes(good[:-10] + b"0123456789")  # damaged after the run
    rows = process_recording(rec.to_dict(), h, cfg, str(deriv), "0.1.0")
    assert [r["status"] for r in rows] == ["done", "cached", "cached"]
    assert out.read_bytes() == good
    # A changed step configuration invalidates that step and what depends on it.
    cfg2 = load_config(None, {"steps": "clean,qc", "clean": {"l_freq": 2.0}, "qc": AMPLITUDE})
    rows = process_recording(rec.to_dict(), h, cfg2, str(deriv), "0.1.0")
    assert [r["status"] for r in rows] == ["done", "done", "done"]
    assert out.read_bytes() != good
    # Reverting the configuration redoes the chain and gives the original bytes back.
    rows = process_recording(rec.to_dict(), h, cfg, str(deriv), "0.1.0")
    assert [r["status"] for r in rows] == ["done", "done", "done"] and out.read_bytes() == good


def test_partial_write_is_redone_byte_identical(mixed, tmp_path, client2):
    """What a kill during a write leaves: a temp file, a cut output, no manifest."""
    root, deriv_src, _, _ = mixed
    deriv = tmp_path / "d"
    shutil.copytree(deriv_src, deriv)
    reference = tree_hashes(deriv, skip=STATUS)
    out = deriv / "sub-lab/eeg/sub-lab_task-eeglabdata_desc-clean_eeg.edf"
    out.write_bytes(out.read_bytes()[:5000])
    (deriv / "_cache/sub-lab_task-eeglabdata/clean.json").unlink()
    (out.parent / ".sub-lab_task-eeglabdata_desc-clean_eeg.tmp-999-abcd.edf").write_bytes(b"partial")
    result = run_batch(root, deriv, steps="clean,qc", include=["S001/*", "lab/*"], client=client2, qc=AMPLITUDE)
    assert result.exit_code == 0 and result.summary["stale_temporaries_removed"] == 1
    assert [r["status"] for r in result.rows if r["file"] == "lab/eeglab_data.set"] == ["done", "cached", "cached"]
    assert tree_hashes(deriv, skip=STATUS) == reference


def test_unsafe_or_invalid_requests_are_usage_errors(real_folder, tmp_path):
    with pytest.raises(UsageError, match="resolves inside the input"):
        run_batch(real_folder, real_folder / "derivatives" / "x")
    with pytest.raises(UsageError, match="resolves inside the input"):
        run_batch(real_folder, real_folder)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a neurodecode derivatives folder"):
        run_batch(real_folder, foreign)
    with pytest.raises(UsageError, match="Allowed steps are 'clean' and 'qc'"):
        run_batch(real_folder, tmp_path / "o", steps="clean,denoise")
    with pytest.raises(UsageError, match="Unknown configuration key 'clean.lfreq'"):
        run_batch(real_folder, tmp_path / "o", clean={"lfreq": 1})
    with pytest.raises(UsageError, match="'on_error'"):
        run_batch(real_folder, tmp_path / "o", on_error="ignore")
    with pytest.raises(UsageError, match="No recordings found"):
        (tmp_path / "empty_in").mkdir()
        run_batch(tmp_path / "empty_in", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    assert (foreign / "notes.txt").read_text() == "mine"


def test_dry_run_writes_nothing(mixed, real_folder, tmp_path):
    _, deriv, _, _ = mixed
    dry = run_batch(real_folder, tmp_path / "o2", steps="clean,qc", dry_run=True)
    assert not (tmp_path / "o2").exists()
    assert {r["status"] for r in dry.rows} == {"pending"} and len(dry.rows) == 2 * 3
    # Keys depend on content, not on where the dataset lives: the mixed run's outputs count.
    before = tree_hashes(deriv)
    dry = run_batch(real_folder, deriv, steps="clean,qc", clean={"l_freq": 1.0}, qc={"peak": 2e-4}, dry_run=True)
    assert [r["status"] for r in dry.rows if r["file"] == "S001/S001R04.edf"] == ["cached", "pending", "pending"]
    assert tree_hashes(deriv) == before


def test_clean_raw_methods_run_through_the_batch(mixed, tmp_path):
    """``clean.method: filter`` is neurodecode.artifacts.clean.clean_raw, as in ``neurodecode clean``."""
    pytest.importorskip("neurodecode.artifacts.clean", reason="clean_raw is not in this checkout")
    root, _, _, _ = mixed
    rec = _one(root, "S001/S001R04.edf")
    cfg = load_config(None, {"steps": "clean,qc", "clean": {"method": "filter"}})
    rows = process_recording(rec.to_dict(), input_hash(rec.path, rec.companions), cfg, str(tmp_path), "0.1.0")
    assert [r["status"] for r in rows] == ["done", "done", "done"], rows[0]["error_message"]
    man = read_manifest(tmp_path, rec.uid, "clean")
    assert man["summary"]["clean_summary"]["method"] == "filter" and "seconds" not in man["summary"]["clean_summary"]
    out = mne.io.read_raw_edf(tmp_path / rows[0]["outputs"][0], preload=True, verbose="error")
    src = mne.io.read_raw_edf(rec.path, preload=True, verbose="error")
    assert len(out.ch_names) == 64 and out.n_times == src.n_times
    assert not np.allclose(out.get_data(), src.get_data(), atol=1e-6), "nothing was cleaned"
    again = process_recording(rec.to_dict(), input_hash(rec.path, rec.companions), cfg, str(tmp_path), "0.1.0")
    assert [r["status"] for r in again] == ["cached"] * 3


def test_hveegnet_qc_runs_when_its_weights_are_shipped(mixed, tmp_path):
    from neurodecode.batch.steps import _weights

    if not _weights("hveegnet"):
        pytest.skip("no shipped HVEEGNet weights in this checkout (neurodecode/weights/hveegnet*.safetensors)")
    root, _, _, _ = mixed
    rec = _one(root, "S001/S001R04.edf")
    cfg = load_config(None, {"steps": "qc", "qc": {"method": "auto"}})
    rows = process_recording(rec.to_dict(), input_hash(rec.path, rec.companions), cfg, str(tmp_path), "0.1.0")
    assert rows[0]["method"] == "auto" and rows[0]["status"] == "done", rows[0]["error_message"]
    tsv = (tmp_path / rows[0]["outputs"][0]).read_text().splitlines()
    assert tsv[0].startswith("onset\tduration\ttrial_type")
    assert all(line.split("\t")[2].startswith("BAD_") for line in tsv[1:])


def test_cli_prints_one_line_per_file(mixed, capsys):
    from neurodecode.cli import main

    root, deriv, _, _ = mixed
    cfg = deriv.parent / "only_good.yaml"
    cfg.write_text("include: ['S001/*', 'lab/*']\nqc:\n  method: amplitude\n")
    with pytest.raises(SystemExit) as info:
        main(["batch", str(root), "--out", str(deriv), "--steps", "clean,qc", "--config", str(cfg)])
    assert info.value.code == 0
    err = capsys.readouterr().err
    assert "[1/2] cached S001/S001R04.edf" in err and "[2/2] cached lab/eeglab_data.set" in err
    assert "2 recording(s), steps clean,qc: 6 cached" in err


def test_nan_samples_become_bad_nan_annotations_and_a_warning(tmp_path):
    """T-S1: NaN spans are zeroed before filtering (no spreading), annotated and reported."""
    rng = np.random.default_rng(3)
    data = rng.standard_normal((4, 100 * 60)) * 20e-6
    data[2, 1000:1250] = np.nan  # 2.5 s on one channel
    info = mne.create_info(["Fz", "Cz", "Pz", "Oz"], 100.0, "eeg")
    (tmp_path / "in").mkdir()
    mne.io.RawArray(data, info, verbose="error").save(tmp_path / "in" / "nan_raw.fif", verbose="error")
    rec = discover(tmp_path / "in")[0]
    cfg = load_config(None, {"steps": "clean", "clean": {"chunk_s": 7.0}})
    rows = process_recording(rec.to_dict(), input_hash(rec.path), cfg, str(tmp_path / "d"), "0.1.0")
    assert rows[0]["status"] == "done", rows[0]["error_message"]
    assert any("NaN" in w and "BAD_NAN" in w for w in rows[0]["warnings"])
    out = mne.io.read_raw_edf(tmp_path / "d" / rows[0]["outputs"][0], preload=True, verbose="error")
    nan = [(a["onset"], a["duration"]) for a in out.annotations if a["description"] == "BAD_NAN"]
    assert nan == [(10.0, 2.5)]
    assert np.isfinite(out.get_data()).all()


def test_one_batch_per_derivatives_folder(mixed):
    from neurodecode.batch.runner import _run_lock

    root, deriv, _, _ = mixed
    before = tree_hashes(deriv)
    with _run_lock(deriv):  # another run holds the folder
        with pytest.raises(UsageError, match="Another neurodecode batch is writing to"):
            run_batch(root, deriv, steps="clean,qc", include=["S001/*"])
    assert tree_hashes(deriv) == before


def test_trust_file_stat_skips_rereading_unchanged_inputs(mixed, monkeypatch):
    from neurodecode.batch import cache

    root, deriv, _, _ = mixed
    reads = []
    real = cache.input_hash
    monkeypatch.setattr(cache, "input_hash", lambda p, c=(): reads.append(p) or real(p, c))
    kw = dict(steps="clean,qc", include=["S001/*", "lab/*"], trust_file_stat=True, qc=AMPLITUDE)
    assert {r["status"] for r in run_batch(root, deriv, **kw).rows} == {"cached"}
    assert len(reads) == 2  # first use of the memo: both inputs read
    assert {r["status"] for r in run_batch(root, deriv, **kw).rows} == {"cached"}
    assert len(reads) == 2  # nothing re-read
    (root / "lab" / "eeglab_data.fdt").touch()  # a status change: that recording is read again
    assert {r["status"] for r in run_batch(root, deriv, **kw).rows} == {"cached"}
    assert [Path(p).name for p in reads[2:]] == ["eeglab_data.set"]
