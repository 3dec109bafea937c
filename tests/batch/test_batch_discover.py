"""Finding recordings: BIDS datasets through mne-bids, plain folder trees with companion files."""

import shutil

import pytest

from neurodecode.batch.discover import discover, is_bids
from neurodecode.utils import UsageError


def test_bids_dataset_via_mne_bids(data_file, tmp_path):
    mne_bids = pytest.importorskip("mne_bids")
    import mne

    root = tmp_path / "bids"
    for sub, run, src in (("01", 1, ("S001", "S001R04.edf")), ("02", 2, ("S002", "S002R04.edf"))):
        raw = mne.io.read_raw_edf(data_file("eegmmidb", *src), verbose="error")
        bp = mne_bids.BIDSPath(subject=sub, session="a", task="imagery", run=run, datatype="eeg", root=root)
        mne_bids.write_raw_bids(raw, bp, verbose=False, allow_preload=False, overwrite=True)
    # A derivatives folder inside the dataset is never an input.
    (root / "derivatives" / "x" / "sub-01" / "eeg").mkdir(parents=True)
    shutil.copyfile(data_file("eegmmidb", "S001", "S001R04.edf"), root / "derivatives/x/sub-01/eeg/sub-01_eeg.edf")
    assert is_bids(root)
    recs = discover(root)
    assert [r.uid for r in recs] == ["sub-01_ses-a_task-imagery_run-1", "sub-02_ses-a_task-imagery_run-2"]
    assert all(r.datatype == "eeg" and r.path.endswith("_eeg.edf") for r in recs)
    assert recs[0].relpath == "sub-01/ses-a/eeg/sub-01_ses-a_task-imagery_run-1_eeg.edf"
    # Outputs keep the BIDS entities and folders (the code a worker runs, in-process here).
    from neurodecode.batch.cache import input_hash
    from neurodecode.batch.config import load_config
    from neurodecode.batch.runner import process_recording

    deriv = tmp_path / "deriv"
    cfg = load_config(None, {"steps": "clean"})
    rows = process_recording(recs[0].to_dict(), input_hash(recs[0].path), cfg, str(deriv), "0.1.0")
    assert [r["status"] for r in rows] == ["done", "done"]
    assert rows[0]["outputs"] == ["sub-01/ses-a/eeg/sub-01_ses-a_task-imagery_run-1_desc-clean_eeg.edf"]
    assert (deriv / "sub-01/ses-a/eeg/sub-01_ses-a_task-imagery_run-1_report.html").is_file()


def test_folder_tree_with_companions_and_non_recordings(data_file, tmp_path):
    root = tmp_path / "tree"
    (root / "bv").mkdir(parents=True)
    for ext in ("vhdr", "vmrk", "eeg"):
        shutil.copyfile(data_file("mne_python_brainvision", f"test.{ext}"), root / "bv" / f"test.{ext}")
    (root / "lab").mkdir()
    for ext in ("set", "fdt"):
        shutil.copyfile(data_file("eeglab_sample", f"eeglab_data.{ext}"), root / "lab" / f"eeglab_data.{ext}")
    (root / "lab" / "notes.txt").write_text("not a recording")
    (root / "lab" / "sub-epo.fif").write_bytes(b"epochs are not continuous recordings")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.edf").write_bytes(b"hidden")
    recs = discover(root)
    assert [r.relpath for r in recs] == ["bv/test.vhdr", "lab/eeglab_data.set"]
    assert [r.companions[0].rsplit("/", 1)[1] for r in recs] == ["test.eeg", "eeglab_data.fdt"]
    assert recs[0].uid == "sub-bv_task-test"
    assert [r.relpath for r in discover(root, include=["lab/*"])] == ["lab/eeglab_data.set"]


def test_same_name_different_format_gets_distinct_outputs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "rec.edf").write_bytes(b"x")
    (tmp_path / "a" / "rec.bdf").write_bytes(b"x")
    uids = [r.uid for r in discover(tmp_path)]
    assert len(set(uids)) == 2 and uids == ["sub-a_task-recbdf", "sub-a_task-recedf"]


def test_missing_input_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        discover(tmp_path / "nope")
