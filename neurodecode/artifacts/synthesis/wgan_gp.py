"""Conditional WGAN-GP for multichannel EEG artifact windows (ArtifactGen's GAN, re-derived).

Generator: latent ``z`` concatenated with a learned class embedding, a linear layer to a short
feature map, three transposed 1-D convolutions (x2 length each), ``tanh``. Every hidden layer
is followed by class-conditional batch normalisation (a per-class gain and bias looked up in an
embedding, as in the generator of Miyato & Koyama's projection-cGAN), so the label reaches every
layer instead of only the input.
Critic: three strided 1-D convolutions with LeakyReLU(0.2), global average pooling, a linear
score plus a projection term ``<phi(x), E[y]>`` (Miyato & Koyama 2018) so the label enters the
critic. Trained with the Wasserstein loss, gradient penalty ``lambda = 10`` on random
interpolates and ``n_critic = 5`` critic steps per generator step
(:class:`neurodecode.training.synthesis_system.WGANGPSystem`).

Scaling follows the paper: each window is min-max scaled to [-1, 1] with one global minimum and
maximum per window (so channel ratios survive). The paper keeps the (min, max) pair of each real
window but says nothing about where the pair of a *generated* window comes from. Drawing a
training window's pair at random, independently of the generated waveform, breaks the strong
dependence between shape and range (a window whose range is set by one large blink or EMG
burst has a small scaled variance elsewhere) and inflated band power by a factor 2-4. Here the
pair is part of what is generated: the generator also outputs two numbers, the standardised
log range ``log(max - min)`` and the relative midpoint ``(max + min) / (max - min)``, the
critic scores them together with the waveform, and :func:`minmax_unscale` with the generated
pair gives the window in µV.
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


class _CondBatchNorm(nn.Module):
    """Batch norm without its own affine part; a per-class gain and bias replace it."""

    def __init__(self, n_features, n_classes):
        super().__init__()
        self.bn = nn.BatchNorm1d(n_features, affine=False)
        self.gain = nn.Embedding(n_classes, n_features)
        self.bias = nn.Embedding(n_classes, n_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, h, y):
        return self.bn(h) * self.gain(y)[:, :, None] + self.bias(y)[:, :, None]


class _Generator(nn.Module):
    def __init__(self, n_chans, n_times, n_classes, latent_dim, width):
        super().__init__()
        if n_times % 8:
            raise ValueError(f"n_times must be a multiple of 8 for three x2 upsamplings, got {n_times}.")
        self.t0 = n_times // 8
        self.class_emb = nn.Embedding(n_classes, latent_dim)
        self.fc = nn.Linear(2 * latent_dim, 4 * width * self.t0)
        chans = [4 * width, 2 * width, width]
        self.norms = nn.ModuleList([_CondBatchNorm(c, n_classes) for c in chans])
        self.convs = nn.ModuleList(
            [nn.ConvTranspose1d(a, b, 4, stride=2, padding=1) for a, b in zip(chans, chans[1:] + [n_chans])]
        )
        # the window's (log range, relative midpoint), read from the same features as the waveform
        self.scale_head = nn.Sequential(nn.Linear(4 * width, 4 * width), nn.ReLU(), nn.Linear(4 * width, 2))

    def forward(self, z, y):
        h = self.fc(torch.cat([z, self.class_emb(y)], 1)).view(len(z), -1, self.t0)
        s = None
        for i, (norm, conv) in enumerate(zip(self.norms, self.convs)):
            h = torch.relu(norm(h, y))
            if i == 0:
                s = self.scale_head(h.mean(-1))
            h = conv(h)
        return torch.tanh(h), s


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
        # joins the pooled waveform features with the (log range, midpoint) pair, so the critic can
        # tell a waveform whose range does not fit its shape
        self.join = nn.Sequential(nn.Linear(4 * width + 2, 4 * width), nn.LeakyReLU(0.2))
        self.final_layer = nn.Linear(4 * width, 1)
        self.embed = nn.Embedding(n_classes, 4 * width)

    def forward(self, x, y, s):
        phi = self.join(torch.cat([self.features(x).mean(-1), s], 1))
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
        Size of ``z`` (128 as in the paper) and of the class embedding.
    width : int
        Channels of the generator's narrowest conv layer; it starts at ``4 * width``.
    critic_width : int | None
        Channels of the critic's first conv layer (then x2, x4); None = ``width``.
    sfreq : float
        Sampling rate of the windows (stored for users of the samples).
    """

    @register_to_config
    def __init__(self, n_chans=8, n_times=256, n_classes=3, latent_dim=128, width=64, critic_width=None,
                 sfreq=128.0):
        super().__init__()
        self.generator = _Generator(n_chans, n_times, n_classes, latent_dim, width)
        self.critic = _Critic(n_chans, n_classes, critic_width or width)
        # mean and std of log(max - min) over the training windows (set by fit_scale_stats)
        self.register_buffer("log_range_stats", torch.tensor([0.0, 1.0]))

    # -- the (min, max) pair as two standardised numbers -------------------------------------
    def fit_scale_stats(self, lo, hi):
        """Store the mean and std of ``log(hi - lo)`` over the training windows."""
        r = np.log(np.maximum(np.asarray(hi, np.float64) - np.asarray(lo, np.float64), 1e-6))
        self.log_range_stats.copy_(torch.tensor([r.mean(), max(r.std(), 1e-6)], dtype=torch.float32))

    def encode_range(self, lo, hi):
        """(min, max) per window -> (n, 2): standardised log range and relative midpoint."""
        span = torch.clamp(hi - lo, min=1e-6)
        m, sd = self.log_range_stats
        return torch.stack([(torch.log(span) - m) / sd, (hi + lo) / span], 1)

    def decode_range(self, s):
        """Inverse of :meth:`encode_range`: (n, 2) -> (lo, hi)."""
        m, sd = self.log_range_stats
        span = torch.exp(s[:, 0] * sd + m)
        mid = s[:, 1] * span / 2
        return mid - span / 2, mid + span / 2

    def forward(self, z, y):
        """Generator output: scaled window (n, n_chans, n_times) in [-1, 1] and its range code (n, 2)."""
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
        was_training = self.training
        self.eval()  # batch norm uses its running statistics, so a draw does not depend on the batch
        out = []
        for s in range(0, len(y), batch_size):
            yb = y[s : s + batch_size]
            z = torch.randn(len(yb), self.config.latent_dim, generator=g)
            x, code = self.generator(z, yb)
            if not scaled:
                x = minmax_unscale(x, *self.decode_range(code))
            out.append(x)
        self.train(was_training)
        return torch.cat(out).numpy().astype(np.float32)

    def save(self, path, *, overwrite=False, extra=None):
        """Write weights + config to a safetensors file."""
        return save_model(self, path, overwrite=overwrite, extra=extra)

    @classmethod
    def load(cls, path=None):
        """Load a model saved with :meth:`save`; ``None`` loads the shipped ``synth_wgan`` weights."""
        return load_model(cls, path or WEIGHTS_DIR / "synth_wgan.safetensors")


