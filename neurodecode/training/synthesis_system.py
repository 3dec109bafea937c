"""Lightning systems that train the artifact synthesis models, and the YAML pipeline runner.

``WGANGPSystem`` alternates ``n_critic`` critic steps (Wasserstein loss + gradient penalty)
with one generator step (manual optimisation). ``DiffusionSystem`` minimises the diffusion
loss of :class:`~neurodecode.artifacts.synthesis.ddpm.UNet1DConditional` with label dropout
and keeps an exponential moving average of the weights, which is what gets exported.

Run a pipeline::

    neurodecode synth train pipelines/synthesis_ddpm.yaml --store windows.h5 -o model.safetensors
"""

import copy
import importlib
import json
import logging
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from ..utils import UsageError

logger = logging.getLogger(__name__)


class ArtifactWindowsDataModule(L.LightningDataModule):
    """Training windows of one split of an artifact-window store, as ``(x, y)`` batches.

    Parameters
    ----------
    path : str
        HDF5 store from :func:`neurodecode.datasets.artifact_windows.write_artifact_windows`.
    split : str
        Which subject-wise split to train on.
    batch_size : int
    seed : int
        Shuffling seed.
    """

    def __init__(self, path, split="train", batch_size=32, seed=0):
        super().__init__()
        self.path, self.split, self.batch_size, self.seed = path, split, batch_size, seed
        self.X = self.y = None

    def setup(self, stage=None):
        if self.X is None:
            from ..datasets.artifact_windows import load_artifact_windows

            X, y, _ = load_artifact_windows(self.path, split=self.split)
            self.X, self.y = torch.as_tensor(X), torch.as_tensor(y)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(TensorDataset(self.X, self.y), batch_size=self.batch_size, shuffle=True, drop_last=True,
                          generator=g)


class WGANGPSystem(L.LightningModule):
    """Train a :class:`ConditionalWGANGP` (paper settings: GP lambda 10, n_critic 5, Adam(0, 0.9)).

    Parameters
    ----------
    model : ConditionalWGANGP
    lr : float
    betas : tuple of float
    n_critic : int
    gp_lambda : float
    """

    def __init__(self, model, lr=2e-4, betas=(0.0, 0.9), n_critic=5, gp_lambda=10.0):
        super().__init__()
        self.model = model
        self.lr, self.betas, self.n_critic, self.gp_lambda = lr, tuple(betas), n_critic, gp_lambda
        self.automatic_optimization = False
        self.history = []

    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.model.generator.parameters(), lr=self.lr, betas=self.betas)
        opt_d = torch.optim.Adam(self.model.critic.parameters(), lr=self.lr, betas=self.betas)
        return opt_g, opt_d

    def training_step(self, batch, batch_idx):
        from ..artifacts.synthesis.wgan_gp import gradient_penalty, minmax_scale

        opt_g, opt_d = self.optimizers()
        x, y = batch
        x, lo, hi = minmax_scale(x)
        s = self.model.encode_range(lo, hi)
        G, D = self.model.generator, self.model.critic
        z = torch.randn(len(x), self.model.config.latent_dim)
        with torch.no_grad():
            fake, fake_s = G(z, y)
        gp = gradient_penalty(D, (x, s), (fake, fake_s), y)
        w_dist = D(x, y, s).mean() - D(fake, y, fake_s).mean()
        loss_d = -w_dist + self.gp_lambda * gp
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        rec = {"step": int(self.global_step), "w_dist": w_dist.item(), "gp": gp.item()}
        # one generator step for every n_critic critic steps
        if (batch_idx + 1) % self.n_critic == 0:
            z = torch.randn(len(x), self.model.config.latent_dim)
            fake, fake_s = G(z, y)
            loss_g = -D(fake, y, fake_s).mean()
            opt_g.zero_grad()
            self.manual_backward(loss_g)
            opt_g.step()
            rec["loss_g"] = loss_g.item()
        if batch_idx % 50 == 0:
            self.history.append(rec)
            logger.info("wgan %s", rec)

    def export_model(self):
        return self.model


class DiffusionSystem(L.LightningModule):
    """Train a :class:`UNet1DConditional` with label dropout; export its EMA weights.

    Parameters
    ----------
    model : UNet1DConditional
    lr : float
    p_uncond : float
        Probability of replacing the label by the null token (classifier-free guidance).
    ema_decay : float
    weight_decay : float
    """

    def __init__(self, model, lr=1e-3, p_uncond=0.1, ema_decay=0.995, weight_decay=0.0):
        super().__init__()
        self.model = model
        # kept out of the module tree (a list) so Lightning neither trains nor checkpoints it twice
        self._ema = [copy.deepcopy(model).eval().requires_grad_(False)]
        self.lr, self.p_uncond, self.ema_decay, self.weight_decay = lr, p_uncond, ema_decay, weight_decay
        self.history = []

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.model.training_loss(self.model.scale(x), y, p_uncond=self.p_uncond)
        if batch_idx % 50 == 0:
            self.history.append({"step": int(self.global_step), "loss": loss.item()})
            logger.info("ddpm step %d loss %.4f", self.global_step, loss.item())
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        with torch.no_grad():
            for pe, pm in zip(self._ema[0].parameters(), self.model.parameters()):
                pe.lerp_(pm, 1 - self.ema_decay)
            for be, bm in zip(self._ema[0].buffers(), self.model.buffers()):
                be.copy_(bm)

    def export_model(self):
        return self._ema[0]


