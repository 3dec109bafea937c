"""Conditional WGAN-GP for multichannel EEG artifact windows (ArtifactGen's GAN, re-derived).

Generator: latent ``z`` concatenated with a one-hot label, a linear layer to a short
feature map, three transposed 1-D convolutions (x2 length each), ``tanh``.
Critic: three strided 1-D convolutions with LeakyReLU(0.2), global average pooling, a linear
score plus a projection term ``<phi(x), E[y]>`` (Miyato & Koyama 2018) so the label enters the
critic. Trained with the Wasserstein loss, gradient penalty ``lambda = 10`` on random
interpolates and ``n_critic = 5`` critic steps per generator step
(:class:`neurodecode.training.synthesis_system.WGANGPSystem`).

Scaling follows the paper: each window is min-max scaled to [-1, 1] with one global minimum and
maximum per window (so channel ratios survive). The inverse needs a (min, max) pair for each
generated window; the model keeps a bank of the pairs seen in training for each class and draws
from it, so synthetic windows come back in µV with the real amplitude distribution. (Re-stretching
each generated window to span exactly [-1, 1] before the inverse was tried and doubled the
band-power error on the training windows, so the generator's own range is kept.)
"""

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ._common import LABELS, WEIGHTS_DIR, label_ids, load_model, save_model


def minmax_scale(x):
    """Scale each window to [-1, 1] with its global min and max.

    Parameters
    ----------
    x : Tensor or ndarray, shape (n, n_chans, n_times)

    Returns
    -------
    scaled : same type and shape as ``x``
    lo, hi : shape (n,)
        The per-window minimum and maximum, for :func:`minmax_unscale`.
    """
    flat = x.reshape(len(x), -1)
    lo, hi = flat.min(1), flat.max(1)
    if isinstance(lo, tuple) or hasattr(lo, "values"):  # torch returns (values, indices)
        lo, hi = lo.values, hi.values
    span = hi - lo
    span = span + (span == 0) * 1.0  # a flat window maps to -1 instead of dividing by zero
    scaled = 2 * (x - lo[:, None, None]) / span[:, None, None] - 1
    return scaled, lo, hi


def minmax_unscale(x, lo, hi):
    """Inverse of :func:`minmax_scale`: ``(x + 1) / 2 * (hi - lo) + lo``."""
    return (x + 1) / 2 * (hi - lo)[:, None, None] + lo[:, None, None]


class _Generator(nn.Module):
    def __init__(self, n_chans, n_times, n_classes, latent_dim, width):
        super().__init__()
        if n_times % 8:
            raise ValueError(f"n_times must be a multiple of 8 for three x2 upsamplings, got {n_times}.")
        self.t0 = n_times // 8
        self.fc = nn.Linear(latent_dim + n_classes, 4 * width * self.t0)
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose1d(4 * width, 2 * width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose1d(2 * width, width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose1d(width, n_chans, 4, stride=2, padding=1),
            nn.Tanh(),
        )
        self.n_classes = n_classes

    def forward(self, z, y):
        h = self.fc(torch.cat([z, nn.functional.one_hot(y, self.n_classes).to(z.dtype)], 1))
        return self.net(h.view(len(z), -1, self.t0))


class _Critic(nn.Module):
    def __init__(self, n_chans, n_classes, width):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(n_chans, width, 5, stride=2, padding=2),
            nn.LeakyReLU(0.2),
            nn.Conv1d(width, 2 * width, 5, stride=2, padding=2),
            nn.LeakyReLU(0.2),
            nn.Conv1d(2 * width, 4 * width, 5, stride=2, padding=2),
            nn.LeakyReLU(0.2),
        )
        self.final_layer = nn.Linear(4 * width, 1)
        self.embed = nn.Embedding(n_classes, 4 * width)

    def forward(self, x, y):
        phi = self.features(x).mean(-1)
        return self.final_layer(phi).squeeze(1) + (phi * self.embed(y)).sum(1)


