"""``neurodecode synth`` end to end on tiny models, training pipeline and report."""

import json

import numpy as np
import pytest
from safetensors import safe_open

from neurodecode.cli import main
from neurodecode.datasets.artifact_windows import load_artifact_windows

TINY_WGAN = {
    "seed_everything": 0,
    "model": {
        "class_path": "neurodecode.artifacts.synthesis.wgan_gp.ConditionalWGANGP",
        "init_args": {"n_chans": 8, "n_times": 256, "n_classes": 3, "latent_dim": 8, "width": 4},
    },
    "system": {"class_path": "neurodecode.training.synthesis_system.WGANGPSystem", "init_args": {"n_critic": 2}},
    "data": {"split": "train", "batch_size": 16},
    "trainer": {"max_minutes": 0.02},
}
TINY_DDPM = {
    "seed_everything": 0,
    "model": {
        "class_path": "neurodecode.artifacts.synthesis.ddpm.UNet1DConditional",
        "init_args": {"n_chans": 8, "n_times": 256, "base_channels": 8, "channel_mults": [1, 2], "emb_dim": 16},
    },
    "system": {"class_path": "neurodecode.training.synthesis_system.DiffusionSystem", "init_args": {}},
    "data": {"split": "train", "batch_size": 16},
    "trainer": {"max_minutes": 0.02},
}


def _run(*args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return exc.value.code


@pytest.fixture(scope="module")
def tiny_models(tiny_store, tmp_path_factory):
    from neurodecode.training.synthesis_system import train_from_config

    d = tmp_path_factory.mktemp("models")
    out = {}
    for name, cfg in (("wgan", TINY_WGAN), ("ddpm", TINY_DDPM)):
        out[name] = d / f"{name}.safetensors"
        s = train_from_config(cfg, store=tiny_store, out=out[name], snapshot_dir=d / f"{name}_snaps", snapshot_every=1)
        assert s["steps"] > 0
    return out


def test_training_saves_loadable_snapshots(tiny_models):
    from neurodecode.artifacts.synthesis.wgan_gp import ConditionalWGANGP

    snaps = sorted((tiny_models["wgan"].parent / "wgan_snaps").glob("step*.safetensors"))
    assert snaps, "no snapshot written"
    steps = [int(p.stem[4:]) for p in snaps]
    assert steps == sorted(set(steps)) and steps[0] >= 1
    X = ConditionalWGANGP.load(snaps[0]).sample(["eye"] * 2, seed=0)
    assert X.shape == (2, 8, 256) and np.isfinite(X).all()


def test_training_writes_weights_with_provenance(tiny_models, tiny_store):
    X, _, _ = load_artifact_windows(tiny_store, split="train")
    with safe_open(str(tiny_models["ddpm"]), framework="pt") as f:
        meta = f.metadata()
        scale = f.get_tensor("channel_scale").numpy()
    assert json.loads(meta["training"])["n_train_windows"] == len(X)
    assert np.allclose(scale, X.std(axis=(0, 2)), rtol=1e-4)  # scaling measured on train windows
    from neurodecode.artifacts.synthesis.wgan_gp import minmax_scale

    _, lo, hi = minmax_scale(X)
    with safe_open(str(tiny_models["wgan"]), framework="pt") as f:
        stats = f.get_tensor("log_range_stats").numpy()
    r = np.log(hi - lo)
    assert np.allclose(stats, [r.mean(), r.std()], rtol=1e-4)  # range code standardised on train windows


def test_ddpm_warm_start_into_window_scale(tiny_models, tiny_store, tmp_path):
    import copy

    from neurodecode.artifacts.synthesis.ddpm import UNet1DConditional
    from neurodecode.training.synthesis_system import train_from_config

    cfg = copy.deepcopy(TINY_DDPM)
    cfg["model"]["init_args"]["window_scale"] = True
    out = tmp_path / "ws.safetensors"
    s = train_from_config(cfg, store=tiny_store, out=out, init_weights=tiny_models["ddpm"])
    assert s["total_steps"] > s["steps"] > 0  # the earlier run is counted
    m = UNet1DConditional.load(out)
    X, _, _ = load_artifact_windows(tiny_store, split="train")
    assert m.config.window_scale and m.conv_in.in_channels == 16
    assert np.allclose(m.log_scale_mean.numpy(), np.log(X.std(axis=2)).mean(0), rtol=1e-4)
    assert m.sample(["muscle"], num_inference_steps=2, seed=0).shape == (1, 8, 256)


@pytest.mark.parametrize("model,extra", [("wgan", []), ("ddpm", ["--guidance", "2.0", "--steps", "2"])])
def test_synth_writes_labelled_store(tiny_models, tmp_path, model, extra):
    out = tmp_path / "eye.h5"
    code = _run("synth", "--model", model, "--label", "eye", "--n", "5", "-o", str(out),
                "--weights", str(tiny_models[model]), *extra)
    assert code == 0
    X, y, s = load_artifact_windows(out)
    assert X.shape == (5, 8, 256) and (y == 1).all() and set(s) == {"synthetic"}
    assert np.isfinite(X).all()
    # never overwrite unless asked
    assert _run("synth", "--model", model, "--label", "eye", "--n", "5", "-o", str(out),
                "--weights", str(tiny_models[model]), *extra) == 2


def test_synth_usage_errors(tmp_path, capsys):
    assert _run("synth", "--model", "gan", "--label", "eye", "-o", str(tmp_path / "a.h5")) == 2
    assert "'model' parameter" in capsys.readouterr().err
    assert _run("synth", "--model", "ar", "--label", "eye", "-o", str(tmp_path / "a.h5")) == 2
    assert "--store" in capsys.readouterr().err
    assert _run("synth", "--model", "wgan", "--label", "blink", "-o", str(tmp_path / "a.h5")) == 2
    assert _run("synth", "--model", "wgan", "--label", "eye", "--n", "0", "-o", str(tmp_path / "a.h5")) == 2
    assert not (tmp_path / "a.h5").exists()


def test_ar_synth_with_report(tiny_store, tmp_path):
    out, rep = tmp_path / "m.h5", tmp_path / "m.html"
    code = _run("synth", "--model", "ar", "--label", "muscle", "--n", "20", "-o", str(out),
                "--store", str(tiny_store), "--report", str(rep))
    assert code == 0
    html = rep.read_text()
    assert "Fidelity table" in html and "mmd2" in html and "PSD muscle" in html


def test_shipped_weights_load_and_sample():
    from neurodecode.artifacts.synthesis.ddpm import UNet1DConditional
    from neurodecode.artifacts.synthesis.wgan_gp import ConditionalWGANGP

    w = ConditionalWGANGP.load()
    d = UNet1DConditional.load()
    Xw = w.sample(["clean", "eye"], seed=0)
    Xd = d.sample(["clean", "eye"], seed=0, num_inference_steps=2, guidance=2.0)
    assert Xw.shape == Xd.shape == (2, 8, 256)
    assert np.isfinite(Xw).all() and np.isfinite(Xd).all()