def _instantiate(spec, **extra):
    """Build ``class_path(**init_args, **extra)`` from a LightningCLI-style dict."""
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise UsageError(f"Expected a mapping with 'class_path' (and optional 'init_args'), got {spec!r}.")
    mod, _, name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(mod), name)
    return cls(**(spec.get("init_args") or {}), **extra)


class _Snapshots(L.Callback):
    """Save the exported model every ``every`` optimiser steps (for checkpoint choice on validation)."""

    def __init__(self, folder, every):
        self.folder, self.every, self.saved = Path(folder), int(every), []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = int(trainer.global_step)
        # global_step may advance by more than one per batch (two optimisers): save on each new multiple
        if step // self.every > (self.saved[-1][0] // self.every if self.saved else 0):
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"step{step:06d}.safetensors"
            pl_module.export_model().save(path, overwrite=True, extra={"snapshot_step": step})
            self.saved.append((step, str(path)))


def train_from_config(config, *, store, out, max_minutes=None, seed=None, overwrite=False, init_weights=None,
                      snapshot_dir=None, snapshot_every=None):
    """Train one synthesis model as described by a pipeline config and save its weights.

    Parameters
    ----------
    config : dict or path-like
        Parsed ``pipelines/synthesis_*.yaml`` (keys ``seed_everything``, ``model``, ``system``,
        ``data``, ``trainer``).
    store : path-like
        Artifact-window store; the ``train`` split is used.
    out : path-like
        Output ``.safetensors``.
    max_minutes : float | None
        Wall-clock training budget (overrides ``trainer.max_minutes``).
    init_weights : path-like | None
        Continue from weights saved by an earlier run (same pipeline); optimiser state restarts.
        The earlier runs' summaries are kept in the new file's metadata.
    snapshot_dir, snapshot_every : path-like, int | None
        Also save the exported model every ``snapshot_every`` optimiser steps into ``snapshot_dir``
        (``stepNNNNNN.safetensors``), so that a checkpoint can be chosen on the validation split.

    Returns
    -------
    dict
        Training summary (steps, seconds, loss history) also stored in the weights' metadata.
    """
    import yaml

    from ..utils import seed_everything

    if not isinstance(config, dict):
        config = yaml.safe_load(Path(config).read_text())
    seed = int(config.get("seed_everything", 0) if seed is None else seed)
    seed_everything(seed)
    torch.set_num_threads(1)
    dm = ArtifactWindowsDataModule(str(store), **(config.get("data") or {}), seed=seed)
    dm.setup()
    model = _instantiate(config["model"])
    Xtr, ytr = dm.X.numpy(), dm.y.numpy()
    previous = []
    if init_weights is not None:
        from safetensors import safe_open

        prev = type(model).load(init_weights)
        if hasattr(model, "init_from") and dict(prev.config) != dict(model.config):
            # warm start across configs (e.g. the diffusion model gaining window_scale)
            model.init_from(prev)
            if hasattr(model, "fit_data_stats"):
                model.fit_data_stats(Xtr)
        else:
            model.load_state_dict(prev.state_dict())
        with safe_open(str(init_weights), framework="pt") as f:
            meta = f.metadata() or {}
        previous = json.loads(meta.get("previous_runs", "[]"))
        if "training" in meta:
            previous.append({k: v for k, v in json.loads(meta["training"]).items() if k != "history"})
    elif hasattr(model, "fit_scale_stats"):
        from ..artifacts.synthesis.wgan_gp import minmax_scale

        _, lo, hi = minmax_scale(Xtr)
        model.fit_scale_stats(lo, hi)
    if hasattr(model, "fit_data_stats") and init_weights is None:
        model.fit_data_stats(Xtr)
    system = _instantiate(config["system"], model=model)
    tcfg = dict(config.get("trainer") or {})
    minutes = float(max_minutes if max_minutes is not None else tcfg.pop("max_minutes", 5))
    tcfg.pop("max_minutes", None)
    callbacks = [_Snapshots(snapshot_dir, snapshot_every)] if snapshot_dir and snapshot_every else []
    trainer = L.Trainer(
        accelerator="cpu",
        callbacks=callbacks,
        devices=1,
        max_time={"seconds": int(minutes * 60)},
        max_epochs=tcfg.pop("max_epochs", 10_000),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **tcfg,
    )
    t0 = time.time()
    trainer.fit(system, datamodule=dm)
    summary = {
        "seed": seed,
        "steps": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "train_seconds": round(time.time() - t0, 1),
        "n_train_windows": int(len(ytr)),
        "history": system.history[-20:],
    }
    exported = system.export_model()
    summary["total_steps"] = summary["steps"] + sum(r["steps"] for r in previous)
    summary["total_train_seconds"] = round(summary["train_seconds"] + sum(r["train_seconds"] for r in previous), 1)
    exported.save(out, overwrite=overwrite,
                  extra={"training": summary, "pipeline": config, "previous_runs": previous})
    logger.info("saved %s: %s", out, json.dumps({k: v for k, v in summary.items() if k != "history"}))
    return summary


__all__ = ["ArtifactWindowsDataModule", "WGANGPSystem", "DiffusionSystem", "train_from_config"]
