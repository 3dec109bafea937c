"""NeuroPictor from files: train both stages, then reconstruct with the shared backend."""

import json

import h5py
import numpy as np
import pytest
import torch

from neurodecode.datasets.fmri import FMRIResponses, write_nsd_responses
from neurodecode.training.neuropictor_system import load_checkpoint, reconstruct_fmri, train_from_config
from neurodecode.utils import UsageError

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(num_workers|does not have many workers|LeafSpec|isinstance.*treespec|Total length of).*:UserWarning"
)

ENC = dict(n_tokens=4, d_model=16, depth=1, n_heads=2, n_cond_tokens=2, map_channels=3, map_size=4)


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    n_img, d = 20, 10
    images = rng.random((n_img, 1, 16, 16)).astype(np.float32)
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f["images"] = images
        f["embeddings"] = rng.standard_normal((n_img, d)).astype(np.float32)
    subs = [FMRIResponses(rng.standard_normal((12, 25)), rng.integers(0, 16, 12), "sub-01"),
            FMRIResponses(rng.standard_normal((8, 15)), rng.integers(0, 16, 8), "sub-02")]
    write_nsd_responses(tmp_path / "train.h5", subs)
    # test: two repeats of images 16..19 for sub-02
    write_nsd_responses(tmp_path / "test.h5", FMRIResponses(rng.standard_normal((8, 15)), np.repeat(np.arange(16, 20), 2), "sub-02"))
    return tmp_path


def test_train_stages_and_reconstruct(files):
    from diffusers import DDIMScheduler

    from neurodecode.generation.pipeline import BrainToImagePipeline
    from neurodecode.generation.unet import ConditionalUNet

    pre = train_from_config("pretrain", files / "train.h5", files / "images.h5", files / "pre.safetensors",
                            epochs=1, batch_size=4, encoder_kwargs=ENC)
    sys_pre = load_checkpoint(pre)
    assert sorted(sys_pre.encoder.n_voxels) == ["sub-01", "sub-02"] and sys_pre.extra["stage"] == "pretrain"
    with pytest.raises(UsageError, match="needs both"):
        train_from_config("refine", files / "train.h5", files / "images.h5", files / "ref.safetensors")
    with pytest.raises(UsageError, match="'stage'"):
        train_from_config("finetune", files / "train.h5", files / "images.h5", files / "x.safetensors")
    ref = train_from_config("refine", files / "train.h5", files / "images.h5", files / "ref.safetensors",
                            subject="sub-02", init=pre, epochs=1, batch_size=4)
    sys_ref = load_checkpoint(ref)
    # refinement changed sub-02's input layer but not sub-01's
    assert torch.equal(sys_ref.encoder.subject_layers["sub-01"].linear.weight, sys_pre.encoder.subject_layers["sub-01"].linear.weight)
    assert not torch.equal(sys_ref.encoder.subject_layers["sub-02"].linear.weight, sys_pre.encoder.subject_layers["sub-02"].linear.weight)

    den = ConditionalUNet(sample_size=8, in_channels=1, cond_dim=10, n_tokens=2, cross_attention_dim=16,
                          block_out_channels=(16, 16), attention_levels=(False, True), attention_head_dim=8,
                          norm_num_groups=8, spatial_channels=3)
    pipe = BrainToImagePipeline(den, DDIMScheduler(num_train_timesteps=50))
    pipe.save_weights(files / "gen.safetensors")
    out = files / "recon"
    report = reconstruct_fmri(ref, files / "gen.safetensors", files / "test.h5", out, num_inference_steps=2,
                              images=files / "images.h5")
    assert [it["stim_id"] for it in report["images"]] == [16, 17, 18, 19]
    assert all(it["n_repeats"] == 2 for it in report["images"])
    assert all(np.isfinite(it["hallucination_score"]) for it in report["images"])
    assert (out / "stim-00016.png").is_file()
    assert json.loads((out / "report.json").read_text())["levels"] == ["high", "low"]
    assert -1 <= report["metrics"]["PixCorr"] <= 1
    with pytest.raises(UsageError, match="not empty"):
        reconstruct_fmri(ref, files / "gen.safetensors", files / "test.h5", out, num_inference_steps=2)
    # the same through the command line (reconstruct --modality fmri), with the seen images in the input file
    from neurodecode.cli import main

    with h5py.File(files / "test.h5", "a") as f:
        f["images"] = np.random.default_rng(1).random((20, 16, 16))
    with pytest.raises(SystemExit) as exc:
        main(["reconstruct", "--modality", "fmri", "--decoder", str(ref), "--generator", str(files / "gen.safetensors"),
              "--input", f"{files / 'test.h5'}#sub-02", "-o", str(files / "cli"), "--steps", "2"])
    assert exc.value.code == 0
    summary = json.loads((files / "cli" / "summary.json").read_text())
    assert "sub-02" in json.dumps(summary) and (files / "cli" / "report.html").is_file()
    # a checkpoint without the subject's input layer is refused with a clear message
    write_nsd_responses(files / "other.h5", FMRIResponses(np.zeros((2, 5)), [0, 1], "sub-09"))
    with pytest.raises(UsageError, match="no input layer"):
        reconstruct_fmri(ref, files / "gen.safetensors", files / "other.h5", files / "r2", num_inference_steps=2)


@pytest.mark.parametrize("name", ["neuropictor_pretrain.yaml", "neuropictor_refine.yaml"])
def test_pipeline_configs_instantiate(name, files, monkeypatch):
    import sys
    from pathlib import Path

    import yaml
    from lightning.pytorch.cli import LightningCLI

    from neurodecode.training.neuropictor_system import NeuroPictorDataModule, NeuroPictorSystem, save_checkpoint

    cfg = yaml.safe_load((Path(__file__).parents[2] / "pipelines" / name).read_text())
    enc = cfg["model"]["init_args"]["encoder"]["init_args"]
    if "init_weights" in cfg["model"]["init_args"]:
        # a pre-trained checkpoint of the same architecture to start from
        from neurodecode.decoders.neuropictor import NeuroPictorEncoder

        pre = NeuroPictorSystem(NeuroPictorEncoder(**enc), low_channels=1, low_size=8, low_readout=False)
        cfg["model"]["init_args"]["init_weights"] = str(save_checkpoint(pre, files / "pre.safetensors"))
    cfg["trainer"]["callbacks"][0]["init_args"]["path"] = str(files / "out.safetensors")
    monkeypatch.setattr(sys, "argv", ["neurodecode"])  # pytest's own arguments are not the CLI's
    cli = LightningCLI(NeuroPictorSystem, NeuroPictorDataModule, subclass_mode_model=True, subclass_mode_data=True,
                       run=False, args=cfg, save_config_callback=None)
    assert cli.model.encoder.n_voxels == enc["n_voxels"]
    assert cli.model.hparams.low_readout is False
    # what the export callback writes loads back (LightningCLI adds non-argument hyper-parameters)
    from neurodecode.training.neuropictor_system import load_checkpoint

    back = load_checkpoint(save_checkpoint(cli.model, files / "exported.safetensors"))
    assert back.encoder.n_voxels == enc["n_voxels"] and back.hparams.low_size == 8
    if "init_weights" in cfg["model"]["init_args"]:
        torch.testing.assert_close(cli.model.encoder.transformer.layers[0].linear1.weight,
                                   pre.encoder.transformer.layers[0].linear1.weight)
