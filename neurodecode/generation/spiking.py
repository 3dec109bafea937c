"""Spiking denoiser: the ANN U-Net's topology with multi-step integrate-and-fire / LIF neurons.

Follows Spiking Diffusion Models (Cao et al., IEEE TAI 2024, arXiv 2408.16467), re-implemented from the paper:

* every convolution after the first reads binary spikes, so its multiply-accumulates become
  accumulates (synaptic operations) on neuromorphic hardware;
* the noisy sample is fed identically at each of ``time_steps`` SNN steps ("direct encoding");
* residual streams stay real-valued between neurons ("pre-spike residual": neuron -> conv -> norm, summed
  before the next neuron), which avoids the {0, 1, 2} spike sums of summing spikes;
* temporal-wise spiking mechanism (TSM): each spiking convolution scales its output at SNN step ``n`` by a
  learnable scalar ``p[n]`` (initialised to 1 and, as in the paper, fine-tuned briefly after normal
  training); ``p`` and the batch norm fold into per-step weights at deployment;
* threshold-guided sampling (TG): at inference all thresholds are multiplied by ``threshold_scale``
  slightly below 1 (more excitable) or above 1, without retraining;
* the output is the mean over SNN steps of the last (spike-driven) convolution's output, i.e. a
  non-firing read-out of its membrane input;
* optional preconditioned output (``output_skip=True``; our addition, not in SDM): the part of the noise
  prediction that is a linear function of the noisy input is passed in full precision, and the spikes only
  carry the rest (see :class:`PreconditionedOutput`). With ``T`` = 4 steps the spike read-out is coarse,
  and at high noise levels the target is almost the input itself, which a spiking path must otherwise
  rebuild from spikes.

Neurons are our own multi-step layer (hard reset to 0, arc-tangent surrogate gradient); they record their
firing rates, which :mod:`neurodecode.generation.energy` turns into synaptic operations.

Tensors inside the network have shape ``(T, batch, channels, height, width)`` with ``T = time_steps``.
"""

import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..utils import UsageError
from .unet import prepare_spatial, project_conditioning, set_conditioning_stats


class ATanSpike(torch.autograd.Function):
    """Heaviside step forward; arc-tangent surrogate derivative backward.

    ``dS/dx = (alpha / 2) / (1 + (pi / 2 * alpha * x) ** 2)``, the smooth stand-in that lets
    gradients pass the non-differentiable spike.
    """

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2), None


class LIFNeuron(nn.Module):
    """Multi-step leaky integrate-and-fire neuron (integrate-and-fire when ``tau`` is None).

    ``V[n] = V[n-1] + (X[n] - V[n-1]) / tau`` (LIF) or ``V[n] = V[n-1] + X[n]`` (IF);
    spike ``S[n] = H(V[n] - threshold * threshold_scale)``; hard reset ``V[n] <- V[n] (1 - S[n])``.

    Parameters
    ----------
    tau : float | None
        Membrane time constant in SNN steps; None gives IF (no leak, as SDM uses).
    threshold : float
        Firing threshold.
    alpha : float
        Sharpness of the surrogate gradient.

    Attributes
    ----------
    threshold_scale : float
        Multiplies the threshold at run time (threshold-guided sampling).
    spikes, slots : float
        Spikes emitted and neuron-steps simulated since the last :meth:`reset_stats` (firing rate =
        spikes / slots).
    """

    def __init__(self, tau=None, threshold=1.0, alpha=2.0):
        super().__init__()
        if tau is not None and tau < 1:
            raise UsageError(f"Invalid value for the 'tau' parameter: expected None or >= 1, but got {tau}.")
        self.tau = tau
        self.threshold = float(threshold)
        self.alpha = float(alpha)
        self.threshold_scale = 1.0
        self.reset_stats()

    def reset_stats(self):
        self.spikes = 0.0
        self.slots = 0.0

    def forward(self, x):
        """Run the neuron over the leading SNN-step axis.

        Parameters
        ----------
        x : Tensor, shape (T, ...)
            Input current per step.

        Returns
        -------
        Tensor of 0/1, shape (T, ...)
        """
        thr = self.threshold * self.threshold_scale
        v = torch.zeros_like(x[0])
        out = []
        for xt in x:
            v = v + xt if self.tau is None else v + (xt - v) / self.tau
            s = ATanSpike.apply(v - thr, self.alpha)
            v = v * (1.0 - s)
            out.append(s)
        s = torch.stack(out)
        self.spikes += float(s.detach().sum())
        self.slots += s.numel()
        return s

    def extra_repr(self):
        return f"tau={self.tau}, threshold={self.threshold}"


