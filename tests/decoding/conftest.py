"""Fixtures for the decoding tests: a tiny synthetic dataset in the eegmmidb layout."""

import numpy as np
import pytest

MOTOR = ["Fc5.", "Fc3.", "Fc1.", "Fcz.", "Fc2.", "Fc4.", "Fc6.", "C5..", "C3..", "C1..", "Cz..", "C2..", "C4..",
         "C6..", "Cp5.", "Cp3.", "Cp1.", "Cpz.", "Cp2.", "Cp4.", "Cp6."]


def write_run(path, *, n_trials=8, sfreq=160.0, ch_names=MOTOR, seed=0):
    """Write an EDF run like eegmmidb's: T0 rest 4.2 s / T1 or T2 cue 4.1 s, alternating.

    Class T1 has a stronger 12 Hz rhythm on the right-hemisphere channels, T2 on the left ones, so
    that a working classifier can separate them.
    """
    import mne

    rng = np.random.default_rng(seed)
    period = 8.3
    n = int((n_trials * period + 2.0) * sfreq)
    t = np.arange(n) / sfreq
    data = rng.normal(0, 10e-6, (len(ch_names), n))
    onsets, desc, durs = [], [], []
    for k in range(n_trials):
        rest = 1.0 + k * period
        cue = rest + 4.2
        code = "T1" if k % 2 == 0 else "T2"
        onsets += [rest, cue]
        desc += ["T0", code]
        durs += [4.2, 4.1]
        sl = slice(int(cue * sfreq), int((cue + 4.1) * sfreq))
        side = [i for i, c in enumerate(ch_names) if c.rstrip(".")[-1] in "246"] if code == "T1" else \
            [i for i, c in enumerate(ch_names) if c.rstrip(".")[-1] in "135"]
        data[side, sl] += 20e-6 * np.sin(2 * np.pi * 12 * t[sl] + rng.uniform(0, 6.28))
    info = mne.create_info(list(ch_names), sfreq, "eeg")
    raw = mne.io.RawArray(data, info, verbose="error")
    raw.set_annotations(mne.Annotations(onsets, durs, desc))
    path.parent.mkdir(parents=True, exist_ok=True)
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    return path


@pytest.fixture(scope="session")
def mi_folder(tmp_path_factory):
    """Three subjects x runs 4, 8, 12 of synthetic imagery (8 trials per run)."""
    root = tmp_path_factory.mktemp("eegmmidb")
    for s in range(1, 4):
        for r in (4, 8, 12):
            write_run(root / f"S{s:03d}" / f"S{s:03d}R{r:02d}.edf", seed=10 * s + r)
    return root


@pytest.fixture(scope="session")
def write_mi_run():
    """The :func:`write_run` helper (with ``.motor`` = the 21 eegmmidb motor channel names)."""
    write_run.motor = MOTOR
    return write_run
