"""Lightning systems that train AT-AT and the EEGdenoiseNet baselines on a denoising store.

* :class:`DenoiseDataModule`: reads a store built by :mod:`neurodecode.datasets.denoise`. Training
  pairs are re-mixed on the fly from the training pools (clean EEG x real artifact, SNR drawn from
  U(-7, 2) dB, random noise sign and circular shift) so that every epoch sees new combinations, as
  EEGdenoiseNet's ``combin_num`` recombination does; validation uses the fixed mixed pairs of the
  store (never the test split).
* :class:`ATATSystem`: three optimisers (autoencoder on clean EEG, transformer on MSE + adversarial
  term, discriminator on clean vs denoised), manual optimisation.
* :class:`BaselineSystem`: any ``(B, T) -> (B, T)`` network on MSE.
* :class:`CPUBudget`: the callback that gives every network the same compute: it stops training once
  the process has used ``cpu_budget_s`` CPU seconds, and sets the learning rate from the fraction of
  that budget spent (linear warm-up, then cosine decay), so that every model ends its schedule
  exactly when its budget runs out whatever its speed per step.

Both log ``val_rrmse`` (mean temporal RRMSE on validation pairs), used for checkpoint selection.
"""

from __future__ import annotations

import numpy as np
import torch
import lightning as L
from torch.utils.data import DataLoader, Dataset

from ..artifacts.atat import ATATNet, Discriminator

__all__ = ["DenoiseDataModule", "ATATSystem", "BaselineSystem", "CPUBudget", "gate_calibration"]


class _RemixDataset(Dataset):
    def __init__(self, clean, noise, n_items, snr_range, seed):
        self.clean = clean.astype(np.float32)
        self.noise = noise.astype(np.float32)
        self.n_items = n_items
        self.snr_range = snr_range
        self.seed = seed
        self.epoch = 0

    def __len__(self):
        return self.n_items

    def __getitem__(self, i):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        x = self.clean[rng.integers(len(self.clean))]
        n = np.roll(self.noise[rng.integers(len(self.noise))], int(rng.integers(x.shape[-1])))
        n = n * rng.choice((-1.0, 1.0))
        snr = rng.uniform(*self.snr_range)
        lam = np.sqrt(np.mean(x**2)) / (np.sqrt(np.mean(n**2)) * 10 ** (0.1 * snr))
        y = x + lam * n
        sd = y.std()
        return torch.from_numpy((x / sd).astype(np.float32)), torch.from_numpy((y / sd).astype(np.float32))


class DenoiseDataModule(L.LightningDataModule):
    """Data of one single-channel denoising store.

    Parameters
    ----------
    store : str
        Path of the ``.h5`` store.
    batch_size : int
    items_per_epoch : int
        Freshly mixed training pairs per epoch.
    n_val : int
        Validation pairs used (a fixed, evenly spaced subset of the store's validation pairs).
    seed : int
    """

    def __init__(self, store: str, batch_size: int = 64, items_per_epoch: int = 8192, n_val: int = 1000,
                 seed: int = 0, snr_low: float = -7.0, snr_high: float = 2.0):
        super().__init__()
        self.store, self.batch_size, self.items_per_epoch = store, batch_size, items_per_epoch
        self.n_val, self.seed, self.snr = n_val, seed, (snr_low, snr_high)

    def setup(self, stage=None):
        from ..datasets.denoise import load_benchmark
        from ..io import WindowStore

        with WindowStore(self.store) as st:
            self.train_clean = st.windows("train_clean")[0][:, 0]
            self.train_noise = st.windows("train_noise")[0][:, 0]
            self.val_clean_only = st.windows("val_clean")[0][:, 0]
        x, y, _ = load_benchmark(self.store, "val")
        idx = np.linspace(0, len(x) - 1, min(self.n_val, len(x))).astype(int)
        self.val_x, self.val_y = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        self.train_set = _RemixDataset(self.train_clean, self.train_noise, self.items_per_epoch, self.snr, self.seed)

    def train_dataloader(self):
        self.train_set.epoch += 1
        g = torch.Generator().manual_seed(self.seed + self.train_set.epoch)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=g, num_workers=0)

    def val_dataloader(self):
        return DataLoader(torch.utils.data.TensorDataset(self.val_x, self.val_y), batch_size=500)


def _rrmse(out, x):
    return (torch.sqrt(((out - x) ** 2).mean(-1)) / torch.sqrt((x**2).mean(-1))).mean()