def _merge(x):
    """(T, B, ...) -> (T*B, ...)."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _split(x, t):
    """(T*B, ...) -> (T, B, ...)."""
    return x.reshape(t, x.shape[0] // t, *x.shape[1:])


class TSMConv2d(nn.Module):
    """Convolution on spikes with batch norm and TSM's learnable per-step output scale ``p[n]``.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding : int
        As ``nn.Conv2d``.
    time_steps : int
        SNN steps ``T`` (length of ``p``).
    norm : bool
        Batch norm after the convolution.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, time_steps=4, norm=True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=not norm)
        self.norm = nn.BatchNorm2d(out_channels) if norm else nn.Identity()
        self.tsm_scale = nn.Parameter(torch.ones(time_steps))

    def forward(self, s):
        """s: (T, B, C, H, W) spikes -> (T, B, C', H', W') currents."""
        t = s.shape[0]
        y = _split(self.norm(self.conv(_merge(s))), t)
        return y * self.tsm_scale.view(t, *([1] * (y.ndim - 1)))


class SpikingResBlock(nn.Module):
    """Pre-spike residual block: ``x + conv2(lif2(conv1(lif1(x)) + emb))``, skip conv on spikes if needed."""

    def __init__(self, in_ch, out_ch, emb_dim, time_steps, tau, threshold):
        super().__init__()
        self.lif1 = LIFNeuron(tau, threshold)
        self.conv1 = TSMConv2d(in_ch, out_ch, time_steps=time_steps)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.lif2 = LIFNeuron(tau, threshold)
        self.conv2 = TSMConv2d(out_ch, out_ch, time_steps=time_steps)
        self.skip = None if in_ch == out_ch else TSMConv2d(in_ch, out_ch, 1, padding=0, time_steps=time_steps)

    def forward(self, x, emb):
        s = self.lif1(x)
        h = self.conv1(s) + self.emb_proj(emb)[None, :, :, None, None]
        h = self.conv2(self.lif2(h))
        return (x if self.skip is None else self.skip(s)) + h


