"""Single-channel denoising quality on the EMG and EOG test sets (EEGdenoiseNet protocol).

    python benchmarks/artifacts_quality.py --artifact emg
    python benchmarks/artifacts_quality.py --artifact eog

Prints one markdown table per metric (CC, RRMSE_t, RRMSE_s) with a row per method and a column per
test SNR (-7..2 dB) plus the mean over SNRs, and a parameter-count table. Test pairs come from
subjects and artifact files never used in training (see datasets/denoise_<artifact>.yaml).
Filter cut-offs are tuned on the validation split only.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _budget_note(info):
    return (f"{info['train_cpu_seconds']:.0f} CPU-s: {info['steps']} steps of {info['batch_size']} pairs, "
            f"best of {len(info['val_history'])} validations")


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--artifact", choices=("emg", "eog"), required=True)
    p.add_argument("--store", default=None)
    p.add_argument("--models", default=str(ROOT / "build" / "artifacts_models"))
    p.add_argument("--weights", default=None, help="AT-AT weights (default: shipped)")
    a = p.parse_args(argv)

    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    from neurodecode.artifacts import metrics as M
    from neurodecode.artifacts.atat import ATAT
    from neurodecode.artifacts.baselines import BASELINES, count_parameters, filter_denoise
    from neurodecode.datasets.denoise import load_benchmark

    store = a.store or str(ROOT / "build" / "datasets" / f"denoise_{a.artifact}.h5")
    x, y, lab = load_benchmark(store, "test")
    vx, vy, _ = load_benchmark(store, "val")
    snr = lab[:, 0]
    sf = 256.0
    methods, params, notes = {}, {}, {}
    methods["noisy input (no denoising)"] = y
    # filters: a fixed textbook one and one with its cut-off tuned on validation
    kind = "lowpass" if a.artifact == "emg" else "highpass"
    fixed = 30.0 if a.artifact == "emg" else 2.0
    grid = [15, 20, 25, 30, 35, 40, 50] if a.artifact == "emg" else [0.5, 1, 2, 3, 4, 5, 6, 8]
    methods[f"Butterworth {kind} {fixed:g} Hz"] = filter_denoise(y, sf, kind=kind, cutoff=fixed)
    val_scores = {c: np.mean(M.rrmse_temporal(filter_denoise(vy, sf, kind=kind, cutoff=c), vx)) for c in grid}
    best_c = min(val_scores, key=val_scores.get)
    methods[f"Butterworth {kind}, cut-off tuned on val ({best_c:g} Hz)"] = filter_denoise(y, sf, kind=kind, cutoff=best_c)
    params.update({k: 0 for k in methods})
    # trained baselines
    mdir = Path(a.models)
    for name, cls in BASELINES.items():
        f = mdir / f"{name}_{a.artifact}.safetensors"
        if not f.exists():
            print(f"(skipping {name}: {f} not found)", file=sys.stderr)
            continue
        net = cls(512)
        net.load_state_dict(load_file(str(f)))
        net.eval()
        info = json.loads((mdir / f"{name}_{a.artifact}.json").read_text())
        with torch.no_grad():
            out = np.concatenate([net(torch.from_numpy(y[i : i + 500])).numpy() for i in range(0, len(y), 500)])
        label = {"fcnn": "FCNN", "simple_cnn": "SimpleCNN", "complex_cnn": "ComplexCNN (1D-ResCNN)", "rnn": "RNN (LSTM)",
                 "novel_cnn": "NovelCNN"}[name]
        methods[label] = out
        params[label] = count_parameters(net)
        notes[label] = _budget_note(info)
    # AT-AT
    model = ATAT.from_pretrained(a.artifact, a.weights)
    info = model.meta.get("train", {})
    methods["AT-AT (transformer on every window)"] = model.denoise_normalised(y, gated=False)
    lo, hi = float(model.net.tau), float(model.net.tau_hi)
    sides = ([f"corr < {lo:.2f}"] if lo > -1 else []) + ([f"corr > {hi:.3f}"] if hi < 1 else [])
    gate_label = f"AT-AT (gated: {' or '.join(sides) or 'never'})"
    methods[gate_label] = model.denoise_normalised(y, gated=True)
    with torch.no_grad():
        opened = float(np.concatenate([model.net.window_gate(torch.from_numpy(np.asarray(y[i : i + 500], np.float32))).numpy()
                                       for i in range(0, len(y), 500)]).mean())
    for k in list(methods)[-2:]:
        params[k] = model.n_parameters()
        notes[k] = _budget_note(info)

    snrs = sorted(set(snr.tolist()))
    from neurodecode.datasets.denoise import describe

    d = describe(store)
    print("| split | clean EEG segments | artifact segments | mixed pairs | artifact files |")
    print("|---|---|---|---|---|")
    for split in ("train", "val", "test"):
        print(f"| {split} | {d[split + '_clean']['n_windows']} | {d[split + '_noise']['n_windows']} | "
              f"{d[split + '_y']['n_windows']} | {', '.join(d[split + '_noise']['files'])} |")
    print()
    metrics = {"CC": M.correlation_coefficient, "RRMSE_t": M.rrmse_temporal,
               "RRMSE_s": lambda o, c: M.rrmse_spectral(o, c, sfreq=sf)}
    print(f"## {a.artifact.upper()} test set: {len(x) // len(snrs)} pairs x {len(snrs)} SNRs "
          f"(store {Path(store).name}); spectral RRMSE: {M.WELCH_DOC}\n")
    for mname, fn in metrics.items():
        print(f"### {mname} ({'higher' if mname == 'CC' else 'lower'} is better)\n")
        print("| method | " + " | ".join(f"{s:g} dB" for s in snrs) + " | mean |")
        print("|---|" + "---|" * (len(snrs) + 1))
        for name, out in methods.items():
            v = fn(out, x)
            per = [np.nanmean(v[snr == s]) for s in snrs]
            print(f"| {name} | " + " | ".join(f"{q:.3f}" for q in per) + f" | **{np.mean(per):.3f}** |")
        print()
    print("### Parameters and training budget\n")
    print("| method | parameters | training |")
    print("|---|---|---|")
    for name in methods:
        print(f"| {name} | {params.get(name, 0):,} | {notes.get(name, '-')} |")
    print(f"\nFilter cut-off chosen on validation RRMSE_t from {grid}: {best_c:g} Hz.")
    g = info.get("gate", {})
    if g.get("chosen"):
        c = g["chosen"]
        print(f"AT-AT gate thresholds chosen on validation (smallest clean-window opening rate whose gated RRMSE_t is "
              f"within {g['tolerance']:.0%} of the ungated model's): opens on {c['clean_open']:.1%} of clean and "
              f"{c['noisy_open']:.1%} of contaminated validation windows (val RRMSE_t gated {c['rrmse_gated']:.3f}, "
              f"ungated {g['rrmse_ungated']:.3f}); on this test set it opened on {opened:.1%} of the windows.")
    print(f"Every network trained with the same budget of {info.get('cpu_budget_s', '?'):g} CPU-seconds (one thread, "
          f"warm-up + cosine learning rate over the budget, weights of the best validation RRMSE_t), seed {info.get('seed', '?')}.")


if __name__ == "__main__":
    main()
