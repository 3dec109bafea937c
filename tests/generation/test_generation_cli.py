"""``neurodecode reconstruct`` and the reconstruction report."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from neurodecode.cli import main
from neurodecode.generation.hallucination import calibrate
from neurodecode.generation.pipeline import BrainToImagePipeline
from neurodecode.generation.unet import ConditionalUNet


@pytest.fixture
def generator_file(tmp_path):
    torch.manual_seed(0)
    den = ConditionalUNet(sample_size=8, cond_dim=6, n_tokens=2, cross_attention_dim=16, block_out_channels=(8, 16),
                          attention_head_dim=8, norm_num_groups=4).eval()
    pipe = BrainToImagePipeline(den, DDIMScheduler(num_train_timesteps=50))
    pipe.set_progress_bar_config(disable=True)
    traj = pipe(torch.randn(6, 6), num_inference_steps=3, return_trajectory=True).x0_trajectory
    pipe.add_calibration(calibrate(traj, scheduler="DDIMScheduler", num_inference_steps=3, ks=(2,), false_flag_rate=0.5))
    return pipe.save_weights(tmp_path / "gen.safetensors")


def _run(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


def test_reconstruct_from_embeddings_writes_report(tmp_path, generator_file, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "in.npz"
    np.savez(data, embeds=rng.normal(size=(5, 6)).astype("float32"), images=rng.random((5, 16, 16)))
    out = tmp_path / "out"
    args = ["reconstruct", "--decoder", "embeds", "--generator", str(generator_file), "--input", str(data),
            "-o", str(out), "--steps", "3"]
    assert _run(args) == 0
    assert "5 reconstructions" in capsys.readouterr().out
    for name in ("grid.png", "reconstructions.npz", "scores.csv", "summary.json", "report.html"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 5 and summary["n_flagged"] is not None
    assert summary["energy_per_image"]["energy_mj"] > 0
    with np.load(out / "reconstructions.npz") as z:
        assert z["images"].shape == (5, 8, 8, 1) and z["hallucination_score"].shape == (5,)
    assert "Hallucination scores" in (out / "report.html").read_text()
    # Never overwritten unless asked.
    assert _run(args) == 2
    assert "already exist" in capsys.readouterr().err
    assert _run(args + ["--overwrite"]) == 0


def test_reconstruct_bad_inputs(tmp_path, generator_file, capsys):
    data = tmp_path / "in.npz"
    np.savez(data, X=np.zeros((2, 3, 4)))
    base = ["reconstruct", "--generator", str(generator_file), "-o", str(tmp_path / "o"), "--steps", "3"]
    assert _run(base + ["--decoder", "embeds", "--input", str(data)]) == 1
    assert "'embeds'" in capsys.readouterr().err
    assert _run(base + ["--decoder", "embeds", "--input", str(tmp_path / "nope.npz")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert _run(base + ["--decoder", "embeds", "--input", str(data), "--modality", "ecog"]) == 2
    assert "--modality" in capsys.readouterr().err
    np.savez(data, embeds=np.zeros((2, 6), "float32"))
    assert _run(["reconstruct", "--decoder", "embeds", "--generator", "no-such-model", "--input", str(data),
                 "-o", str(tmp_path / "o")]) == 1
    assert "no-such-model" in capsys.readouterr().err
