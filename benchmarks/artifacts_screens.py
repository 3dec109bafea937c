"""AT-AT screens (frontal EOG decision, spectral EMG screen) against the dense path, VALIDATION data only.

    python benchmarks/artifacts_screens.py

Store: ``datasets/denoise_multichannel_val.yaml`` (eegmmidb S008, the validation subject, with the
validation spans of training EOG/EMG files, placed like the test benchmark). Every row cleans the
three 64-channel recordings with :func:`neurodecode.artifacts.apply.apply_denoiser` (EOG then EMG
model, gated, whole-recording defaults) and prints RRMSE_t and CC against the clean recordings
(all channels and frontal Fp/AF/F channels), CPU seconds (one thread) and the fraction of windows
sent to each transformer. Rows: no cleaning, the dense path (``screen=False``, the reference),
then the screens at several thresholds (``z_front``, ``z_chan``: see
:mod:`neurodecode.artifacts.screens`); the shipped thresholds are marked. Test data are never read.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["none", False, {"z_front": 3, "z_chan": 0}, {"z_front": 3, "z_chan": 3}, {"z_front": 4, "z_chan": 4},
           {"z_front": 6, "z_chan": 3}, {"z_front": 6, "z_chan": 4}, {"z_front": 8, "z_chan": 3},
           {"z_front": 10, "z_chan": 3}, {"emg_slack": 0.8}, {"z_front": 1e9}]


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--store", default=str(ROOT / "build" / "datasets" / "denoise_multichannel_val.h5"))
    p.add_argument("--configs", default=None, help="JSON list of screen settings (default: the table's rows)")
    a = p.parse_args(argv)
    import mne
    import torch

    torch.set_num_threads(1)
    from neurodecode.artifacts import screens as S
    from neurodecode.artifacts.apply import apply_denoiser
    from neurodecode.artifacts.atat import ATAT
    from neurodecode.artifacts.metrics import correlation_coefficient, rrmse_temporal
    from neurodecode.io import WindowStore

    configs = json.loads(a.configs) if a.configs else CONFIGS
    models = [ATAT.from_pretrained("eog"), ATAT.from_pretrained("emg")]
    recs = []
    with WindowStore(a.store) as st:
        names = sorted({r.rsplit("_", 1)[0] for r in st.recordings})
        for name in names:
            ic = st.info(f"{name}_contaminated")
            info = mne.create_info(ic["ch_names"], float(ic["sfreq"]), "eeg")
            raw = mne.io.RawArray(st.data(f"{name}_contaminated").astype(np.float64), info, verbose="error")
            recs.append((raw, st.data(f"{name}_clean").astype(np.float64)))
    print(f"## AT-AT screens on the validation store ({Path(a.store).name}: {len(recs)} recordings x 64 channels, "
          f"{', '.join(names)})\n")
    print("| setting | RRMSE_t (all ch.) | RRMSE_t frontal | CC (all ch.) | CPU s | windows to EOG transformer | "
          "windows to EMG transformer |")
    print("|---|---|---|---|---|---|---|")
    shipped = {"z_front": S.EOG_Z_FRONT, "z_chan": S.EOG_Z_CHAN, "emg_slack": S.EMG_SLACK}
    for cfg in configs:
        c0 = time.process_time()
        rr, fr, cc, g = [], [], [], []
        for raw, clean in recs:
            if cfg == "none":
                out, s = raw.get_data(), {"gate_fraction": {"eog": 0.0, "emg": 0.0}}
            else:
                o, s = apply_denoiser(models, raw, screen=cfg)
                out = o.get_data()
            r = rrmse_temporal(out, clean)
            front = [i for i, c in enumerate(raw.ch_names) if c.upper().startswith(("FP", "AF", "F"))
                     and not c.upper().startswith("FT")]
            rr.append(r.mean()), fr.append(r[front].mean()), cc.append(correlation_coefficient(out, clean).mean())
            g.append(s["gate_fraction"])
        cpu = time.process_time() - c0
        if cfg == "none":
            label = "no cleaning"
        elif cfg is False:
            label = "dense path (screen=False), reference"
        elif cfg is True:
            label = (f"screens, shipped (z_front {shipped['z_front']:g}, z_chan {shipped['z_chan']:g}, "
                     f"EMG slack {shipped['emg_slack']:g})")
        elif cfg.get("z_front", 0) >= 1e8:
            label = "EOG model off (z_front = inf), EMG screened"
        else:
            v = {k: float(cfg.get(k, shipped[k])) for k in shipped}
            label = f"screens, z_front {v['z_front']:g}, z_chan {v['z_chan']:g}, EMG slack {v['emg_slack']:g}"
            if v == shipped:
                label += " (shipped)"
        print(f"| {label} | {np.mean(rr):.4f} | {np.mean(fr):.4f} | {np.mean(cc):.4f} | {cpu:.1f} | "
              f"{np.mean([x['eog'] for x in g]):.1%} | {np.mean([x['emg'] for x in g]):.1%} |", flush=True)


if __name__ == "__main__":
    main()