class ATATSystem(L.LightningModule):
    """AT-AT training: autoencoder, transformer and discriminator.

    Parameters
    ----------
    n_times, span, ae_widths, patch, d_model, n_heads, n_layers, ff, stem :
        :class:`~neurodecode.artifacts.atat.ATATNet` configuration.
    lr : float
        Adam learning rate (all three optimisers; betas 0.5, 0.9 as in EEGdenoiseNet).
    lambda_adv : float
        Weight of the adversarial term in the transformer's loss.
    lambda_spec : float
        Weight of a spectral term: mean absolute difference of the log magnitude spectra
        (``rfft``, +1e-3) of output and clean target, which weighs the low-power high-frequency
        band that MSE ignores (where EMG lives).
    """

    def __init__(self, n_times: int = 512, span: int = 64, ae_widths: tuple = (16, 8), patch: int = 16,
                 d_model: int = 48, n_heads: int = 4, n_layers: int = 2, ff: int = 96, stem: int = 16,
                 lr: float = 1e-3, lambda_adv: float = 0.01, lambda_spec: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = ATATNet(n_times=n_times, span=span, ae_widths=tuple(ae_widths), patch=patch, d_model=d_model,
                           n_heads=n_heads, n_layers=n_layers, ff=ff, stem=stem)
        self.disc = Discriminator()

    def configure_optimizers(self):
        b = (0.5, 0.9)
        return (torch.optim.Adam(self.net.ae.parameters(), self.hparams.lr, betas=b),
                torch.optim.Adam(self.net.transformer.parameters(), self.hparams.lr, betas=b),
                torch.optim.Adam(self.disc.parameters(), self.hparams.lr, betas=b))

    def training_step(self, batch, _):
        x, y = batch
        opt_ae, opt_g, opt_d = self.optimizers()
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        # 1. autoencoder learns clean EEG only, so that it fails to reproduce artifacts; at inference
        #    it sees windows scaled to unit std, so it learns clean EEG at that scale too
        xu = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6)
        ae_loss = torch.mean((self.net.ae(xu) - xu) ** 2)
        opt_ae.zero_grad()
        self.manual_backward(ae_loss)
        opt_ae.step()
        # 2. transformer: MSE + adversarial term
        out = self.net(y)
        mse = torch.mean((out - x) ** 2)
        adv = bce(self.disc(out), torch.ones(len(out), device=out.device))
        g_loss = mse + self.hparams.lambda_adv * adv
        if self.hparams.lambda_spec:
            spec = torch.mean(torch.abs(torch.log(torch.fft.rfft(out).abs() + 1e-3)
                                        - torch.log(torch.fft.rfft(x).abs() + 1e-3)))
            g_loss = g_loss + self.hparams.lambda_spec * spec
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        # 3. discriminator: clean EEG vs transformer output
        d_loss = 0.5 * (bce(self.disc(x), torch.ones(len(x), device=x.device))
                        + bce(self.disc(out.detach()), torch.zeros(len(x), device=x.device)))
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.log_dict({"ae_mse": ae_loss, "mse": mse, "adv": adv, "d_loss": d_loss}, prog_bar=False)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_rrmse", _rrmse(self.net(y), x), prog_bar=True)


class CPUBudget(L.Callback):
    """Same compute for every network: a CPU-time budget with a learning-rate schedule over it.

    CPU time of this process (``time.process_time``, one thread), not wall time, so that the
    budget means the same on a busy shared machine. The learning rate of every optimiser is
    ``lr * f(p)`` with ``p`` the fraction of the budget spent: ``f`` rises linearly from 0.05 to 1
    over ``warmup_frac`` then follows a cosine down to ``final_lr_frac``. The state dict with the
    lowest ``val_rrmse`` seen is kept in :attr:`state` (checkpoint selection on validation only).

    Parameters
    ----------
    cpu_budget_s : float
        CPU seconds of training (including validation passes).
    warmup_frac : float
        Fraction of the budget spent warming up.
    final_lr_frac : float
        Learning-rate factor at the end of the budget.
    """

    def __init__(self, cpu_budget_s: float = 300.0, warmup_frac: float = 0.05, final_lr_frac: float = 0.02):
        super().__init__()
        import time

        self.cpu_budget_s, self.warmup_frac, self.final_lr_frac = float(cpu_budget_s), warmup_frac, final_lr_frac
        self._clock = time.process_time
        self.t0 = None
        self.best, self.state, self.epoch, self.history, self.steps = float("inf"), None, -1, [], 0
        self._base = None

    def fraction(self):
        return (self._clock() - self.t0) / self.cpu_budget_s if self.t0 is not None else 0.0

    def lr_factor(self, p):
        import math

        if p < self.warmup_frac:
            return 0.05 + 0.95 * p / self.warmup_frac
        q = min(1.0, (p - self.warmup_frac) / max(1e-9, 1 - self.warmup_frac))
        return self.final_lr_frac + (1 - self.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * q))

    def on_fit_start(self, trainer, pl_module):
        self.t0 = self._clock()

    def on_train_batch_start(self, trainer, pl_module, *args):
        if self._base is None:
            self._base = [[g["lr"] for g in o.param_groups] for o in trainer.optimizers]
        f = self.lr_factor(self.fraction())
        for o, base in zip(trainer.optimizers, self._base):
            for g, b in zip(o.param_groups, base):
                g["lr"] = b * f

    def on_train_batch_end(self, trainer, *args):
        self.steps += 1
        if self.fraction() >= 1.0:
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module):
        import copy

        if trainer.sanity_checking:
            return
        v = float(trainer.callback_metrics.get("val_rrmse", float("inf")))
        self.history.append(round(v, 5))
        if v < self.best:
            self.best, self.epoch = v, trainer.current_epoch
            self.state = copy.deepcopy(pl_module.net.state_dict())