def gradient_penalty(critic, real, fake, y, generator=None):
    """WGAN-GP penalty ``E[(||grad D(x_hat, y)||_2 - 1)^2]`` on random interpolates.

    ``real`` and ``fake`` are tensors, or tuples of tensors that the critic takes together (a
    window and its range code); one interpolation weight per sample is shared by all parts and
    the gradient norm is taken over all of them.
    """
    real_t = real if isinstance(real, (tuple, list)) else (real,)
    fake_t = fake if isinstance(fake, (tuple, list)) else (fake,)
    eps = torch.rand(len(real_t[0]), generator=generator, dtype=real_t[0].dtype)
    parts = []
    for r, f in zip(real_t, fake_t):
        e = eps.view(-1, *([1] * (r.ndim - 1)))
        parts.append((e * r + (1 - e) * f).requires_grad_(True))
    score = critic(*parts[:1], y, *parts[1:])
    grads = torch.autograd.grad(score.sum(), parts, create_graph=True)
    sq = sum(g.flatten(1).pow(2).sum(1) for g in grads)
    return (((sq + 1e-12).sqrt() - 1) ** 2).mean()  # eps: finite gradient at a zero norm


__all__ = ["ConditionalWGANGP", "gradient_penalty", "minmax_scale", "minmax_unscale", "LABELS"]
