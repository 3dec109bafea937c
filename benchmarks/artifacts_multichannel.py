"""Multichannel comparison: AT-AT vs ICA + ICLabel vs filters on 64-channel contaminated EEG.

    python benchmarks/artifacts_multichannel.py

Data: ``datasets/denoise_multichannel.yaml`` (real eegmmidb EEG of test subjects S009-S011, real
EOG propagated frontal-to-posterior, real EMG bursts on temporal channels; both artifact sources
are files never used to train AT-AT). Every method cleans the whole contaminated recording with
:func:`neurodecode.artifacts.clean.clean_raw` (EMG + EOG); the result is compared with the clean
recording channel by channel (RRMSE_t and CC over the whole recording), then averaged over
channels and recordings. Frontal (Fp/AF/F) and temporal (T/FT/TP) channel groups are also shown.
"""

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--store", default=str(ROOT / "build" / "datasets" / "denoise_multichannel.h5"))
    p.add_argument("--methods", default="none,filter,ica,atat,atat_ungated")
    a = p.parse_args(argv)

    import mne
    import torch

    torch.set_num_threads(1)
    from neurodecode.artifacts.apply import apply_denoiser
    from neurodecode.artifacts.atat import ATAT
    from neurodecode.artifacts.clean import _artifacts, clean_raw
    from neurodecode.artifacts.metrics import correlation_coefficient, rrmse_temporal
    from neurodecode.io import WindowStore

    methods = a.methods.split(",")
    rows = {m: {"all_rrmse": [], "all_cc": [], "front": [], "temp": [], "sec": 0.0, "cpu": 0.0} for m in methods}
    with WindowStore(a.store) as st:
        names = sorted({r.rsplit("_", 1)[0] for r in st.recordings})
        for name in names:
            info_c = st.info(f"{name}_contaminated")
            clean = st.data(f"{name}_clean").astype(np.float64)
            cont = st.data(f"{name}_contaminated").astype(np.float64)
            info = mne.create_info(info_c["ch_names"], float(info_c["sfreq"]), "eeg")
            raw = mne.io.RawArray(cont, info, verbose="error")
            raw.set_montage("standard_1005", match_case=False, on_missing="ignore", verbose="error")
            chs = raw.ch_names
            front = [i for i, c in enumerate(chs) if c.upper().startswith(("FP", "AF", "F")) and not c.upper().startswith("FT")]
            temp = [i for i, c in enumerate(chs) if c.upper().startswith(("T", "FT", "TP"))]
            for m in methods:
                t0, c0 = time.time(), time.process_time()
                if m == "none":
                    out = cont
                elif m == "atat_ungated":
                    out = apply_denoiser([ATAT.from_pretrained(x) for x in _artifacts(("emg", "eog"))], raw,
                                         gated=False)[0].get_data()
                else:
                    out = clean_raw(raw, method=m, artifacts=("emg", "eog"))[0].get_data()
                rows[m]["sec"] += time.time() - t0
                rows[m]["cpu"] += time.process_time() - c0
                r = rrmse_temporal(out, clean)
                rows[m]["all_rrmse"].append(r.mean())
                rows[m]["all_cc"].append(correlation_coefficient(out, clean).mean())
                rows[m]["front"].append(r[front].mean())
                rows[m]["temp"].append(r[temp].mean())
    label = {"none": "contaminated input (no cleaning)", "filter": "filter (EOG 2 Hz high-pass + EMG 30 Hz low-pass)",
             "ica": "MNE ICA (picard, 20 comp.) + ICLabel", "atat": "AT-AT (EOG then EMG model, per channel, gated)",
             "atat_ungated": "AT-AT (same, transformer on every window)"}
    print(f"## Multichannel benchmark: {len(names)} recordings x 64 channels ({', '.join(names)})\n")
    print("| method | RRMSE_t (all ch.) | CC (all ch.) | RRMSE_t frontal | RRMSE_t temporal | wall s | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for m in methods:
        r = rows[m]
        print(f"| {label[m]} | {np.mean(r['all_rrmse']):.3f} | {np.mean(r['all_cc']):.3f} | {np.mean(r['front']):.3f} | "
              f"{np.mean(r['temp']):.3f} | {r['sec']:.1f} | {r['cpu']:.1f} |")


if __name__ == "__main__":
    main()
