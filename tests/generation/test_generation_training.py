"""Training system, split and pipeline configs of the generation backend."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from neurodecode.generation.spiking import SpikingUNet
from neurodecode.generation.unet import ConditionalUNet
from neurodecode.training.generation_system import GenerationDataModule, GenerationSystem, image_split
from neurodecode.utils import UsageError

ROOT = Path(__file__).resolve().parents[2]


def test_image_split_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(4), 50)
    s = image_split(labels, calib_fraction=0.1, test_fraction=0.2, seed=3)
    for c in range(4):
        part = s[labels == c]
        assert (part == "test").sum() == 10 and (part == "calib").sum() == 5 and (part == "train").sum() == 35
    assert not np.array_equal(s, image_split(labels, seed=4))
    with pytest.raises(UsageError, match="fractions"):
        image_split(labels, calib_fraction=0.5, test_fraction=0.6)


@pytest.mark.parametrize("spiking", [False, True])
def test_training_reduces_loss_and_tsm_phase_freezes_weights(spiking):
    import lightning as L

    torch.manual_seed(0)
    kw = dict(sample_size=8, cond_dim=6, n_tokens=2, cross_attention_dim=16, block_out_channels=(8, 16), attention_head_dim=8)
    den = SpikingUNet(**kw, time_steps=2) if spiking else ConditionalUNet(**kw, norm_num_groups=4)
    rng = np.random.default_rng(0)
    n = 64
    lab = np.arange(n) % 2
    images = np.where(lab[:, None, None] == 1, np.eye(8)[None], np.fliplr(np.eye(8))[None]).astype("float32")
    embeds = np.c_[lab, 1 - lab, rng.normal(size=(n, 4)) * 0.1].astype("float32")
    dm = GenerationDataModule(images, embeds, np.array(["train"] * n), batch_size=16)
    system = GenerationSystem(den, num_train_timesteps=100, lr=5e-3, warmup_steps=2,
                              tsm_finetune_fraction=0.25 if spiking else 0.0)
    first = system.loss(dm.part("train")).item()
    w_before = {k: v.clone() for k, v in den.state_dict().items()}
    trainer = L.Trainer(max_steps=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(system, dm)
    torch.manual_seed(1)
    assert system.loss(dm.part("train")).item() < first
    # The training set's conditioning statistics were stored in the denoiser.
    torch.testing.assert_close(den.cond_mean, torch.from_numpy(embeds).mean(0))
    if spiking:
        assert system._tsm_phase
        trainable = [p for p in den.parameters() if p.requires_grad]
        assert len(trainable) == len(den.tsm_parameters())
        assert any(not torch.equal(p, torch.ones_like(p)) for p in den.tsm_parameters())
    assert any(not torch.equal(w_before[k], v) for k, v in den.state_dict().items())


@pytest.mark.parametrize("kind", ["ann", "spiking"])
def test_pipeline_yaml_matches_the_benchmark_configs(kind):
    import sys

    from lightning.pytorch.cli import instantiate_class

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from generation_common import ANN_CONFIG, SNN_CONFIG
    finally:
        sys.path.pop(0)
    cfg = yaml.safe_load((ROOT / "pipelines" / f"generation_{kind}_digits.yaml").read_text())
    den_cfg = cfg["model"]["init_args"]["denoiser"]
    den = instantiate_class((), den_cfg)
    assert isinstance(den, ConditionalUNet if kind == "ann" else SpikingUNet)
    expected = ANN_CONFIG if kind == "ann" else SNN_CONFIG
    for k, v in expected.items():
        got = den.config[k]
        assert (list(got) if isinstance(got, (list, tuple)) else got) == (list(v) if isinstance(v, (list, tuple)) else v), k


def test_spiking_preconditioned_output():
    from diffusers import DDPMScheduler

    from neurodecode.generation.energy import OpCounter

    kw = dict(sample_size=8, cond_dim=6, n_tokens=2, cross_attention_dim=16, block_out_channels=(8, 16),
              attention_head_dim=8, time_steps=2)
    torch.manual_seed(0)
    plain = SpikingUNet(**kw)
    torch.manual_seed(0)
    pre = SpikingUNet(**kw, output_skip=True, sigma_data=0.5, num_train_timesteps=100)
    # Same parameters: the preconditioning adds no weights (files of either kind load into the other).
    pre.load_state_dict(plain.state_dict())
    x, e = torch.randn(2, 1, 8, 8), torch.randn(2, 6)
    ab = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2").alphas_cumprod
    for t in (1, 60, 99):
        tt = torch.full((2,), t)
        a2s2, s2 = ab[t] * 0.25, 1 - ab[t]
        expected = s2.sqrt() / (a2s2 + s2) * x + (a2s2 / (a2s2 + s2)).sqrt() * plain(x, tt, e)
        torch.testing.assert_close(pre(x, tt, e), expected, rtol=1e-4, atol=1e-5)
    # At the noisiest step the prediction is almost the input itself, whatever the spikes say.
    assert pre.precondition.c_out[-1] < 0.05 and abs(pre.precondition.c_skip[-1] - 1) < 0.05
    with OpCounter(pre) as c1:
        pre(x, torch.tensor([5, 5]), e)
    with OpCounter(plain) as c0:
        plain(x, torch.tensor([5, 5]), e)
    assert c1.count.macs - c0.count.macs == pytest.approx(2 * x.numel())
    with pytest.raises(UsageError, match="sigma_data"):
        SpikingUNet(**kw, output_skip=True, sigma_data=0.0)
    with pytest.raises(UsageError, match="schedule"):
        GenerationSystem(pre, num_train_timesteps=1000)


def test_distillation_from_a_teacher():
    kw = dict(sample_size=8, cond_dim=6, n_tokens=2, cross_attention_dim=16, block_out_channels=(8, 16), attention_head_dim=8)
    torch.manual_seed(0)
    teacher = ConditionalUNet(**kw, norm_num_groups=4)
    student = ConditionalUNet(**kw, norm_num_groups=4)
    batch = {"images": torch.randn(4, 1, 8, 8), "embeds": torch.randn(4, 6)}
    # Student = teacher, full weight on the teacher term: the loss is exactly zero.
    student.load_state_dict(teacher.state_dict())
    sys1 = GenerationSystem(student, num_train_timesteps=50, cond_dropout=0.0, teacher=teacher, distill_weight=1.0)
    assert sys1.loss(batch).item() == 0.0
    # The teacher is frozen and not part of the trained module.
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not any(n.startswith("_teacher") for n, _ in sys1.named_parameters())
    sys0 = GenerationSystem(student, num_train_timesteps=50, cond_dropout=0.0, teacher=teacher, distill_weight=0.0)
    assert sys0.loss(batch).item() > 0
    with pytest.raises(UsageError, match="distill_weight"):
        GenerationSystem(student, distill_weight=0.5)
