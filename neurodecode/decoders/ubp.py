"""UBP: EEG projector with an uncertainty-aware blur prior (Wu et al., CVPR 2025).

The premise: a brain signal carries less detail than the image that was seen, so matching it to
the *sharp* image's embedding asks for too much. UBP matches it to embeddings of blurred images,
and adapts the blur per pair from how well that pair is already matched:

- each training pair's similarity (logit scale x brain embedding . image embedding) is tracked as a
  running average over epochs;
- within a batch, pairs above ``mean + z * std`` of those similarities (well matched) get less blur
  (``sigma0 - delta``), pairs below ``mean - z * std`` (poorly matched, likely a larger gap) get
  more blur (``sigma0 + delta``), the others ``sigma0``;
- the target embedding of a pair is the frozen encoder's embedding of the image at that blur
  (precomputed, see :func:`~neurodecode.decoders.image_encoders.encode_cached`); test candidates use
  ``sigma0``.

The blur is foveated (sharp-ish at the fixation point in the centre). Ablations: ``blur="none"``
(sharp targets and candidates) and ``blur="fixed"`` (``sigma0`` everywhere).

The projector (:class:`UBPProjector`) flattens ``(n_chans, n_times)``, maps it linearly to the
embedding size, adds a residual GELU-Linear-Dropout block and a LayerNorm. The loss is the symmetric
InfoNCE with a learnable temperature.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..utils import UsageError, check_option
from ._registry import register_decoder
from .brain_module import _as_array, clip_loss
from .conditioning import BrainConditioning
from .image_encoders import kernel_size_to_sigma

__all__ = ["UBPProjector", "BlurPrior", "BLUR_MODES", "DEFAULT_SIGMA0", "DEFAULT_DELTA"]

BLUR_MODES = ("uncertainty", "fixed", "none")
# The paper's kernel 51 (sigma 8.0 px at 224 px) with +/- 6 kernel steps (sigma +/- 0.9 px).
DEFAULT_SIGMA0 = kernel_size_to_sigma(51)
DEFAULT_DELTA = kernel_size_to_sigma(57) - kernel_size_to_sigma(51)


@register_decoder("ubp")
class UBPProjector(nn.Module):
    """EEG projector: flatten -> Linear -> residual(GELU, Linear, Dropout) -> LayerNorm.

    Parameters
    ----------
    n_chans, n_outputs, n_times : int
        Signal size and embedding size.
    sfreq, chs_info : optional
        Accepted for braindecode's signal-argument contract (unused).
    dropout : float
        Dropout inside the residual block.
    logit_scale_init : float
        Initial inverse temperature of the InfoNCE (learnt; kept positive with a softplus).
    blur : {"uncertainty", "fixed", "none"}
        Recorded here so a checkpoint says which target space it was trained for.
    """

    def __init__(self, n_chans, n_outputs, n_times, sfreq=None, chs_info=None, dropout=0.3,
                 logit_scale_init=1 / 0.07, blur="uncertainty", n_subjects=1):
        super().__init__()
        check_option("blur", blur, BLUR_MODES)
        self.n_chans, self.n_outputs, self.n_times = int(n_chans), int(n_outputs), int(n_times)
        self.blur = blur
        self.linear = nn.Linear(self.n_chans * self.n_times, self.n_outputs)
        self.residual = nn.Sequential(nn.GELU(), nn.Linear(self.n_outputs, self.n_outputs), nn.Dropout(dropout))
        self.final_layer = nn.LayerNorm(self.n_outputs)
        # softplus^-1(logit_scale_init), so that softplus(raw) starts at logit_scale_init.
        init = float(logit_scale_init)
        self.logit_scale_raw = nn.Parameter(torch.tensor(init + np.log(-np.expm1(-init))))

    @property
    def logit_scale(self):
        return F.softplus(self.logit_scale_raw).clamp(max=100.0)

    def forward(self, x, subject_index=None):
        """``x`` (B, n_chans, n_times) -> embeddings (B, n_outputs)."""
        h = self.linear(x.flatten(1))
        return self.final_layer(h + self.residual(h))

    def loss(self, pred, target, **_):
        return clip_loss(pred, target, self.logit_scale)

    @torch.no_grad()
    def similarity(self, pred, target):
        """Per-pair similarity ``logit_scale * <pred_i, target_i>`` on normalised vectors, (B,)."""
        return self.logit_scale * (F.normalize(pred, dim=-1) * F.normalize(target, dim=-1)).sum(-1)

    @torch.no_grad()
    def predict(self, X, subject=None, batch_size=512):
        """Embeddings for ``X`` (n, n_chans, n_times) as numpy (n, n_outputs)."""
        from .brain_module import scale_inputs

        self.eval()
        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        return torch.cat([self(scale_inputs(X[s : s + batch_size])) for s in range(0, len(X), batch_size)]).numpy()

    def encode(self, inst, subject=None):
        """Decode epochs (or an array) to :class:`BrainConditioning`."""
        X = _as_array(inst, self.n_chans, self.n_times)
        return BrainConditioning(embeds=torch.from_numpy(self.predict(X)),
                                 meta={"decoder": "ubp", "blur": self.blur, "n_outputs": self.n_outputs})


class BlurPrior:
    """Chooses each training pair's blur level (0 = less, 1 = medium, 2 = more).

    Parameters
    ----------
    n_pairs : int
        Number of training pairs (indexes of the running similarity).
    mode : {"uncertainty", "fixed", "none"}
        ``"fixed"`` always returns the medium level; ``"none"`` also returns level 1, whose
        embeddings the caller makes from sharp images.
    momentum : float
        Weight of the new batch's similarity in the running average (paper code: 0.3).
    z : float
        Half-width of the interval in standard deviations (1.96: a 95 % interval).
    """

    LESS, MEDIUM, MORE = 0, 1, 2

    def __init__(self, n_pairs, mode="uncertainty", momentum=0.3, z=1.96):
        check_option("mode", mode, BLUR_MODES)
        if not 0 < momentum <= 1:
            raise UsageError(f"Invalid value for the 'momentum' parameter: expected a value in (0, 1], got {momentum}.")
        self.mode, self.momentum, self.z = mode, float(momentum), float(z)
        self.running = np.full(int(n_pairs), np.nan)

    def update(self, index, similarity):
        """Fold a batch's per-pair similarities (B,) into the running averages of pairs ``index``."""
        index = np.asarray(index)
        s = np.asarray(similarity, dtype=float)
        prev = self.running[index]
        self.running[index] = np.where(np.isnan(prev), s, self.momentum * s + (1 - self.momentum) * prev)

    def levels(self, index):
        """Blur level (B,) for the pairs ``index`` from their running similarity."""
        index = np.asarray(index)
        lv = np.full(len(index), self.MEDIUM)
        if self.mode != "uncertainty":
            return lv
        s = self.running[index]
        ok = ~np.isnan(s)
        if ok.sum() < 3:
            return lv
        mu, sd = s[ok].mean(), s[ok].std(ddof=1)
        # Larger discrepancy (low similarity) -> more blur; well-matched pairs -> less blur.
        lv[ok & (s > mu + self.z * sd)] = self.LESS
        lv[ok & (s < mu - self.z * sd)] = self.MORE
        return lv

    def stats(self):
        """Fractions of pairs currently at each level (for logging)."""
        lv = self.levels(np.arange(len(self.running)))
        return {name: float(np.mean(lv == i)) for i, name in enumerate(("less", "medium", "more"))}
