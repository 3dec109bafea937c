"""AT-AT training recipe pieces: the CPU-budget callback, the LightningCLI configs and the gated apply."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from neurodecode.artifacts import apply as A
from neurodecode.artifacts.atat import ATAT, ATATNet

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
TINY = dict(ae_widths=(4, 4), d_model=16, n_heads=2, n_layers=1, ff=32, stem=4)


def test_cpu_budget_schedule_and_stop():
    from neurodecode.training.atat_system import CPUBudget

    cb = CPUBudget(cpu_budget_s=100.0, warmup_frac=0.1, final_lr_frac=0.02)
    clock = {"t": 0.0}
    cb._clock = lambda: clock["t"]
    assert cb.lr_factor(0.0) == pytest.approx(0.05)
    assert cb.lr_factor(0.1) == pytest.approx(1.0)
    assert cb.lr_factor(0.55) == pytest.approx(0.51)  # half-way through the cosine
    assert cb.lr_factor(1.0) == pytest.approx(0.02)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    trainer = SimpleNamespace(optimizers=[opt], should_stop=False)
    cb.on_fit_start(trainer, None)
    clock["t"] = 55.0
    cb.on_train_batch_start(trainer, None)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.51e-3)
    cb.on_train_batch_end(trainer)
    assert not trainer.should_stop
    clock["t"] = 100.5
    cb.on_train_batch_end(trainer)
    assert trainer.should_stop and cb.steps == 2


@pytest.mark.parametrize("artifact", ["emg", "eog"])
def test_atat_pipeline_is_a_lightning_config(artifact, monkeypatch):
    from lightning.pytorch.cli import LightningCLI

    from neurodecode.training.atat_system import ATATSystem, CPUBudget, DenoiseDataModule

    monkeypatch.setattr("sys.argv", ["lightning"])
    cli = LightningCLI(run=False, args=["--config", str(PIPELINES / f"atat_{artifact}.yaml")], save_config_callback=None)
    assert isinstance(cli.model, ATATSystem) and isinstance(cli.datamodule, DenoiseDataModule)
    (budget,) = [c for c in cli.trainer.callbacks if isinstance(c, CPUBudget)]
    assert budget.cpu_budget_s == 200
    assert cli.datamodule.store.endswith(f"denoise_{artifact}.h5")


class _BurstGate(ATATNet):
    """Gate open only on spans holding a sample beyond 6 std (a stand-in for a trained autoencoder)."""

    def gate(self, y):
        return y.reshape(len(y), -1, self.span).abs().amax(-1) > 6


def test_apply_runs_the_transformer_only_around_gated_spans():
    torch.manual_seed(0)
    model = ATAT(_BurstGate(tau=0.0, **TINY).eval(), "emg", 256.0, 1.0)
    rng = np.random.default_rng(0)
    sig = rng.standard_normal((3, 256 * 30)).astype(np.float32)
    sig[1, 5000:5010] += 40.0  # one burst on row 1
    removed, frac = A._denoise_rows(model, sig)
    assert np.all(removed[[0, 2]] == 0) and frac[0] == 0 and frac[2] == 0
    touched = np.flatnonzero(removed[1] != 0)
    assert touched.size and touched.min() >= 5000 - 768 and touched.max() < 5010 + 768
    assert 0 < frac[1] < 0.1
    # where the gate is open everywhere, the gated path equals the plain transformer path
    full, _ = A._denoise_rows(model, sig, gated=False)
    model.net.gate = lambda y: torch.ones(len(y), 8, dtype=torch.bool)
    gated, frac = A._denoise_rows(model, sig)
    assert np.all(frac == 1)
    assert np.allclose(gated, full, atol=1e-4)
