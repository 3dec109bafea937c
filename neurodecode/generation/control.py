"""Low-level control of a frozen generator: a ControlNet-style trainable copy of the U-Net's down path.

NeuroPictor (Huo et al., ECCV 2024) steers a frozen text-to-image U-Net with fMRI-derived spatial
maps through a ControlNet: a trainable copy of the U-Net's encoder (down blocks and middle block)
reads the noisy sample plus the maps, and its features enter the frozen U-Net's skip connections
through *zero-initialised* 1x1 convolutions. Training therefore starts exactly from the
unmodulated generator and only moves away from it as far as the loss asks.

This module does the same for the project's :class:`~neurodecode.generation.unet.ConditionalUNet`
(our own code around diffusers' ``ControlNetModel``, whose ``from_unet`` makes the copy and whose
output convolutions are zero-initialised):

* :class:`ControlledUNet` -- frozen base U-Net + trainable control copy; same call signature as the
  other denoisers, so :class:`~neurodecode.generation.pipeline.BrainToImagePipeline` samples with it
  unchanged (``spatial_maps`` are the control hint; maps that are exactly zero switch the control off
  for that sample, which is what the pipeline's unconditional branch passes);
* :class:`DiffusionBackend` -- the frozen generator's noise-prediction loss as a training objective
  for an fMRI encoder (and the control copy): ``diffusion_loss(images, encoder_outputs)``, used by
  :class:`~neurodecode.training.neuropictor_system.NeuroPictorSystem` with ``w_diffusion > 0``.
"""

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ControlNetModel, DDPMScheduler, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..utils import UsageError
from .unet import ConditionalUNet, project_conditioning

_BASE_ARGS = ("sample_size", "in_channels", "cond_dim", "n_tokens", "cross_attention_dim", "block_out_channels",
              "layers_per_block", "attention_levels", "attention_head_dim", "norm_num_groups")


