"""Benchmark builder: mixing convention, loaders on real files, leakage-free recipes, reproducibility."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from neurodecode.datasets import denoise as D
from neurodecode.utils import InputFileError

RECIPES = Path(__file__).resolve().parents[2] / "datasets"


def test_mix_pairs_reaches_the_requested_snr():
    rng = np.random.default_rng(1)
    clean, noise = rng.standard_normal((5, 512)), 3 * rng.standard_normal((5, 512))
    snr = np.array([-7.0, -3.0, 0.0, 1.0, 2.0])
    x, y, sd = D.mix_pairs(clean, noise, snr)
    n = y - x  # lambda * noise, scaled by 1 / std(y)
    rms = lambda a: np.sqrt((a**2).mean(-1))  # noqa: E731
    assert 10 * np.log10(rms(x) / rms(n)) == pytest.approx(snr, abs=1e-4)
    assert y.std(-1) == pytest.approx(np.ones(5), abs=1e-5)
    assert x * sd[:, None] == pytest.approx(clean.astype(np.float32), abs=1e-4)


@pytest.mark.parametrize("name", ["denoise_emg", "denoise_eog"])
def test_recipes_split_without_leakage(name):
    r = D.load_recipe(RECIPES / f"{name}.yaml")
    sp = r["splits"]
    subj = lambda files: {f.split("/")[1] for f in files if f.startswith("eegmmidb")}  # noqa: E731
    assert not subj(sp["test"]["clean"]) & subj(sp["train"]["clean"])
    assert not subj(sp["test"]["clean"]) & subj(sp["val"]["clean"])
    assert not set(sp["test"]["noise"]) & set(sp["train"]["noise"])
    # train and val noise come from the same files but disjoint spans
    assert sp["train"]["noise_span"][1] <= sp["val"]["noise_span"][0]
    every = {f.split("::")[0] for s in sp.values() for f in s["clean"] + s["noise"]}
    assert every <= set(r["sha256"])


def test_loaders_on_real_files(data_file):
    data_file("eegmmidb", "S001", "S001R04.edf")
    clean, meta = D.load_clean_segments(["eegmmidb/S001/S001R04.edf"], channels_per_segment=2)
    assert clean.shape[1] == 512 and len(clean) == len(meta) > 10
    assert np.allclose(clean.std(-1), 1.0)
    assert not any(m["channel"].upper().startswith(("FP", "AF")) for m in meta)
    data_file("emgdb_physionet", "emg_healthy.dat")
    emg, _ = D.load_emg_sources(["emgdb_physionet/emg_healthy.dat"], stride_s=1.0)
    assert emg.shape[1] == 512 and len(emg) > 3
    data_file("neurokit_eog", "eog_100hz.csv")
    eog, emeta = D.load_eog_sources(["neurokit_eog/eog_100hz.csv"])
    assert eog.shape[1] == 512 and len(eog) > 10
    # EOG is band-limited to 0.3-10 Hz: little power above 15 Hz
    spec = np.abs(np.fft.rfft(eog, axis=-1)) ** 2
    f = np.fft.rfftfreq(512, 1 / 256)
    assert spec[:, f > 15].sum() / spec.sum() < 0.01


def _tiny_recipe():
    return {
        "name": "tiny", "builder": "denoise_single", "artifact": "emg", "sfreq": 256, "segment_s": 2.0, "seed": 3,
        "combin_num": 2,
        "clean_options": {"channels_per_segment": 1},
        "noise_options": {"stride_s": 2.0},
        "splits": {
            "train": {"clean": ["eegmmidb/S001/S001R01.edf"], "noise": ["emgdb_physionet/emg_healthy.dat"],
                      "noise_span": [0.0, 0.8]},
            "val": {"clean": ["eegmmidb/S003/S003R01.edf"], "noise": ["emgdb_physionet/emg_healthy.dat"],
                    "noise_span": [0.8, 1.0], "max_clean": 5},
            "test": {"clean": ["eegmmidb/S003/S003R02.edf"], "noise": ["emgdb_physionet/emg_myopathy.dat"],
                     "max_clean": 5},
        },
    }


def test_build_is_bit_for_bit_reproducible(data_file, tmp_path):
    for f in ("S001/S001R01.edf", "S003/S003R01.edf", "S003/S003R02.edf"):
        data_file("eegmmidb", *f.split("/"))
    data_file("emgdb_physionet", "emg_myopathy.dat")
    r = _tiny_recipe()
    a = D.build_single_channel(r, tmp_path / "a.h5")
    b = D.build_single_channel(r, tmp_path / "b.h5")
    ha, hb = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b))
    assert ha == hb
    x, y, lab = D.load_benchmark(a, "test")
    assert x.shape == y.shape and x.shape[1] == 512
    assert sorted(set(lab[:, 0].tolist())) == list(range(-7, 3))
    xt, yt, lt = D.load_benchmark(a, "train")
    assert lt[:, 0].min() >= -7 and lt[:, 0].max() <= 2


def test_wrong_checksum_is_refused(data_file, tmp_path):
    data_file("emgdb_physionet", "emg_healthy.dat")
    r = _tiny_recipe()
    r["sha256"] = {"emgdb_physionet/emg_healthy.dat": "0" * 64}
    with pytest.raises(InputFileError, match="sha256"):
        D.build_single_channel(r, tmp_path / "c.h5")


def test_dataset_cli_rejects_a_broken_recipe(tmp_path, capsys):
    from neurodecode.cli import main

    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nbuilder: something_else\n")
    with pytest.raises(SystemExit) as exc:
        main(["dataset", "build", str(bad), "-o", str(tmp_path / "o.h5")])
    assert exc.value.code == 1
    assert "builder" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()
