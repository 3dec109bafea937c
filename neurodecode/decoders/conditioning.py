"""The hand-off between decoders and the generation backend."""

from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class BrainConditioning:
    """What a decoder gives the generation backend.

    Attributes
    ----------
    embeds : Tensor or ndarray, shape (batch, d) or (batch, n_tokens, d)
        High-level features aligned to the image-embedding space (cross-attention tokens).
    spatial_maps : Tensor or ndarray, shape (batch, channels, height, width) | None
        Optional low-level maps added to the U-Net's features (fMRI path).
    meta : dict | None
        Provenance: decoder name, checkpoint hash, encoder used for the target space.
    """

    embeds: Any
    spatial_maps: Optional[Any] = None
    meta: Optional[dict] = None

    def __len__(self):
        return len(self.embeds)
