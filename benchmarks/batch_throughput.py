"""Throughput of ``neurodecode batch`` with 1 and 2 workers, and the time of a cached rerun.

Recordings: the real EDF files of PhysioNet eegmmidb in the shared data folder (64 channels,
160 Hz, about 2 minutes each) plus the EEGLAB sample, linked into a temporary input folder.

* Scaling: the first ``--n-scaling`` recordings, steps ``clean,qc``, with a CPU-heavy cleaning
  configuration (a 0.1 Hz high-pass needs a 5281-tap FIR, so each file is seconds of arithmetic
  rather than file I/O), run once with ``--workers 1`` and once with ``--workers 2`` into fresh
  folders. Throughput = files / time from the first submitted file to the last finished one
  (cluster start-up and the workers' first imports excluded; printed separately).
* Cached rerun: ``--n-cached`` recordings processed once with the default configuration and
  2 workers, then the same command again; its wall time (a fresh process, imports included)
  is the cached-rerun time.

Every process on this machine competes for the same 2 cores, so the load average before and
after each run is printed next to the numbers.

Usage::

    PYTHONPATH=. python benchmarks/batch_throughput.py --workdir /tmp/nd_batch_tp
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HEAVY = "clean:\n  l_freq: 0.1\n  h_freq: 40.0\n"


def _inputs(dst, n):
    from neurodecode.utils import data_dir

    src = data_dir()
    files = sorted((src / "eegmmidb").rglob("*.edf")) + [src / "eeglab_sample" / "eeglab_data.set"]
    files = files[:n]
    if dst.exists():
        shutil.rmtree(dst)
    for f in files:
        rel = f.relative_to(src)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f, dst / rel)
        if f.suffix == ".set":
            os.symlink(f.with_suffix(".fdt"), (dst / rel).with_suffix(".fdt"))
    return len(files)


def _run(inp, out, workers, config=None):
    cmd = [sys.executable, "-c", "from neurodecode.cli import main; main()", "batch", str(inp), "--out", str(out),
           "--steps", "clean,qc", "--workers", str(workers), "--json"]
    if config:
        cmd += ["--config", str(config)]
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode not in (0, 1):
        raise RuntimeError(res.stderr[-2000:])
    out = json.loads(res.stdout)
    return out["summary"], out["rows"], wall, (load0, os.getloadavg()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/nd_batch_tp")
    ap.add_argument("--n-scaling", type=int, default=24)
    ap.add_argument("--n-cached", type=int, default=50)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--skip-cached", action="store_true")
    ap.add_argument("--reruns", type=int, default=3, help="cached reruns to time")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    heavy = work / "heavy.yaml"
    heavy.write_text(HEAVY)

    if not args.skip_scaling:
        n = _inputs(work / "in_scaling", args.n_scaling)
        print(f"## Scaling: {n} recordings, steps clean,qc, config {HEAVY!r}\n")
        print("| workers | files | processing (s) | files/min | wall incl. start-up (s) | first file submitted after (s) | failed | worker CPU / wall, clean step | load avg before/after |")
        print("|---|---|---|---|---|---|---|---|---|")
        tput = {}
        for w in (1, 2):
            out = work / f"deriv_w{w}"
            shutil.rmtree(out, ignore_errors=True)
            s, rows, wall, load = _run(work / "in_scaling", out, w, heavy)
            tput[w] = n / s["processing_s"] * 60
            clean = [r for r in rows if r["step"] == "clean" and r["status"] == "done"]
            share = sum(r["cpu_s"] for r in clean) / max(1e-9, sum(r["duration_s"] for r in clean))
            print(f"| {w} | {n} | {s['processing_s']:.1f} | {tput[w]:.2f} | {wall:.1f} | {s['first_submit_s']:.1f} | "
                  f"{len(s['files_failed'])} | {share:.2f} | {load[0]:.1f} / {load[1]:.1f} |", flush=True)
        same = all(
            (work / "deriv_w1" / r["outputs"][0]).read_bytes() == (work / "deriv_w2" / r["outputs"][0]).read_bytes()
            for r in _run_rows(work / "deriv_w2") if r["status"] == "done")
        print(f"\nscaling ratio (2 workers / 1 worker): {tput[2] / tput[1]:.2f}x; "
              f"outputs byte-identical between the two runs: {same}\n")

    if args.skip_cached:
        return
    n = _inputs(work / "in_cached", args.n_cached)
    out = work / "deriv_cached"
    shutil.rmtree(out, ignore_errors=True)
    s1, _, wall1, load1 = _run(work / "in_cached", out, 2)
    reruns = [_run(work / "in_cached", out, 2) for _ in range(args.reruns)]
    print(f"## Cached rerun: {n} recordings, steps clean,qc (default config), 2 workers\n")
    print("| run | wall, whole command (s) | run_batch wall (s) | files/min | statuses | load avg before/after |")
    print("|---|---|---|---|---|---|")
    print(f"| first | {wall1:.1f} | {s1['wall_s']:.1f} | {n / s1['processing_s'] * 60:.2f} | "
          f"{s1['counts']} | {load1[0]:.1f} / {load1[1]:.1f} |")
    for i, (s2, rows2, wall2, load2) in enumerate(reruns, 1):
        statuses = sorted({r["status"] for r in rows2})
        print(f"| rerun {i} | {wall2:.1f} | {s2['wall_s']:.1f} | - | {statuses} ({s2['n_submitted']} submitted) | "
              f"{load2[0]:.1f} / {load2[1]:.1f} |")


def _run_rows(deriv):
    return json.loads((deriv / "batch_status.json").read_text())["rows"]


if __name__ == "__main__":
    main()