class ConditionalWGANGP(ModelMixin, ConfigMixin):
    """Class-conditional WGAN-GP generator and projection critic for EEG windows.

    Parameters
    ----------
    n_chans, n_times : int
        Window shape (8 x 256 for the shipped model).
    n_classes : int
        Number of labels (``clean``, ``eye``, ``muscle``).
    latent_dim : int
        Size of ``z`` (128 as in the paper).
    width : int
        Channels of the narrowest conv layer; the generator starts at ``4 * width``.
    bank_size : int
        (min, max) pairs kept per class for the inverse scaling.
    sfreq : float
        Sampling rate of the windows (stored for users of the samples).
    """

    @register_to_config
    def __init__(self, n_chans=8, n_times=256, n_classes=3, latent_dim=128, width=64, bank_size=512, sfreq=128.0):
        super().__init__()
        self.generator = _Generator(n_chans, n_times, n_classes, latent_dim, width)
        self.critic = _Critic(n_chans, n_classes, width)
        self.register_buffer("scale_bank", torch.zeros(n_classes, bank_size, 2))

    def set_scale_bank(self, lo, hi, y, seed=0):
        """Fill the per-class bank of (min, max) pairs from training windows' statistics."""
        rng = np.random.default_rng(seed)
        bank = torch.zeros_like(self.scale_bank)
        for c in range(self.config.n_classes):
            idx = np.flatnonzero(np.asarray(y) == c)
            if len(idx) == 0:
                raise ValueError(f"no training window of class {c}: cannot fill its scale bank.")
            pick = rng.choice(idx, self.config.bank_size, replace=len(idx) < self.config.bank_size)
            bank[c, :, 0] = torch.as_tensor(np.asarray(lo)[pick], dtype=bank.dtype)
            bank[c, :, 1] = torch.as_tensor(np.asarray(hi)[pick], dtype=bank.dtype)
        self.scale_bank.copy_(bank)

    def forward(self, z, y):
        """Generator output in the scaled domain, shape (n, n_chans, n_times), in [-1, 1]."""
        return self.generator(z, y)

    @torch.no_grad()
    def sample(self, labels, *, seed=0, batch_size=256, scaled=False):
        """Draw windows for the given labels.

        Parameters
        ----------
        labels : sequence of str or int, length n
        seed : int
        scaled : bool
            Return the [-1, 1] generator output instead of µV.

        Returns
        -------
        ndarray, shape (n, n_chans, n_times), float32 (µV unless ``scaled``)
        """
        y = torch.as_tensor(label_ids(labels, self.config.n_classes))
        g = torch.Generator().manual_seed(int(seed))
        out = []
        for s in range(0, len(y), batch_size):
            yb = y[s : s + batch_size]
            z = torch.randn(len(yb), self.config.latent_dim, generator=g)
            x = self.generator(z, yb)
            if not scaled:
                j = torch.randint(0, self.config.bank_size, (len(yb),), generator=g)
                lohi = self.scale_bank[yb, j]
                x = minmax_unscale(x, lohi[:, 0], lohi[:, 1])
            out.append(x)
        return torch.cat(out).numpy().astype(np.float32)

    def save(self, path, *, overwrite=False, extra=None):
        """Write weights + config to a safetensors file."""
        return save_model(self, path, overwrite=overwrite, extra=extra)

    @classmethod
    def load(cls, path=None):
        """Load a model saved with :meth:`save`; ``None`` loads the shipped ``synth_wgan`` weights."""
        return load_model(cls, path or WEIGHTS_DIR / "synth_wgan.safetensors")


def gradient_penalty(critic, real, fake, y, generator=None):
    """WGAN-GP penalty: ``E[(||grad_x D(x_hat, y)||_2 - 1)^2]`` on random interpolates."""
    eps = torch.rand(len(real), 1, 1, generator=generator, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    score = critic(x_hat, y)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


__all__ = ["ConditionalWGANGP", "gradient_penalty", "minmax_scale", "minmax_unscale", "LABELS"]
