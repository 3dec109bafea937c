"""Peak memory of one batch worker cleaning a 10-hour, 64-channel, 256 Hz recording.

The recording is built from real EEG (PhysioNet eegmmidb S001, 64 channels), resampled from
160 to 256 Hz and tiled to the requested length, then written chunk by chunk as EDF+ (it is
1.2 GB on disk, 4.7 GB as float64). ``neurodecode batch`` then runs ``clean`` (chunked FIR band-pass,
streamed EDF+ output) and ``qc`` (chunked amplitude checks) on it with one worker, and the
worker's peak resident memory is read two ways: the worker's own ``ru_maxrss`` (in the status
table) and psutil sampling of every process of the run every 0.2 s.

Usage::

    PYTHONPATH=. python benchmarks/batch_memory.py --hours 10 --workdir /tmp/nd_batch_mem
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def make_long_recording(path, hours, sfreq=256.0, runs=("R01", "R02", "R04", "R08")):
    """Write a ``hours``-long 64-channel EDF+ made of tiled real EEG; returns its duration (s)."""
    import mne

    from neurodecode.io._edf_stream import EdfStreamWriter
    from neurodecode.io import read_raw
    from neurodecode.utils import atomic_path, data_dir

    pool = []
    for r in runs:
        raw = read_raw(data_dir() / "eegmmidb" / "S001" / f"S001{r}.edf", preload=True)
        raw.resample(sfreq, verbose="error")
        pool.append(raw.get_data())
    pool = np.concatenate(pool, axis=1)
    ch_names, ch_types = raw.ch_names, raw.get_channel_types()
    n_times = int(hours * 3600 * sfreq)
    # Per-tile polarity and circular shift, so the long file is not one block repeated verbatim.
    rng = np.random.default_rng(0)
    lo, hi = pool.min(axis=1), pool.max(axis=1)
    span = np.maximum(np.abs(lo), np.abs(hi))
    annotations = [(60.0 * k, 4.0, "T1" if k % 2 else "T2") for k in range(int(hours * 60))]
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "wb") as f:
        w = EdfStreamWriter(f, ch_names=ch_names, ch_types=ch_types, sfreq=sfreq, n_times=n_times,
                            ranges=np.c_[-span, span], annotations=annotations, meas_date=raw.info["meas_date"])
        written = 0
        while written < n_times:
            tile = np.roll(pool, int(rng.integers(pool.shape[1])), axis=1) * rng.choice([-1.0, 1.0])
            n = min(tile.shape[1], n_times - written)
            w.write(tile[:, :n])
            written += n
        w.close()
    return n_times / sfreq


def _sample_rss(root_pid, stop, peaks):
    import psutil

    root = psutil.Process(root_pid)
    while not stop.is_set():
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                rss = p.memory_info().rss
                name = " ".join(p.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if "resource_tracker" in name:
                continue  # multiprocessing's helper process, not part of the work
            # The coordinator process also hosts the scheduler and the nannies (LocalCluster).
            key = "coordinator (scheduler, nannies, hashing)" if p.pid == root_pid else "worker"
            peaks[key] = max(peaks.get(key, 0), rss)
        time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=10.0)
    ap.add_argument("--workdir", default="/tmp/nd_batch_mem")
    ap.add_argument("--memory-limit", default="3GB")
    args = ap.parse_args()
    work = Path(args.workdir)
    src = work / "input" / "long"
    src.mkdir(parents=True, exist_ok=True)
    rec = src / f"long_{args.hours:g}h.edf"
    if not rec.exists():
        t = time.perf_counter()
        make_long_recording(rec, args.hours)
        print(f"built {rec} ({rec.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s", flush=True)
    out = work / "deriv"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    cmd = [sys.executable, "-c", "from neurodecode.cli import main; main()", "batch", str(work / "input"),
           "--out", str(out), "--steps", "clean,qc", "--workers", "1", "--memory-limit", args.memory_limit, "--json"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()})
    stop, peaks = threading.Event(), {}
    th = threading.Thread(target=_sample_rss, args=(proc.pid, stop, peaks), daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    stop.set()
    th.join()
    wall = time.perf_counter() - t
    result = json.loads(stdout)
    rows = {r["step"]: r for r in result["rows"]}
    import mne

    check = mne.io.read_raw_edf(out / rows["clean"]["outputs"][0], preload=False, verbose="error")
    print(f"\nexit code {proc.returncode}; wall {wall:.0f} s; output {check.n_times / check.info['sfreq'] / 3600:.2f} h, "
          f"{len(check.ch_names)} channels at {check.info['sfreq']:g} Hz")
    print("\n| recording | step | status | duration (s) | worker peak RSS, ru_maxrss (MB) |")
    print("|---|---|---|---|---|")
    for step, r in rows.items():
        print(f"| {rec.name} ({rec.stat().st_size / 1e9:.2f} GB) | {step} | {r['status']} | {r['duration_s']:.0f} | {r['peak_rss_mb']} |")
    print("\n| process (psutil, sampled every 0.2 s) | peak RSS (MB) |")
    print("|---|---|")
    for k, v in sorted(peaks.items()):
        print(f"| {k} | {v / 2**20:.0f} |")


if __name__ == "__main__":
    main()