class BaselineSystem(L.LightningModule):
    """MSE training of one baseline network (name from :data:`~neurodecode.artifacts.baselines.BASELINES`)."""

    def __init__(self, model: str = "fcnn", n_times: int = 512, lr: float = 1e-3):
        super().__init__()
        from ..artifacts.baselines import BASELINES

        self.save_hyperparameters()
        self.net = BASELINES[model](n_times)

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), self.hparams.lr, betas=(0.5, 0.9))

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.mean((self.net(y) - x) ** 2)
        self.log("mse", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_rrmse", _rrmse(self.net(y), x), prog_bar=True)


@torch.no_grad()
def gate_calibration(net, val_x, val_y, val_clean, grid=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5), tolerance=0.10):
    """Gate thresholds ``(tau, tau_hi)`` from validation data only.

    For a clean-window opening rate ``q``, the thresholds are quantiles of each clean validation
    window's lowest (``tau``) and highest (``tau_hi``) span correlation, with the quota ``q`` given
    to the low side, the high side or split between them (whichever gives the lowest RRMSE on the
    contaminated validation pairs). The smallest ``q`` of ``grid`` whose gated RRMSE is within
    ``tolerance`` (relative) of the ungated model's is kept, so that clean EEG rarely pays for the
    transformer while quality stays close to the ungated model; when none is, the gate is always
    open (``tau = 2``).

    Returns
    -------
    (tau, tau_hi) : tuple of float
    info : dict
        The chosen thresholds and, for every candidate, the clean and contaminated opening rates
        and the gated RRMSE, next to the ungated model's RRMSE.
    """
    net.eval()
    from ..artifacts.atat import span_correlation

    vc = torch.as_tensor(val_clean)
    vc = (vc - vc.mean(-1, keepdim=True)) / vc.std(-1, keepdim=True)
    vx, vy = torch.as_tensor(val_x), torch.as_tensor(val_y)
    cc = span_correlation(net.ae(vc), vc, net.span)
    cn = span_correlation(net.ae(vy), vy, net.span)
    c_lo, c_hi, n_lo, n_hi = cc.min(1).values, cc.max(1).values, cn.min(1).values, cn.max(1).values
    full = net(vy)
    ungated = float(_rrmse(full, vx))
    cands = []
    for q in grid:
        for share in (1.0, 0.5, 0.0):  # part of the quota given to the low side
            lo = float(torch.quantile(c_lo, q * share)) if share > 0 else -2.0
            hi = float(torch.quantile(c_hi, 1 - q * (1 - share))) if share < 1 else 2.0
            open_n = (n_lo < lo) | (n_hi > hi)
            out = torch.where(open_n[:, None], full, vy)
            cands.append({"q": q, "low_share": share, "tau": lo, "tau_hi": hi,
                          "clean_open": float(((c_lo < lo) | (c_hi > hi)).float().mean()),
                          "noisy_open": float(open_n.float().mean()), "rrmse_gated": float(_rrmse(out, vx))})
    ok = [c for c in cands if c["rrmse_gated"] <= (1 + tolerance) * ungated]
    if ok:
        q0 = min(c["q"] for c in ok)
        best = min((c for c in ok if c["q"] == q0), key=lambda c: c["rrmse_gated"])
        tau, tau_hi = best["tau"], best["tau_hi"]
    else:
        best, tau, tau_hi = None, 2.0, 2.0
    info = {"tau": tau, "tau_hi": tau_hi, "tolerance": tolerance, "rrmse_ungated": ungated, "chosen": best,
            "candidates": cands, "val_clean_windows_open": best["clean_open"] if best else 1.0,
            "val_noisy_windows_open": best["noisy_open"] if best else 1.0}
    return (tau, tau_hi), info
