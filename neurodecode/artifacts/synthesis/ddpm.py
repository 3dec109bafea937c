"""Class-conditional 1-D diffusion for EEG artifact windows, with classifier-free guidance.

Fixes the three defects noted in ArtifactGen's released diffusion code
(``../shared/research/artifact_anchors.md`` section 1.3):

1. the 1-D U-Net really concatenates each down-path activation into the matching up-path block;
2. the label is replaced by a learned null token with probability ``p_uncond`` while training,
   and sampling mixes conditional and unconditional predictions with a guidance scale ``w``
   (``out = uncond + w * (cond - uncond)``; ``w = 1`` is plain conditional sampling);
3. training and sampling use one noise schedule and one prediction type, both read from the
   model's config: the training scheduler is diffusers' :class:`~diffusers.DDPMScheduler` and the
   sampler (:class:`~diffusers.DDIMScheduler` or DDPM) is built with ``from_config`` of that same
   scheduler config, so a mismatch cannot happen.

Two input scalings are available (``window_scale``):

- ``False``: windows are divided by one fixed per-channel standard deviation measured on the
  training set (buffer ``channel_scale``), so class amplitude differences are learned by the
  network along with the waveform.
- ``True``: each window is split into its *shape* (every channel divided by its own standard
  deviation in that window) and its *scale* (the 8 log standard deviations, standardised with
  training-set statistics). The scale code is appended as extra channels that are constant over
  time, so one diffusion model learns the joint distribution of shape and amplitude (like the
  WGAN-GP's generated (min, max)). At sampling, the time-mean of each code channel is the
  generated log-std and the generated shape is brought back to unit standard deviation per
  channel (the constraint every training shape satisfies) before it is multiplied by the
  generated scale. This makes the output amplitude follow the learned amplitude distribution
  even when the waveform itself comes out too smooth or too quiet, which is what an
  under-trained model does (``docs/benchmarks/synthesis.md`` section 4).
"""

import math

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn import functional as F

from ...utils import check_option
from ._common import WEIGHTS_DIR, label_ids, load_model, save_model


