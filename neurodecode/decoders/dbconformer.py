"""DBConformer: a dual-branch convolutional transformer for EEG decoding.

Re-implemented from the description in Wang et al., "DBConformer: Dual-Branch Convolutional
Transformer for EEG Decoding", IEEE JBHI 2026 (arXiv 2506.21140). No code from the authors'
repository (non-commercial licence) is used.

The model looks at a trial twice:

* a **temporal branch** (T-Conformer) mixes the channels with a pointwise convolution, filters each
  mixed signal with a long depthwise temporal kernel, averages non-overlapping patches into tokens
  and runs a transformer over the sequence of time patches;
* a **spatial branch** (S-Conformer) embeds every channel on its own with a small strided
  convolution, giving one token per electrode, and runs a transformer across electrodes.

The temporal tokens are averaged, the channel tokens are pooled with learned attention weights
(which also tell which electrodes mattered), both summaries are concatenated and classified by a
small MLP whose last layer is ``final_layer`` (braindecode's convention, no softmax).
"""

import torch
from braindecode.models.base import EEGModuleMixin
from torch import nn

from ._registry import register_decoder


def _transformer(emb_size, depth, num_heads, drop_prob):
    """Pre-norm transformer encoder: ``depth`` blocks of MHA + GELU feed-forward (4x), residuals."""
    layer = nn.TransformerEncoderLayer(
        d_model=emb_size,
        nhead=num_heads,
        dim_feedforward=4 * emb_size,
        dropout=drop_prob,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    # Nested tensors only apply to post-norm layers; disabling them silences torch's notice.
    return nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)


class _TemporalEmbedding(nn.Module):
    """(B, C, T) -> (B, P, D) patch tokens, P = T // patch_size."""

    def __init__(self, n_chans, emb_size, kernel_size, patch_size, drop_prob):
        super().__init__()
        # Pointwise spatial filter: D virtual channels, each a learned mix of the electrodes.
        self.spatial = nn.Sequential(nn.Conv1d(n_chans, emb_size, 1, bias=False), nn.BatchNorm1d(emb_size))
        # One long temporal filter per virtual channel (depthwise), "same" padding.
        self.temporal = nn.Sequential(
            nn.Conv1d(emb_size, emb_size, kernel_size, padding=kernel_size // 2, groups=emb_size, bias=False),
            nn.BatchNorm1d(emb_size),
            nn.GELU(),
        )
        # Average pooling over non-overlapping windows turns the filtered signals into tokens;
        # a trailing remainder shorter than a patch is dropped.
        self.patch = nn.AvgPool1d(patch_size, stride=patch_size)
        self.drop = nn.Dropout(drop_prob)

    def forward(self, x):
        x = self.temporal(self.spatial(x))
        return self.drop(self.patch(x)).transpose(1, 2)


class _ChannelEmbedding(nn.Module):
    """(B, C, T) -> (B, C, D): every electrode becomes one token, with shared weights."""

    def __init__(self, emb_size, spa_dim, kernel_size=25, stride=5):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(1, spa_dim, kernel_size, stride=stride, padding=kernel_size // 2), nn.ELU()
        )
        self.proj = nn.Linear(spa_dim, emb_size)

    def forward(self, x):
        b, c, t = x.shape
        h = self.conv(x.reshape(b * c, 1, t)).mean(dim=-1)  # (B*C, spa_dim): global average over time
        return self.proj(h).reshape(b, c, -1)


class _AttentionPool(nn.Module):
    """Softmax-weighted sum over tokens; the weights are kept in ``last_weights`` for inspection."""

    def __init__(self, emb_size):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(emb_size, emb_size), nn.Tanh(), nn.Linear(emb_size, 1))
        self.last_weights = None

    def forward(self, tokens):
        w = torch.softmax(self.score(tokens).squeeze(-1), dim=1)  # (B, C)
        self.last_weights = w.detach()
        return torch.einsum("bc,bcd->bd", w, tokens)


