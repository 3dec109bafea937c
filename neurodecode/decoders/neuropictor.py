"""NeuroPictor fMRI encoder (Huo et al., ECCV 2024), sized for CPU.

Three parts, after the paper's design (our own implementation):

* **Calibrated encoding.** Each subject has its own input layer mapping its voxels (any count)
  to ``n_tokens`` tokens of width ``d_model`` in one latent space shared by all subjects; a
  shared transformer encoder then reads the tokens. Training first across subjects, then
  refining on one subject (:mod:`neurodecode.training.neuropictor_system`), lets a subject with
  little data borrow the shared transformer and heads.
* **High-level semantic head.** Mixes the tokens (a 1x1 token mixer, as the paper's Conv1d
  257 -> 77) into ``n_cond_tokens`` cross-attention tokens of width ``cond_dim`` and pools them
  into an embedding of the image encoder's size (``embed_dim``), trained towards the image
  embedding (and optionally a text embedding).
* **Low-level manipulation head.** Turns the tokens into spatial maps ``(map_channels,
  map_size, map_size)`` meant to be added to the U-Net's features (ControlNet-style). Its last
  convolution is zero-initialised, so at the start of training the maps are exactly zero and the
  generator runs unmodulated.

The paper's encoder is a 257 x 1024 transformer pretrained on UK Biobank surface maps; here the
voxels come straight from a masker and everything is small enough to train in minutes on a core.
"""

import torch
from torch import nn

from ..utils import UsageError
from ._registry import register_decoder
from .conditioning import BrainConditioning


class _SubjectInput(nn.Module):
    """Subject-specific calibration: voxels -> (n_tokens, d_model)."""

    def __init__(self, n_voxels, n_tokens, d_model, dropout):
        super().__init__()
        self.n_tokens, self.d_model = n_tokens, d_model
        self.drop = nn.Dropout(dropout)
        self.linear = nn.Linear(n_voxels, n_tokens * d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x):
        return self.norm(self.linear(self.drop(x)).view(len(x), self.n_tokens, self.d_model))