def _timestep_embedding(t, dim):
    """Sinusoidal embedding of integer timesteps, shape (n, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], 1)


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, FiLM (scale, shift) from the time+class embedding in between."""

    def __init__(self, c_in, c_out, emb_dim, dilation=1, dropout=0.1):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, c_in), c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=dilation, dilation=dilation)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None].chunk(2, 1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return h + self.skip(x)


class UNet1DConditional(ModelMixin, ConfigMixin):
    """1-D U-Net predicting the diffusion target from a noisy window, a timestep and a label.

    Parameters
    ----------
    n_chans, n_times : int
        Window shape; ``n_times`` must be divisible by ``2 ** (len(channel_mults) - 1)``.
    n_classes : int
        Real labels; index ``n_classes`` is the null (unconditional) token.
    base_channels : int
        Width of the first level.
    channel_mults : tuple of int
        Width multiplier per level (one x2 downsampling between levels).
    emb_dim : int
        Size of the time and class embeddings (summed, then FiLM in every block).
    dropout : float
    num_train_timesteps, beta_schedule, prediction_type : diffusers scheduler settings
        Shared by training and sampling (see :meth:`train_scheduler`, :meth:`sampler`).
    sfreq : float
        Sampling rate of the windows.
    window_scale : bool
        Model each window as (unit-std shape, per-channel log-std code) instead of dividing by one
        global per-channel scale (see the module docstring). The network then has ``2 * n_chans``
        input and output channels.
    """

    @register_to_config
    def __init__(
        self,
        n_chans=8,
        n_times=256,
        n_classes=3,
        base_channels=32,
        channel_mults=(1, 2, 4),
        emb_dim=128,
        dropout=0.1,
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        sfreq=128.0,
        window_scale=False,
    ):
        super().__init__()
        if n_times % (2 ** (len(channel_mults) - 1)):
            raise ValueError(f"n_times={n_times} is not divisible by 2**{len(channel_mults) - 1}.")
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(n_classes + 1, emb_dim)
        n_io = 2 * n_chans if window_scale else n_chans
        self.conv_in = nn.Conv1d(n_io, base_channels, 3, padding=1)
        widths = [base_channels * m for m in channel_mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = base_channels
        for i, w in enumerate(widths):
            self.down.append(_ResBlock(c, w, emb_dim, dilation=2**i, dropout=dropout))
            c = w
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv1d(c, c, 4, stride=2, padding=1))
        self.mid1 = _ResBlock(c, c, emb_dim, dropout=dropout)
        self.mid2 = _ResBlock(c, c, emb_dim, dilation=2, dropout=dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            # input = current features concatenated with the skip saved at this level
            self.up.append(_ResBlock(c + w, w, emb_dim, dropout=dropout))
            c = w
            self.upsample.append(nn.Identity() if i == 0 else nn.Upsample(scale_factor=2, mode="nearest"))
        self.norm_out = nn.GroupNorm(min(8, c), c)
        self.final_layer = nn.Conv1d(c, n_io, 3, padding=1)
        self.register_buffer("channel_scale", torch.ones(n_chans))
        if window_scale:
            # training-set mean and std of the per-window log standard deviation, per channel
            self.register_buffer("log_scale_mean", torch.zeros(n_chans))
            self.register_buffer("log_scale_std", torch.ones(n_chans))

    def forward(self, x, t, y):
        """Predict the scheduler's target.

        Parameters
        ----------
        x : Tensor, shape (n, n_chans, n_times)
            Noisy scaled windows.
        t : Tensor, shape (n,)
            Integer timesteps.
        y : Tensor, shape (n,)
            Labels; ``n_classes`` means "no label".
        """
        if t.ndim == 0:
            t = t.expand(len(x))
        emb = self.time_mlp(_timestep_embedding(t, self.config.emb_dim)) + self.class_emb(y)
        h = self.conv_in(x)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid1(h, emb), emb)
        for block, up in zip(self.up, self.upsample):
            h = block(torch.cat([h, skips.pop()], 1), emb)
            h = up(h)
        return self.final_layer(F.silu(self.norm_out(h)))

    # -- scaling -----------------------------------------------------------------------------
    def fit_data_stats(self, X):
        """Set the scaling statistics from training windows ``X`` (n, n_chans, n_times) in µV."""
        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        self.channel_scale.copy_(X.std(dim=(0, 2), unbiased=False))
        if self.config.window_scale:
            logs = torch.log(X.std(dim=2, unbiased=False).clamp_min(1e-6))
            self.log_scale_mean.copy_(logs.mean(0))
            self.log_scale_std.copy_(logs.std(0).clamp_min(1e-6))
        return self

    def scale(self, x):
        """µV -> model units, shape (n, n_chans) -> (n, 2 * n_chans) channels with ``window_scale``."""
        if not self.config.window_scale:
            return x / self.channel_scale[:, None]
        sd = x.std(dim=-1, unbiased=False, keepdim=True).clamp_min(1e-6)
        code = (torch.log(sd) - self.log_scale_mean[:, None]) / self.log_scale_std[:, None]
        return torch.cat([x / sd, code.expand_as(x)], 1)

    def unscale(self, z):
        """Model units -> µV (inverse of :meth:`scale`)."""
        if not self.config.window_scale:
            return z * self.channel_scale[:, None]
        c = self.config.n_chans
        shape, code = z[:, :c], z[:, c:].mean(-1, keepdim=True)
        # a training shape has unit std in every channel by construction: project back onto it
        shape = shape / shape.std(dim=-1, unbiased=False, keepdim=True).clamp_min(1e-6)
        return shape * torch.exp(code * self.log_scale_std[:, None] + self.log_scale_mean[:, None])

    def init_from(self, other):
        """Copy the weights of ``other`` (e.g. a model without ``window_scale``) where they fit.

        Layers whose shapes differ only in the number of input/output channels (``conv_in``,
        ``final_layer``) get the matching slice; the new slices start at zero, so the warm-started
        network initially ignores (and predicts zero for) the extra channels. Buffers are not copied.
        """
        own = dict(self.named_parameters())
        for k, v in other.state_dict().items():
            w = own.get(k)
            if w is None or w.ndim != v.ndim:
                continue
            overlap = tuple(slice(0, min(a, b)) for a, b in zip(w.shape, v.shape))
            with torch.no_grad():
                w.zero_()
                w[overlap] = v[overlap]
        return self

    # -- schedulers --------------------------------------------------------------------------
    def train_scheduler(self):
        """The :class:`~diffusers.DDPMScheduler` used for training (noise schedule + target)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler(
            num_train_timesteps=self.config.num_train_timesteps,
            beta_schedule=self.config.beta_schedule,
            prediction_type=self.config.prediction_type,
            clip_sample=False,
        )

    def sampler(self, kind="ddim"):
        """A sampling scheduler built from the training scheduler's config (same schedule/target)."""
        from diffusers import DDIMScheduler, DDPMScheduler

        check_option("sampler", kind, ("ddim", "ddpm"))
        cfg = self.train_scheduler().config
        return DDIMScheduler.from_config(cfg) if kind == "ddim" else DDPMScheduler.from_config(cfg)

    def training_loss(self, x0, y, p_uncond=0.1, generator=None):
        """Diffusion loss on scaled windows ``x0`` with label dropout for classifier-free guidance."""
        sched = self.train_scheduler()
        n = len(x0)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        t = torch.randint(0, sched.config.num_train_timesteps, (n,), generator=generator)
        xt = sched.add_noise(x0, noise, t)
        drop = torch.rand(n, generator=generator) < p_uncond
        y = torch.where(drop, torch.full_like(y, self.config.n_classes), y)
        if sched.config.prediction_type == "epsilon":
            target = noise
        elif sched.config.prediction_type == "v_prediction":
            target = sched.get_velocity(x0, noise, t)
        else:
            target = x0
        return F.mse_loss(self(xt, t, y), target)

    @torch.no_grad()
    def sample(self, labels, *, guidance=1.0, num_inference_steps=50, sampler="ddim", seed=0, batch_size=256, eta=0.0):
        """Generate windows for the given labels.

        Parameters
        ----------
        labels : sequence of str or int, length n
        guidance : float
            Classifier-free guidance scale ``w``; 1 = conditional only, 0 = unconditional.
        num_inference_steps : int
        sampler : {'ddim', 'ddpm'}
        seed : int
        eta : float
            DDIM stochasticity (0 = deterministic DDIM).

        Returns
        -------
        ndarray, shape (n, n_chans, n_times), float32 in µV.
        """
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}.")
        y_all = torch.as_tensor(label_ids(labels, self.config.n_classes))
        g = torch.Generator().manual_seed(int(seed))
        out = []
        for s in range(0, len(y_all), batch_size):
            y = y_all[s : s + batch_size]
            sched = self.sampler(sampler)
            sched.set_timesteps(num_inference_steps)
            n_io = self.conv_in.in_channels
            x = torch.randn(len(y), n_io, self.config.n_times, generator=g)
            null = torch.full_like(y, self.config.n_classes)
            for t in sched.timesteps:
                tt = t.expand(len(y))
                if guidance == 1.0:
                    pred = self(x, tt, y)
                else:
                    both = self(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, null]))
                    cond, unc = both.chunk(2)
                    pred = unc + guidance * (cond - unc)
                kw = {"eta": eta} if sampler == "ddim" else {}
                x = sched.step(pred, t, x, generator=g, **kw).prev_sample
            out.append(self.unscale(x))
        return torch.cat(out).numpy().astype(np.float32)

    def save(self, path, *, overwrite=False, extra=None):
        return save_model(self, path, overwrite=overwrite, extra=extra)

    @classmethod
    def load(cls, path=None):
        """Load saved weights; ``None`` loads the shipped ``synth_ddpm`` model."""
        return load_model(cls, path or WEIGHTS_DIR / "synth_ddpm.safetensors")


__all__ = ["UNet1DConditional"]