class ControlledUNet(ModelMixin, ConfigMixin):
    """A frozen :class:`ConditionalUNet` steered by spatial maps through a trainable ControlNet copy.

    Parameters
    ----------
    sample_size, in_channels, cond_dim, n_tokens, cross_attention_dim, block_out_channels,
    layers_per_block, attention_levels, attention_head_dim, norm_num_groups :
        The base U-Net's configuration (see :class:`ConditionalUNet`; it is built with
        ``spatial_channels=0``: the low level enters through the control copy only).
    spatial_channels : int
        Channels of the control maps (the hint). Maps of any size are resized to the sample grid.
    hint_channels : tuple of int
        Widths of the small convolutional hint encoder (diffusers' ``conditioning_embedding_out_channels``;
        each entry after the first halves the resolution, so the default keeps the sample grid).
    control_scale : float
        Multiplies the control residuals at inference (NeuroPictor: 1.0).
    """

    @register_to_config
    def __init__(self, sample_size=16, in_channels=1, cond_dim=64, n_tokens=4, cross_attention_dim=64,
                 block_out_channels=(32, 64), layers_per_block=1, attention_levels=(False, True), attention_head_dim=16,
                 norm_num_groups=8, spatial_channels=1, hint_channels=(16,), control_scale=1.0):
        super().__init__()
        if int(spatial_channels) < 1:
            raise UsageError(f"Invalid 'spatial_channels': a control network needs maps (>= 1 channel), got {spatial_channels}.")
        if len(tuple(hint_channels)) != 1:
            # More entries downsample the hint; our maps are resized to the sample grid instead.
            raise UsageError(f"Invalid 'hint_channels': expected one width, e.g. (16,), but got {tuple(hint_channels)}.")
        self.base = ConditionalUNet(sample_size=sample_size, in_channels=in_channels, cond_dim=cond_dim, n_tokens=n_tokens,
                                    cross_attention_dim=cross_attention_dim, block_out_channels=block_out_channels,
                                    layers_per_block=layers_per_block, attention_levels=attention_levels,
                                    attention_head_dim=attention_head_dim, norm_num_groups=norm_num_groups,
                                    spatial_channels=0)
        self._make_control()

    def _make_control(self):
        # The copy starts from the base's down path; its output convolutions are zero (diffusers' zero_module).
        self.control = ControlNetModel.from_unet(self.base.unet, conditioning_embedding_out_channels=tuple(self.config.hint_channels),
                                                 conditioning_channels=int(self.config.spatial_channels))
        self.base.requires_grad_(False)

    @classmethod
    def from_base(cls, base, spatial_channels=1, hint_channels=(16,), control_scale=1.0):
        """Wrap a trained :class:`ConditionalUNet` (``spatial_channels=0``): copy its weights, freeze them,
        and initialise the control copy from its down path.

        Parameters
        ----------
        base : ConditionalUNet
        spatial_channels : int
        hint_channels : tuple of int
        control_scale : float

        Returns
        -------
        ControlledUNet
        """
        if not isinstance(base, ConditionalUNet):
            raise UsageError(f"Invalid 'base': expected a ConditionalUNet, but got {type(base).__name__}.")
        if base.config.spatial_channels != 0:
            raise UsageError("The base U-Net must be built with spatial_channels=0: its low level comes from the control copy.")
        model = cls(**{k: base.config[k] for k in _BASE_ARGS}, spatial_channels=spatial_channels,
                    hint_channels=tuple(hint_channels), control_scale=control_scale)
        model.base.load_state_dict(base.state_dict())
        model._make_control()  # copy again, now from the trained weights
        return model.to(next(base.parameters()).device)

    # What the pipeline and backend_conditioning read from a denoiser.
    @property
    def null_embed(self):
        return self.base.null_embed

    @property
    def cond_mean(self):
        return self.base.cond_mean

    @property
    def cond_std(self):
        return self.base.cond_std

    def train(self, mode=True):
        super().train(mode)
        self.base.eval()  # frozen: keep it in inference mode whatever the wrapper's mode
        return self

    def control_residuals(self, sample, timestep, tokens, spatial_maps, control_mask=None):
        """Residuals of the control copy for the base's skip connections and middle block.

        Parameters
        ----------
        sample : Tensor, shape (batch, in_channels, S, S)
        timestep : Tensor, shape (batch,) or scalar
        tokens : Tensor, shape (batch, n, cross_attention_dim)
        spatial_maps : Tensor, shape (batch, spatial_channels, h, w)
        control_mask : Tensor, shape (batch,) | None
            1 where the control acts, 0 where it does not; default: off exactly where a sample's maps are
            all zero (the pipeline's "no low level").

        Returns
        -------
        down : tuple of Tensor
        mid : Tensor
        """
        b, c = spatial_maps.shape[:2]
        if spatial_maps.ndim != 4 or c != self.config.spatial_channels or b != sample.shape[0]:
            raise UsageError(
                f"Invalid 'spatial_maps': expected shape ({sample.shape[0]}, {self.config.spatial_channels}, h, w), "
                f"but got {tuple(spatial_maps.shape)}."
            )
        maps = spatial_maps.to(sample.dtype)
        if control_mask is None:
            control_mask = (maps.flatten(1).abs().amax(1) > 0).to(sample.dtype)
        if maps.shape[-2:] != sample.shape[-2:]:
            maps = F.interpolate(maps, size=sample.shape[-2:], mode="bilinear", align_corners=False)
        down, mid = self.control(sample, timestep, encoder_hidden_states=tokens, controlnet_cond=maps,
                                 conditioning_scale=float(self.config.control_scale), return_dict=False)
        m = control_mask.to(sample.dtype).view(-1, 1, 1, 1)
        return tuple(d * m for d in down), mid * m

    def forward(self, sample, timestep, embeds, spatial_maps=None, drop_mask=None, control_mask=None):
        """Predict the noise in ``sample``.

        Parameters
        ----------
        sample : Tensor, shape (batch, in_channels, sample_size, sample_size)
        timestep : Tensor, shape (batch,) or scalar
        embeds : Tensor, shape (batch, cond_dim) or (batch, n, cond_dim)
        spatial_maps : Tensor, shape (batch, spatial_channels, h, w) | None
            Control hint; ``None`` runs the base U-Net alone.
        drop_mask : Tensor of bool, shape (batch,) | None
            Samples whose high-level conditioning is replaced by the null vector.
        control_mask : Tensor, shape (batch,) | None
            See :meth:`control_residuals`.

        Returns
        -------
        Tensor, shape like ``sample``
        """
        base = self.base
        tokens = project_conditioning(base.cond_proj, base.null_embed, embeds, base.config.n_tokens, drop_mask,
                                      base.cond_mean, base.cond_std)
        if spatial_maps is None:
            return base.unet(sample, timestep, encoder_hidden_states=tokens).sample
        down, mid = self.control_residuals(sample, timestep, tokens, spatial_maps, control_mask)
        return base.unet(sample, timestep, encoder_hidden_states=tokens, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample


class DiffusionBackend(nn.Module):
    """The frozen generator's denoising loss, as an objective for an fMRI encoder and the control copy.

    Parameters
    ----------
    denoiser : ControlledUNet
        Its base U-Net stays frozen; its control copy is trained when ``train_control``.
    noise_scheduler : diffusers scheduler | None
        Defines the forward noising (default: DDPM, 1000 steps, cosine schedule, as the benchmark's generator).
    train_control : bool
        Also update the control copy (NeuroPictor trains it together with the fMRI encoder).
    cond_dropout, map_dropout : float
        Probability of replacing a sample's decoded embedding by the null vector / switching its control
        off, so that the high-only and low-only modes stay in the training distribution.
    map_noise : float
        While training, each sample's maps get Gaussian noise of a standard deviation drawn uniformly from
        ``[0, map_noise]``. A control copy trained on exact maps follows them blindly; decoded maps are
        wrong in places, and with noisy hints the copy learns to weigh them against the high-level
        conditioning (0: exact maps).
    """

    def __init__(self, denoiser, noise_scheduler=None, train_control=True, cond_dropout=0.1, map_dropout=0.1,
                 map_noise=0.0):
        super().__init__()
        if not isinstance(denoiser, ControlledUNet):
            raise UsageError(f"Invalid 'denoiser': expected a ControlledUNet, but got {type(denoiser).__name__}.")
        self.denoiser = denoiser
        self.noise_scheduler = noise_scheduler or DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
        self.cond_dropout, self.map_dropout, self.map_noise = float(cond_dropout), float(map_dropout), float(map_noise)
        denoiser.base.requires_grad_(False)
        denoiser.control.requires_grad_(bool(train_control))

    def diffusion_loss(self, images, outputs):
        """Noise-prediction MSE of the frozen generator conditioned on decoded features.

        Parameters
        ----------
        images : Tensor, shape (batch, in_channels, S, S), values in [-1, 1]
            The seen images at the generator's resolution.
        outputs : dict
            The encoder's ``embeds`` (batch, cond_dim) and ``maps`` (batch, spatial_channels, h, w).

        Returns
        -------
        Tensor, scalar
            Differentiable with respect to ``outputs`` and the control copy.
        """
        den = self.denoiser
        x0 = images.to(den.base.null_embed.dtype)
        size = den.config.sample_size
        if x0.ndim != 4 or x0.shape[1] != den.config.in_channels or x0.shape[-1] != size or x0.shape[-2] != size:
            raise UsageError(
                f"Invalid 'images': expected shape (batch, {den.config.in_channels}, {size}, {size}) in [-1, 1], "
                f"but got {tuple(x0.shape)}."
            )
        b = x0.shape[0]
        dev = x0.device
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), device=dev)
        xt = self.noise_scheduler.add_noise(x0, noise, t)
        drop = torch.rand(b, device=dev) < self.cond_dropout if self.training else None
        keep = (torch.rand(b, device=dev) >= self.map_dropout).float() if self.training else torch.ones(b, device=dev)
        maps = outputs["maps"]
        if self.training and self.map_noise > 0:
            sd = torch.rand(b, 1, 1, 1, device=dev) * self.map_noise
            maps = maps + sd * torch.randn_like(maps)
        # control_mask is explicit so that all-zero maps (the encoder's zero-initialised head) still get gradients.
        eps = den(xt, t, outputs["embeds"], spatial_maps=maps, drop_mask=drop, control_mask=keep)
        return F.mse_loss(eps, noise)