@register_decoder("dbconformer")
class DBConformer(EEGModuleMixin, nn.Module):
    """Dual-branch (temporal + spatial) convolutional transformer for EEG classification.

    Parameters
    ----------
    n_chans, n_outputs, n_times, sfreq, chs_info, input_window_seconds
        braindecode's signal arguments (``n_times`` or ``input_window_seconds`` with ``sfreq``
        is required: the number of temporal tokens depends on it).
    emb_size : int
        Token dimension ``D`` of both branches (paper: 40).
    tem_depth, chn_depth : int
        Transformer blocks in the temporal and spatial branches (paper: 2 each for CO/CV).
    num_heads : int
        Attention heads; must divide ``emb_size`` (the paper reports 2 heads as best).
    temporal_kernel_size : int | None
        Depthwise temporal kernel. ``None`` -> 63 samples at 250 Hz, i.e. about 0.25 s at ``sfreq``
        (made odd so that the padding keeps the length).
    patch_size : int | None
        Samples averaged into one temporal token. ``None`` -> 125 at 250 Hz, i.e. 0.5 s at ``sfreq``.
    spa_dim : int
        Feature maps of the per-channel convolution in the spatial branch (paper: 16).
    drop_prob : float
        Dropout of the embeddings and transformers (paper: 0.5).
    channel_attention : bool
        Pool channel tokens with learned attention (paper) instead of a plain mean.

    Notes
    -----
    Input ``(batch, n_chans, n_times)``, output logits ``(batch, n_outputs)``.
    """

    def __init__(
        self,
        n_chans=None,
        n_outputs=None,
        n_times=None,
        sfreq=None,
        chs_info=None,
        input_window_seconds=None,
        *,
        emb_size=40,
        tem_depth=2,
        chn_depth=2,
        num_heads=2,
        temporal_kernel_size=None,
        patch_size=None,
        spa_dim=16,
        drop_prob=0.5,
        channel_attention=True,
    ):
        super().__init__(
            n_outputs=n_outputs,
            n_chans=n_chans,
            chs_info=chs_info,
            n_times=n_times,
            input_window_seconds=input_window_seconds,
            sfreq=sfreq,
        )
        del n_outputs, n_chans, chs_info, n_times, input_window_seconds, sfreq
        if emb_size % num_heads:
            raise ValueError(
                f"Invalid value for the 'num_heads' parameter: it must divide emb_size={emb_size}, got {num_heads}."
            )
        rate = self._sfreq if getattr(self, "_sfreq", None) else None
        if temporal_kernel_size is None:
            temporal_kernel_size = 63 if rate is None else int(round(63 * rate / 250)) | 1
        if patch_size is None:
            patch_size = 125 if rate is None else max(1, int(round(125 * rate / 250)))
        n_tokens = self.n_times // patch_size
        if n_tokens < 1:
            raise ValueError(
                f"Invalid value for the 'patch_size' parameter: {patch_size} samples is longer than the "
                f"trial ({self.n_times} samples); use a smaller patch_size."
            )
        self.temporal_kernel_size = temporal_kernel_size
        self.patch_size = patch_size
        self.n_tokens = n_tokens

        self.temporal_embedding = _TemporalEmbedding(self.n_chans, emb_size, temporal_kernel_size, patch_size, drop_prob)
        # Small initial positions (ViT practice): at unit scale they would swamp the weak token content
        # (patch averages vary by ~0.1) and training stalls at chance for many epochs.
        self.temporal_pos = nn.Parameter(torch.zeros(1, n_tokens, emb_size))
        self.temporal_encoder = _transformer(emb_size, tem_depth, num_heads, drop_prob)

        self.channel_embedding = _ChannelEmbedding(emb_size, spa_dim)
        self.channel_pos = nn.Parameter(torch.zeros(1, self.n_chans, emb_size))
        self.channel_encoder = _transformer(emb_size, chn_depth, num_heads, drop_prob)
        self.channel_pool = _AttentionPool(emb_size) if channel_attention else None

        self.head = nn.Sequential(
            nn.Linear(2 * emb_size, 64), nn.ELU(), nn.Dropout(0.5), nn.Linear(64, 32), nn.ELU(), nn.Dropout(0.3)
        )
        self.final_layer = nn.Linear(32, self.n_outputs)
        nn.init.trunc_normal_(self.temporal_pos, std=0.02)
        nn.init.trunc_normal_(self.channel_pos, std=0.02)

    def forward(self, x):
        """Return logits ``(batch, n_outputs)`` for ``x`` of shape ``(batch, n_chans, n_times)``."""
        t = self.temporal_encoder(self.temporal_embedding(x) + self.temporal_pos).mean(dim=1)
        c = self.channel_encoder(self.channel_embedding(x) + self.channel_pos)
        c = self.channel_pool(c) if self.channel_pool is not None else c.mean(dim=1)
        return self.final_layer(self.head(torch.cat([t, c], dim=1)))