@register_decoder("neuropictor")
class NeuroPictorEncoder(nn.Module):
    """fMRI responses -> high-level tokens/embedding and low-level spatial maps.

    Parameters
    ----------
    n_voxels : dict of str to int
        Voxel count of each subject, e.g. ``{"sub-01": 1500, "sub-02": 900}``.
    embed_dim : int
        Size of the image-encoder embedding the high-level head predicts (1280 for the default
        EfficientNet-Lite0 encoder).
    n_tokens, d_model, depth, n_heads : int
        Shared latent: tokens per sample, width, transformer layers and heads.
    n_cond_tokens, cond_dim : int
        Cross-attention tokens given to the generator; ``cond_dim=None`` uses ``embed_dim``.
    map_channels, map_size : int
        Low-level maps, shape (map_channels, map_size, map_size).
    text_dim : int | None
        Size of an optional text embedding the high-level head also predicts.
    dropout : float
        Dropout on voxels and in the transformer.
    """

    def __init__(self, n_voxels, embed_dim=1280, n_tokens=16, d_model=128, depth=2, n_heads=4,
                 n_cond_tokens=4, cond_dim=None, map_channels=32, map_size=8, text_dim=None, dropout=0.1):
        super().__init__()
        if not isinstance(n_voxels, dict) or not n_voxels:
            raise UsageError("The 'n_voxels' parameter must be a non-empty dict {subject: voxel count}.")
        for name, nv in n_voxels.items():
            if int(nv) < 1:
                raise UsageError(f"The 'n_voxels' entry for subject {name!r} must be a positive count, got {nv!r}.")
        if d_model % n_heads:
            raise UsageError(f"'d_model' ({d_model}) must be divisible by 'n_heads' ({n_heads}).")
        self.n_voxels = {str(k): int(v) for k, v in n_voxels.items()}
        self.embed_dim, self.n_tokens, self.d_model = embed_dim, n_tokens, d_model
        self.n_cond_tokens = n_cond_tokens
        self.cond_dim = cond_dim or embed_dim
        self.map_channels, self.map_size = map_channels, map_size
        self.text_dim = text_dim
        self.dropout = dropout
        self.subject_layers = nn.ModuleDict(
            {k: _SubjectInput(v, n_tokens, d_model, dropout) for k, v in self.n_voxels.items()}
        )
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 2 * d_model, dropout, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        # High-level: token mixer (n_tokens -> n_cond_tokens) then width projection.
        self.token_mixer = nn.Linear(n_tokens, n_cond_tokens)
        self.cond_proj = nn.Sequential(nn.Linear(d_model, self.cond_dim), nn.LayerNorm(self.cond_dim))
        self.embed_head = nn.Linear(n_cond_tokens * d_model, embed_dim)
        self.text_head = nn.Linear(n_cond_tokens * d_model, text_dim) if text_dim else None
        # Low-level: tokens -> coarse maps -> conv -> zero-initialised conv (ControlNet's zero conv).
        hidden = max(map_channels, 16)
        self.map_in = nn.Linear(n_tokens * d_model, hidden * map_size * map_size)
        self.map_conv = nn.Sequential(nn.SiLU(), nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU())
        self.zero_conv = nn.Conv2d(hidden, map_channels, 1)
        nn.init.zeros_(self.zero_conv.weight)
        nn.init.zeros_(self.zero_conv.bias)

    @property
    def subjects(self):
        return list(self.n_voxels)

    def add_subject(self, name, n_voxels):
        """Add an input layer for a new subject (refinement on an unseen subject)."""
        self.n_voxels[str(name)] = int(n_voxels)
        self.subject_layers[str(name)] = _SubjectInput(int(n_voxels), self.n_tokens, self.d_model, self.dropout)
        return self

    def keep_subjects(self, names):
        """Drop the input layers of every subject not in ``names`` (e.g. to ship a refined model)."""
        names = [str(n) for n in names]
        unknown = [n for n in names if n not in self.n_voxels]
        if unknown:
            raise UsageError(f"Invalid subjects {unknown}: this encoder has {self.subjects}.")
        self.n_voxels = {n: self.n_voxels[n] for n in names}
        self.subject_layers = nn.ModuleDict({n: self.subject_layers[n] for n in names})
        return self

    def latent(self, x, subject):
        """Shared latent tokens, shape (batch, n_tokens, d_model)."""
        if subject not in self.subject_layers:
            raise UsageError(
                f"Invalid value for the 'subject' parameter. Allowed values are {self.subjects}, but got {subject!r} instead."
            )
        nv = self.n_voxels[subject]
        if x.ndim != 2 or x.shape[1] != nv:
            raise UsageError(f"Subject {subject!r} has {nv} voxels; expected input (batch, {nv}), got {tuple(x.shape)}.")
        h = self.subject_layers[subject](x) + self.pos
        return self.norm(self.transformer(h))

    def forward(self, x, subject):
        """Encode a batch of one subject's responses.

        Parameters
        ----------
        x : Tensor, shape (batch, n_voxels[subject])
        subject : str

        Returns
        -------
        dict
            ``tokens`` (batch, n_cond_tokens, cond_dim), ``embeds`` (batch, embed_dim),
            ``maps`` (batch, map_channels, map_size, map_size) and, with ``text_dim``,
            ``text`` (batch, text_dim).
        """
        h = self.latent(x, subject)
        mixed = self.token_mixer(h.transpose(1, 2)).transpose(1, 2)  # (B, n_cond_tokens, d_model)
        out = {"tokens": self.cond_proj(mixed), "embeds": self.embed_head(mixed.flatten(1))}
        if self.text_head is not None:
            out["text"] = self.text_head(mixed.flatten(1))
        m = self.map_in(h.flatten(1)).view(len(x), -1, self.map_size, self.map_size)
        out["maps"] = self.zero_conv(self.map_conv(m))
        return out

    @torch.no_grad()
    def encode(self, x, subject, *, levels=("high", "low")):
        """Return :class:`BrainConditioning` for the generation backend.

        Parameters
        ----------
        x : array-like, shape (batch, n_voxels[subject])
        subject : str
        levels : tuple of {"high", "low"}
            Which guidance to give; a level left out is returned as zeros (high) or ``None`` (low),
            for the ablations.
        """
        for lv in levels:
            if lv not in ("high", "low"):
                raise UsageError(f"Invalid value in 'levels'. Allowed values are 'high' and 'low', but got {lv!r} instead.")
        was = self.training
        self.eval()
        x = torch.as_tensor(x, dtype=torch.float32)
        out = self.forward(x, subject)
        self.train(was)
        embeds = out["embeds"] if "high" in levels else torch.zeros_like(out["embeds"])
        maps = out["maps"] if "low" in levels else None
        return BrainConditioning(embeds, maps, meta={"decoder": "neuropictor", "subject": subject,
                                                     "levels": list(levels), "tokens": out["tokens"]})


def backend_conditioning(conditioning, denoiser):
    """Adapt a NeuroPictor :class:`BrainConditioning` to a generation-backend denoiser.

    * Without the high level (``meta["levels"]`` lacks ``"high"``) the embeddings become the
      denoiser's learned null vector, expressed in its input space, so that the generator runs
      exactly as in its unconditional (classifier-free) branch rather than on an all-zero vector.
    * The low-level maps are kept only if the denoiser takes spatial maps with as many channels.

    Parameters
    ----------
    conditioning : BrainConditioning
        From :meth:`NeuroPictorEncoder.encode`.
    denoiser : ConditionalUNet or SpikingUNet
        The backend's denoiser (``config.cond_dim``, ``config.spatial_channels``, ``null_embed``).

    Returns
    -------
    BrainConditioning
    """
    levels = (conditioning.meta or {}).get("levels", ["high", "low"])
    embeds = torch.as_tensor(conditioning.embeds, dtype=torch.float32)
    cfg = denoiser.config
    if embeds.shape[-1] != cfg.cond_dim:
        raise UsageError(
            f"The fMRI encoder predicts {embeds.shape[-1]}-d embeddings but the generator expects cond_dim={cfg.cond_dim}; "
            "train both with the same image encoder."
        )
    if "high" not in levels:
        null = denoiser.null_embed.detach()
        # The denoiser standardises its inputs before swapping in the null vector; undo that here.
        if hasattr(denoiser, "cond_mean"):
            null = null * denoiser.cond_std + denoiser.cond_mean
        embeds = null.expand(len(embeds), -1).clone()
    maps = conditioning.spatial_maps
    n_sp = getattr(cfg, "spatial_channels", 0)
    if maps is not None and n_sp == 0:
        maps = None
    elif maps is not None and maps.shape[1] != n_sp:
        raise UsageError(
            f"The fMRI encoder makes {maps.shape[1]}-channel maps but the generator takes spatial_channels={n_sp}."
        )
    return BrainConditioning(embeds, maps, meta=conditioning.meta)
