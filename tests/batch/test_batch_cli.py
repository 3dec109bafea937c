"""The command line: exit codes, --json, kill -9 and resume; the cluster stays on loopback."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neurodecode.batch import run_batch
from neurodecode.batch.cache import input_hash
from neurodecode.batch.config import load_config
from neurodecode.batch.discover import discover
from neurodecode.batch.runner import _client, _prepare_deriv, _write_description, process_recording
from neurodecode.cli import main

from .conftest import tree_hashes

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
STATUS = ("batch_status.csv", "batch_status.json", ".neurodecode-batch.lock")
CLI = [sys.executable, "-c", "from neurodecode.cli import main; main()", "batch"]


def _exit_code(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def test_usage_errors_exit_2(real_folder, tmp_path, capsys):
    assert _exit_code(["batch", str(real_folder), "--out", str(tmp_path / "o"), "--steps", "clean,bogus"]) == 2
    err = capsys.readouterr().err
    assert "Allowed steps are 'clean' and 'qc'" in err and "Traceback" not in err
    assert _exit_code(["batch", str(real_folder), "--out", str(real_folder / "d")]) == 2
    cfg = tmp_path / "batch.yaml"
    cfg.write_text("clean:\n  method: atta\n")
    assert _exit_code(["batch", str(real_folder), "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    assert "'clean.method'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_dry_run_lists_and_writes_nothing(real_folder, tmp_path, capsys):
    assert _exit_code(["batch", str(real_folder), "--out", str(tmp_path / "o"), "--steps", "clean", "--dry-run",
                       "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["dry_run"] is True and {r["status"] for r in out["rows"]} == {"pending"}
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def four(data_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("four_in")
    for sub, name in (("S001", "S001R04.edf"), ("S001", "S001R08.edf"), ("S002", "S002R04.edf"), ("S003", "S003R04.edf")):
        (root / sub).mkdir(exist_ok=True)
        shutil.copyfile(data_file("eegmmidb", sub, name), root / sub / name)
    (root / "zz").mkdir()
    (root / "zz" / "garbage.edf").write_bytes(os.urandom(3000))
    return root


def test_kill_9_then_resume_gives_identical_outputs(four, tmp_path):
    inputs_before = tree_hashes(four)
    # Reference: the same steps without interruption (in-process: the code the workers run).
    cfg = load_config(None, {"steps": "clean,qc"})
    ref = tmp_path / "ref"
    _prepare_deriv(ref)
    _write_description(ref, four.resolve(), cfg, "0.1.0")
    for rec in discover(four.resolve()):
        process_recording(rec.to_dict(), input_hash(rec.path, rec.companions), cfg, str(ref), "0.1.0")

    deriv = tmp_path / "deriv"
    argv = [*CLI, str(four), "--out", str(deriv), "--steps", "clean,qc", "--workers", "1", "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finished = []
    t0 = time.time()
    while time.time() - t0 < 240 and proc.poll() is None:
        finished = sorted(p.parent.name for p in (deriv / "_cache").glob("*/report.json"))
        if finished:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the coordinator, its nannies and workers, like a node crash
    proc.wait()
    assert finished and len(finished) < 4, f"the kill did not land mid-run: {finished}"

    res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr  # the garbage file fails again; everything else succeeds
    out = json.loads(res.stdout)
    by_uid = {}
    for r in out["rows"]:
        by_uid.setdefault("sub-" + r["file"].split("/")[0] + "_task-" + Path(r["file"]).stem, []).append(r["status"])
    for uid in finished:  # finished before the kill: skipped (verified by hash)
        assert by_uid[uid] == ["cached"] * 3, (uid, by_uid[uid])
    redone = [u for u in by_uid if u not in finished and "garbage" not in u]
    assert redone and all("done" in by_uid[u] for u in redone)
    assert out["summary"]["files_failed"] == ["zz/garbage.edf"]
    assert tree_hashes(deriv, skip=STATUS) == tree_hashes(ref, skip=STATUS)
    assert tree_hashes(four) == inputs_before


@pytest.fixture(scope="module")
def client1():
    """One worker with a small memory limit; a file named hog.edf makes it allocate without end."""
    os.environ["NEURODECODE_BATCH_FAULT"] = "alloc:hog.edf"  # inherited by the spawned worker
    try:
        with _client(load_config(None, {"workers": 1, "memory_limit": "800MB"})) as client:
            yield client
    finally:
        del os.environ["NEURODECODE_BATCH_FAULT"]


def test_memory_limit_fails_one_file_and_the_rest_finish(four, tmp_path, client1):
    root = tmp_path / "in"
    (root / "m").mkdir(parents=True)
    for name in ("1.edf", "hog.edf", "3.edf"):
        shutil.copyfile(four / "S001" / "S001R04.edf", root / "m" / name)
    result = run_batch(root, tmp_path / "o", steps="clean", client=client1, memory_limit="800MB")
    status = {r["file"]: (r["status"], r["error_class"]) for r in result.rows if r["step"] == "clean"}
    assert status == {"m/1.edf": ("done", ""), "m/hog.edf": ("failed", "KilledWorker"), "m/3.edf": ("done", "")}
    assert result.exit_code == 1
    assert "800MB" in next(r for r in result.rows if r["file"] == "m/hog.edf")["error_message"]


def test_abort_stops_after_the_first_failure(four, tmp_path, client1):
    root = tmp_path / "in"
    (root / "a").mkdir(parents=True)
    shutil.copyfile(four / "zz" / "garbage.edf", root / "a" / "0garbage.edf")
    for i in (1, 2):
        shutil.copyfile(four / "S001" / "S001R04.edf", root / "a" / f"{i}.edf")
    # Through the scheduler's address, as `--scheduler tcp://...` does for an existing cluster.
    result = run_batch(root, tmp_path / "o", steps="clean", scheduler=client1.scheduler.address, on_error="abort")
    assert result.exit_code == 1 and result.summary["aborted"] is True
    status = {r["file"]: r["status"] for r in result.rows if r["step"] == "clean"}
    assert status == {"a/0garbage.edf": "failed", "a/1.edf": "skipped", "a/2.edf": "skipped"}
    assert not list((tmp_path / "o").glob("sub-*/eeg/*.edf"))


def _non_loopback_ip():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") else ip


def test_local_cluster_listens_on_loopback_only_with_one_thread_per_worker(client1):
    psutil = pytest.importorskip("psutil")
    client = client1
    addr = client.scheduler.address
    assert addr.startswith("tcp://127.0.0.1:")
    assert all(w.startswith("tcp://127.0.0.1:") for w in client.scheduler_info()["workers"])
    pids = set(client.run(os.getpid).values()) | set(client.run(os.getpid, nanny=True).values())

    def threads():
        import numpy  # noqa: F401  (loads its BLAS with the worker's environment)
        from threadpoolctl import threadpool_info

        return os.environ.get("OMP_NUM_THREADS"), sorted({i["num_threads"] for i in threadpool_info()})

    (omp, nums), = client.run(threads).values()
    assert omp == "1" and nums == [1]
    listening = [c.laddr for pid in pids | {os.getpid()} for c in psutil.Process(pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and all(ip in ("127.0.0.1", "::1") for ip, _ in listening), listening
    ip = _non_loopback_ip()
    if ip is not None:
        port = int(addr.rsplit(":", 1)[1])
        with pytest.raises(OSError):
            socket.create_connection((ip, port), timeout=2).close()
