"""Speed and memory: clean a 1-hour 64-channel recording with AT-AT and with MNE ICA + ICLabel.

    python benchmarks/artifacts_speed.py

The recording is real EEG: eegmmidb runs (S001-S011) concatenated to 3600 s, 64 channels at
160 Hz, written once to ``build/speed_1h_raw.fif`` and read lazily. Each method runs in its own
fresh process (one thread) in the same invocation, one after the other, and reports wall seconds,
CPU seconds, real-time factor (recording duration / wall seconds) and peak RSS (ru_maxrss).
The ICA path is the usual one: picard, 20 components, fitted on 1-100 Hz average-referenced data
(at most 10 min, evenly spaced), ICLabel, then applied to the whole recording chunk by chunk.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_recording(path, duration_s=3600.0):
    import mne

    from neurodecode.io import read_raw
    from neurodecode.utils import data_dir

    files = sorted((data_dir() / "eegmmidb").glob("S*/S*R*.edf"))
    raws, total = [], 0.0
    for f in files:
        r = read_raw(f, preload=True)
        r.set_annotations(None)
        raws.append(r)
        total += r.n_times / r.info["sfreq"]
        if total >= duration_s:
            break
    raw = mne.concatenate_raws(raws, verbose="error")
    raw.crop(0, duration_s - 1 / raw.info["sfreq"], verbose="error")
    raw.save(path, overwrite=True, verbose="error")
    return path


def child(method, path, duration_s, precision="auto", overlap=0.25, prescreen=True, screen=True):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from neurodecode.artifacts.clean import clean_raw
    from neurodecode.io import read_raw

    raw = read_raw(path, preload=False)
    if duration_s < raw.n_times / raw.info["sfreq"]:
        raw.crop(0, duration_s - 1 / raw.info["sfreq"])
    t0, c0 = time.time(), time.process_time()
    kw = {"precision": precision, "overlap": overlap, "prescreen": prescreen, "screen": screen} if method == "atat" else {}
    cleaned, summary = clean_raw(raw, method=method, artifacts=("emg", "eog"), **kw)
    wall, cpu = time.time() - t0, time.process_time() - c0
    dur = raw.n_times / raw.info["sfreq"]
    print(json.dumps({"method": method, "wall_s": wall, "cpu_s": cpu, "duration_s": dur, "n_channels": len(raw.ch_names),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "gate": summary.get("gate_fraction"), "precision": summary.get("precision"), "excluded": summary.get("excluded_components")}))


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--child", default=None)
    p.add_argument("--file", default=str(ROOT / "build" / "speed_1h_raw.fif"))
    p.add_argument("--methods", default="atat,ica")
    p.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="AT-AT transformer arithmetic (auto: bfloat16 where the CPU has it)")
    p.add_argument("--overlap", type=float, default=0.25, help="AT-AT window overlap fraction")
    p.add_argument("--no-prescreen", action="store_true", help="AT-AT without the pre-screen")
    p.add_argument("--no-screen", action="store_true", help="AT-AT without the screens (dense path)")
    p.add_argument("--duration-s", type=float, default=3600.0, help="crop the recording to this length")
    a = p.parse_args(argv)
    if a.child:
        return child(a.child, a.file, a.duration_s, a.precision, a.overlap, not a.no_prescreen, not a.no_screen)
    if not Path(a.file).exists():
        Path(a.file).parent.mkdir(parents=True, exist_ok=True)
        make_recording(a.file)
    res = []
    for m in a.methods.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", m, "--file", a.file, "--duration-s", str(a.duration_s),
                             "--precision", a.precision, "--overlap", str(a.overlap)]
                             + (["--no-prescreen"] if a.no_prescreen else []) + (["--no-screen"] if a.no_screen else []),
                             capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"method {m} failed")
        res.append(json.loads(out.stdout.strip().splitlines()[-1]))
    r0 = res[0]
    print(f"## Speed and memory: {r0['duration_s'] / 60:.0f} min, {r0['n_channels']} channels, 160 Hz "
          f"(real eegmmidb EEG), one thread, same run\n")
    print("| method | wall s | CPU s | real-time factor (wall) | real-time factor (CPU) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    prec = next((r.get("precision") for r in res if r["method"] == "atat"), a.precision)
    names = {"atat": f"AT-AT (EOG + EMG models, chunked, {prec} transformer, "
                     f"{a.overlap:.0%} overlap, pre-screen {'off' if a.no_prescreen else 'on'}, "
                     f"screens {'off' if a.no_screen else 'on'})", "ica": "MNE ICA picard 20 + ICLabel + apply (chunked)",
             "filter": "Butterworth filters (chunked)"}
    for r in res:
        print(f"| {names[r['method']]} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['duration_s'] / r['wall_s']:.0f}x | "
              f"{r['duration_s'] / r['cpu_s']:.0f}x | {r['peak_rss_mb']:.0f} |")
    for r in res:
        if r.get("gate"):
            print(f"\nAT-AT gate: fraction of windows sent to the transformer per model: {r['gate']}")
        if r.get("excluded") is not None:
            print(f"\nICA: components removed: {r['excluded']}")


if __name__ == "__main__":
    main()
