"""The conventional (ANN) denoiser: a diffusers ``UNet2DConditionModel`` sized for CPU training.

The brain conditioning enters in two ways:

* high level: ``embeds`` ``(batch, d)`` or ``(batch, n, d)`` are projected to a few cross-attention
  tokens (``n_tokens`` per input vector) that every cross-attention layer of the U-Net reads;
* low level (optional, used by the fMRI path): ``spatial_maps`` ``(batch, spatial_channels, h, w)`` are
  resized to the sample grid and concatenated to the noisy sample, so that the first convolution adds a
  learned map of them to the U-Net's first features (a convolution over a concatenation is the sum of two
  convolutions).

A learned null vector replaces the conditioning when it is dropped (classifier-free guidance).
"""

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..utils import UsageError


def project_conditioning(proj, null_embed, embeds, n_tokens, drop_mask=None, mean=None, std=None):
    """Turn conditioning vectors into cross-attention tokens.

    Vectors are standardised with ``mean``/``std`` (the training set's, stored in the model) so that a
    decoder's raw output in the image encoder's space can be passed as is.

    Parameters
    ----------
    proj : nn.Linear
        ``cond_dim -> n_tokens * token_dim``.
    null_embed : nn.Parameter, shape (cond_dim,)
        Stands in for dropped (unconditional) samples.
    embeds : Tensor, shape (batch, cond_dim) or (batch, n, cond_dim)
    n_tokens : int
        Tokens made from each conditioning vector.
    drop_mask : Tensor of bool, shape (batch,) | None
        True where the conditioning is replaced by the null vector.
    mean, std : Tensor, shape (cond_dim,) | None

    Returns
    -------
    tokens : Tensor, shape (batch, n * n_tokens, token_dim)
    """
    if embeds.ndim == 2:
        embeds = embeds[:, None]
    if embeds.ndim != 3 or embeds.shape[-1] != null_embed.shape[0]:
        raise UsageError(
            f"Invalid 'embeds': expected shape (batch, {null_embed.shape[0]}) or (batch, n, {null_embed.shape[0]}), "
            f"but got {tuple(embeds.shape)}."
        )
    embeds = embeds.to(null_embed.dtype)
    if mean is not None:
        embeds = (embeds - mean) / std
    if drop_mask is not None:
        embeds = torch.where(drop_mask[:, None, None].to(embeds.device), null_embed.expand_as(embeds), embeds)
    b, n, _ = embeds.shape
    return proj(embeds).reshape(b, n * n_tokens, proj.out_features // n_tokens)


def prepare_spatial(sample, spatial_maps, spatial_channels):
    """Concatenate resized spatial maps to ``sample`` (or zeros when the model expects maps but none are given)."""
    if spatial_channels == 0:
        if spatial_maps is not None:
            raise UsageError(
                "Invalid 'spatial_maps': this denoiser was built with spatial_channels=0; "
                "build it with spatial_channels=C to use low-level maps."
            )
        return sample
    b, _, h, w = sample.shape
    if spatial_maps is None:
        maps = sample.new_zeros(b, spatial_channels, h, w)
    else:
        if spatial_maps.ndim != 4 or spatial_maps.shape[1] != spatial_channels or spatial_maps.shape[0] != b:
            raise UsageError(
                f"Invalid 'spatial_maps': expected shape ({b}, {spatial_channels}, h, w), "
                f"but got {tuple(spatial_maps.shape)}."
            )
        maps = spatial_maps.to(sample.dtype)
        if maps.shape[-2:] != (h, w):
            maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)
    return torch.cat([sample, maps], dim=1)


def set_conditioning_stats(model, embeds):
    e = torch.as_tensor(embeds, dtype=torch.float32).reshape(-1, model.cond_mean.shape[0])
    model.cond_mean.copy_(e.mean(0))
    # A floor keeps constant dimensions (e.g. dead ReLU features) from blowing up.
    model.cond_std.copy_(e.std(0).clamp_min(1e-3 * float(e.std(0).max()) + 1e-8))


class ConditionalUNet(ModelMixin, ConfigMixin):
    """Small conditional U-Net (diffusers ``UNet2DConditionModel``) predicting the added noise.

    Parameters
    ----------
    sample_size : int
        Height and width of the (pixel or latent) sample.
    in_channels : int
        Channels of the sample (1 for grey images, 3 for RGB, the latent channels of an autoencoder).
    cond_dim : int
        Size of a conditioning vector (the decoder's embedding size).
    n_tokens : int
        Cross-attention tokens made from each conditioning vector.
    cross_attention_dim : int
        Width of those tokens.
    block_out_channels : tuple of int
        Channels per resolution level; level ``i`` runs at ``sample_size / 2**i``.
    layers_per_block : int
        Residual blocks per level on the way down (one more on the way up).
    attention_levels : tuple of bool
        Which levels carry a cross-attention transformer (the middle block always does).
    attention_head_dim : int
        Channels per attention head.
    norm_num_groups : int
        Groups of the group normalisations.
    spatial_channels : int
        Channels of optional low-level spatial maps (0: none).
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
        norm_num_groups=8,
        spatial_channels=0,
    ):
        super().__init__()
        block_out_channels = tuple(block_out_channels)
        attention_levels = tuple(attention_levels)
        if len(attention_levels) != len(block_out_channels):
            raise UsageError(
                f"Invalid 'attention_levels': expected one flag per level ({len(block_out_channels)}), "
                f"but got {len(attention_levels)}."
            )
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels)
        up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels))
        self.unet = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=in_channels + spatial_channels,
            out_channels=in_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            cross_attention_dim=cross_attention_dim,
            attention_head_dim=[c // attention_head_dim for c in block_out_channels],
            norm_num_groups=norm_num_groups,
        )
        self.cond_proj = nn.Linear(cond_dim, n_tokens * cross_attention_dim)
        self.null_embed = nn.Parameter(torch.zeros(cond_dim))
        self.register_buffer("cond_mean", torch.zeros(cond_dim))
        self.register_buffer("cond_std", torch.ones(cond_dim))

    def set_conditioning_stats(self, embeds):
        """Store the per-dimension mean and standard deviation of training conditioning vectors (n, cond_dim)."""
        set_conditioning_stats(self, embeds)

    def forward(self, sample, timestep, embeds, spatial_maps=None, drop_mask=None):
        """Predict the noise in ``sample``.

        Parameters
        ----------
        sample : Tensor, shape (batch, in_channels, sample_size, sample_size)
        timestep : Tensor, shape (batch,) or scalar
        embeds : Tensor, shape (batch, cond_dim) or (batch, n, cond_dim)
        spatial_maps : Tensor, shape (batch, spatial_channels, h, w) | None
        drop_mask : Tensor of bool, shape (batch,) | None
            Samples whose conditioning is replaced by the null vector.

        Returns
        -------
        Tensor, shape like ``sample``
        """
        tokens = project_conditioning(
            self.cond_proj, self.null_embed, embeds, self.config.n_tokens, drop_mask, self.cond_mean, self.cond_std
        )
        x = prepare_spatial(sample, spatial_maps, self.config.spatial_channels)
        return self.unet(x, timestep, encoder_hidden_states=tokens).sample