class SpikingCrossAttention(nn.Module):
    """Cross-attention from spiking features to the conditioning tokens.

    Queries come from spikes (accumulates); keys and values from the real-valued conditioning tokens are
    computed once for all SNN steps; the two attention products and the output projection stay real-valued
    multiply-accumulates, which the energy estimate counts as such (``last_matmul_macs``).
    """

    def __init__(self, channels, token_dim, head_dim, tau, threshold):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.lif = LIFNeuron(tau, threshold)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(token_dim, channels, bias=False)
        self.to_v = nn.Linear(token_dim, channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        self.last_matmul_macs = 0

    def forward(self, x, tokens):
        t, b, c, h, w = x.shape
        s = self.lif(x)
        q = self.to_q(_merge(s).flatten(2).transpose(1, 2))  # (T*B, HW, C)
        k, v = self.to_k(tokens), self.to_v(tokens)  # (B, L, C), shared over the T steps
        k = k.repeat(t, 1, 1)
        v = v.repeat(t, 1, 1)

        def heads(z):
            return z.reshape(z.shape[0], z.shape[1], self.heads, c // self.heads).transpose(1, 2)

        o = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        o = o.transpose(1, 2).reshape(t * b, h * w, c)
        self.last_matmul_macs = 2 * t * b * h * w * k.shape[1] * c
        o = self.to_out(o).transpose(1, 2).reshape(t, b, c, h, w)
        return x + o


class PreconditionedOutput(nn.Module):
    """Noise prediction ``c_skip(t) x_t + c_out(t) F`` around the spiking network's output ``F``.

    With ``x_t = a x0 + s eps`` (``a = sqrt(alpha_bar_t)``, ``s = sqrt(1 - alpha_bar_t)``) and clean samples of
    second moment ``sigma_data**2``, the best *linear* estimate of ``eps`` from ``x_t`` is
    ``s / (a**2 sigma**2 + s**2) * x_t``, and what it leaves unexplained has standard deviation
    ``a sigma / sqrt(a**2 sigma**2 + s**2)``. Scaling the spiking output by the latter makes the network's
    target unit-sized at every step (the preconditioning idea of Karras et al., EDM, NeurIPS 2022, written for
    epsilon prediction). At high noise ``c_out`` -> 0: the spikes' quantisation error no longer reaches the
    prediction. The cost is two real-valued multiplies per output element, counted as MACs.

    Parameters
    ----------
    alphas_cumprod : Tensor, shape (num_train_timesteps,)
        The training noise schedule.
    sigma_data : float
        Root mean square of the clean samples (in the [-1, 1] or latent units the denoiser sees).
    """

    def __init__(self, alphas_cumprod, sigma_data):
        super().__init__()
        ab = alphas_cumprod.double()
        a2s2 = ab * sigma_data**2
        s2 = 1 - ab
        # Not persistent: rebuilt from the config, so weight files carry no copy of the schedule.
        self.register_buffer("c_skip", (s2.sqrt() / (a2s2 + s2)).float(), persistent=False)
        self.register_buffer("c_out", (a2s2.sqrt() / (a2s2 + s2).sqrt()).float(), persistent=False)
        self.last_elementwise_macs = 0

    def forward(self, sample, timestep, f):
        """sample, f: (B, C, H, W); timestep: (B,) integer steps -> (B, C, H, W)."""
        t = timestep.long().clamp(0, len(self.c_skip) - 1)
        view = (-1,) + (1,) * (sample.ndim - 1)
        self.last_elementwise_macs = 2 * f.numel()
        return self.c_skip[t].view(view) * sample + self.c_out[t].view(view) * f


def timestep_embedding(timesteps, dim):
    """Sinusoidal embedding of diffusion steps, shape (batch, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class SpikingUNet(ModelMixin, ConfigMixin):
    """Spiking conditional U-Net with the same topology and interface as :class:`ConditionalUNet`.

    Same levels, widths, residual blocks per level, down/up-sampling, skip connections and cross-attention
    levels as the ANN denoiser. Differences: spiking neurons before every convolution but the first, batch
    norm instead of group norm, and a single cross-attention (no self-attention / feed-forward) per
    attention site.

    Parameters
    ----------
    sample_size, in_channels, cond_dim, n_tokens, cross_attention_dim, block_out_channels,
    layers_per_block, attention_levels, attention_head_dim, spatial_channels
        As :class:`ConditionalUNet`.
    time_steps : int
        SNN steps ``T`` each network evaluation is simulated for.
    tau : float | None
        LIF membrane constant; None for integrate-and-fire (SDM's choice).
    threshold : float
        Firing threshold of every neuron.
    output_skip : bool
        Preconditioned output (:class:`PreconditionedOutput`); needs the training noise schedule below.
    sigma_data : float
        Root mean square of the clean training samples (preconditioned output only).
    num_train_timesteps, beta_schedule
        The training noise schedule (diffusers ``DDPMScheduler`` arguments; preconditioned output only).
    """

    @register_to_config
    def __init__(
        self,
        sample_size=16,
        in_channels=1,
        cond_dim=64,
        n_tokens=4,
        cross_attention_dim=64,
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_levels=(False, True),
        attention_head_dim=16,
        spatial_channels=0,
        time_steps=4,
        tau=None,
        threshold=1.0,
        output_skip=False,
        sigma_data=0.5,
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
    ):
        super().__init__()
        chs = tuple(block_out_channels)
        attention_levels = tuple(attention_levels)
        if len(attention_levels) != len(chs):
            raise UsageError(
                f"Invalid 'attention_levels': expected one flag per level ({len(chs)}), but got {len(attention_levels)}."
            )
        if time_steps < 1:
            raise UsageError(f"Invalid value for the 'time_steps' parameter: expected >= 1, but got {time_steps}.")
        emb_dim = 4 * chs[0]
        ts = time_steps

        def res(i, o):
            return SpikingResBlock(i, o, emb_dim, ts, tau, threshold)

        def attn(c):
            return SpikingCrossAttention(c, cross_attention_dim, attention_head_dim, tau, threshold)

        self.time_mlp = nn.Sequential(nn.Linear(chs[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.cond_proj = nn.Linear(cond_dim, n_tokens * cross_attention_dim)
        self.null_embed = nn.Parameter(torch.zeros(cond_dim))
        self.register_buffer("cond_mean", torch.zeros(cond_dim))
        self.register_buffer("cond_std", torch.ones(cond_dim))
        self.conv_in = nn.Conv2d(in_channels + spatial_channels, chs[0], 3, padding=1)

        # Down path; like diffusers, every block output is kept for a skip connection.
        self.down = nn.ModuleList()
        skip_chs = [chs[0]]
        prev = chs[0]
        for lvl, c in enumerate(chs):
            blocks = nn.ModuleList()
            for _ in range(layers_per_block):
                blocks.append(nn.ModuleList([res(prev, c)] + ([attn(c)] if attention_levels[lvl] else [])))
                prev = c
                skip_chs.append(c)
            level = nn.Module()
            level.blocks = blocks
            level.down_lif = None
            if lvl < len(chs) - 1:
                level.down_lif = LIFNeuron(tau, threshold)
                level.downsample = TSMConv2d(c, c, 3, stride=2, padding=1, time_steps=ts)
                skip_chs.append(c)
            self.down.append(level)

        self.mid_res1 = res(prev, prev)
        self.mid_attn = attn(prev)
        self.mid_res2 = res(prev, prev)

        self.up = nn.ModuleList()
        for lvl in reversed(range(len(chs))):
            c = chs[lvl]
            blocks = nn.ModuleList()
            for _ in range(layers_per_block + 1):
                blocks.append(nn.ModuleList([res(prev + skip_chs.pop(), c)] + ([attn(c)] if attention_levels[lvl] else [])))
                prev = c
            level = nn.Module()
            level.blocks = blocks
            level.up_lif = None
            if lvl > 0:
                level.up_lif = LIFNeuron(tau, threshold)
                level.upsample = TSMConv2d(c, c, 3, padding=1, time_steps=ts)
            self.up.append(level)

        self.out_lif = LIFNeuron(tau, threshold)
        self.conv_out = TSMConv2d(prev, in_channels, 3, padding=1, time_steps=ts, norm=False)
        self.precondition = None
        if output_skip:
            if not sigma_data > 0:
                raise UsageError(f"Invalid value for the 'sigma_data' parameter: expected > 0, but got {sigma_data}.")
            from diffusers import DDPMScheduler

            ab = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule).alphas_cumprod
            self.precondition = PreconditionedOutput(ab, float(sigma_data))

    # ----------------------------------------------------------------------------------------------
    def set_conditioning_stats(self, embeds):
        """Store the per-dimension mean and standard deviation of training conditioning vectors (n, cond_dim)."""
        set_conditioning_stats(self, embeds)

    def neurons(self):
        """Named spiking neurons, in network order."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, LIFNeuron)]

    @property
    def threshold_scale(self):
        return self.neurons()[0][1].threshold_scale

    @threshold_scale.setter
    def threshold_scale(self, value):
        if not value > 0:
            raise UsageError(f"Invalid value for 'threshold_scale': expected a positive number, but got {value}.")
        for _, m in self.neurons():
            m.threshold_scale = float(value)

    def reset_stats(self):
        """Zero the spike counters of every neuron."""
        for _, m in self.neurons():
            m.reset_stats()

    def firing_rates(self):
        """Firing rate per neuron layer since the last :meth:`reset_stats`, as ``{name: rate}``."""
        return {n: (m.spikes / m.slots if m.slots else float("nan")) for n, m in self.neurons()}

    def tsm_parameters(self):
        """The temporal-wise scaling parameters ``p`` (what TSM fine-tuning trains)."""
        return [p for n, p in self.named_parameters() if n.endswith("tsm_scale")]

    # ----------------------------------------------------------------------------------------------
    def forward(self, sample, timestep, embeds, spatial_maps=None, drop_mask=None):
        """Predict the noise in ``sample`` (same signature as :meth:`ConditionalUNet.forward`).

        Parameters
        ----------
        sample : Tensor, shape (batch, in_channels, sample_size, sample_size)
        timestep : Tensor, shape (batch,) or scalar
        embeds : Tensor, shape (batch, cond_dim) or (batch, n, cond_dim)
        spatial_maps : Tensor, shape (batch, spatial_channels, h, w) | None
        drop_mask : Tensor of bool, shape (batch,) | None

        Returns
        -------
        Tensor, shape like ``sample``
        """
        b = sample.shape[0]
        t_snn = self.config.time_steps
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        emb = self.time_mlp(timestep_embedding(timestep, self.config.block_out_channels[0]).to(sample.dtype))
        tokens = project_conditioning(
            self.cond_proj, self.null_embed, embeds, self.config.n_tokens, drop_mask, self.cond_mean, self.cond_std
        )
        x = prepare_spatial(sample, spatial_maps, self.config.spatial_channels)
        # The real-valued input is identical at every SNN step, so the first conv runs once.
        h = self.conv_in(x)[None].expand(t_snn, *([-1] * 4)).contiguous()

        skips = [h]
        for level in self.down:
            for block in level.blocks:
                h = block[0](h, emb)
                if len(block) > 1:
                    h = block[1](h, tokens)
                skips.append(h)
            if level.down_lif is not None:
                h = level.downsample(level.down_lif(h))
                skips.append(h)

        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb), tokens), emb)

        for level in self.up:
            for block in level.blocks:
                h = block[0](torch.cat([h, skips.pop()], dim=2), emb)
                if len(block) > 1:
                    h = block[1](h, tokens)
            if level.up_lif is not None:
                s = level.up_lif(h)
                # Nearest up-sampling copies spikes, so it commutes with the neuron; spikes stay binary.
                s = _split(F.interpolate(_merge(s), scale_factor=2.0, mode="nearest"), t_snn)
                h = level.upsample(s)

        f = self.conv_out(self.out_lif(h)).mean(0)
        if self.precondition is not None:
            f = self.precondition(sample, timestep, f)
        return f
