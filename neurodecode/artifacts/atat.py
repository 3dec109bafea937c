"""AT-AT: autoencoder-targeted adversarial transformer for EEG artifact removal.

After Choi 2025 (arXiv 2502.05332). The paper's code and layer sizes are not public (see
``shared/research/artifact_anchors.md`` section 1.1), so this is our own implementation of what the
paper describes, with sizes chosen for CPU training:

1. A lightweight 1-D convolutional autoencoder (conv-BN-ReLU-max-pool down to a bottleneck, then
   upsampling back) trained to reproduce *clean* EEG. On a contaminated input its reconstruction
   departs from the input, so the correlation between the two, computed on short spans, is a noise
   proxy: a window with a span where it falls below a threshold ``tau`` (calibrated on clean
   validation segments so that they rarely open the gate) is where the transformer is applied;
   elsewhere the input passes through.
2. A compact time-series transformer (conv stem, patch tokens, encoder layers, transposed-conv
   read-out with a skip from the stem) that estimates the artifact from the input and the
   autoencoder's residual; the clean estimate is the input minus that artifact.
3. Adversarial training: a small 1-D CNN discriminator learns to tell clean EEG from the
   transformer's output, and the transformer is trained on MSE plus a small adversarial term, so
   that outputs keep EEG's characteristics.

The public object is :class:`ATAT`: ``ATAT.from_pretrained("emg")``, ``.denoise(x, sfreq)`` and
``.apply(raw)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["ConvAutoencoder", "ArtifactTransformer", "Discriminator", "ATATNet", "ATAT", "span_correlation"]

_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


class ConvAutoencoder(nn.Module):
    """Lightweight 1-D conv autoencoder ``(B, T) -> (B, T)``.

    Encoder: a strided conv (kernel 8, stride 4) then conv-BN-ReLU-max-pool stages down to a
    bottleneck of ``widths[-1]`` channels at T/16; decoder: upsampling and convs back, ending in a
    transposed conv to full length. Strided first and last layers keep it cheap on CPU (it runs on
    every window of a recording; the transformer runs only where it points).
    """

    def __init__(self, widths=(16, 8), kernel=5):
        super().__init__()
        w0, w1 = widths
        self.encoder = nn.Sequential(
            nn.Conv1d(1, w0, 8, stride=4, padding=2), nn.BatchNorm1d(w0), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(w0, w1, kernel, padding=kernel // 2), nn.BatchNorm1d(w1), nn.ReLU(), nn.MaxPool1d(2),
        )
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="linear", align_corners=False),
            nn.Conv1d(w1, w0, kernel, padding=kernel // 2), nn.BatchNorm1d(w0), nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="linear", align_corners=False),
        )
        self.final_layer = nn.ConvTranspose1d(w0, 1, 8, stride=4, padding=2)

    def forward(self, y):
        return self.final_layer(self.decoder(self.encoder(y[:, None])))[:, 0]


def span_correlation(a, b, span):
    """Pearson correlation of ``a`` and ``b`` on consecutive spans of ``span`` samples.

    Parameters
    ----------
    a, b : Tensor, shape (B, T) with T divisible by span

    Returns
    -------
    Tensor, shape (B, T // span)
    """
    B, T = a.shape
    a = a.reshape(B, T // span, span)
    b = b.reshape(B, T // span, span)
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / torch.sqrt((a * a).sum(-1) * (b * b).sum(-1) + 1e-8)


class ArtifactTransformer(nn.Module):
    """Transformer denoiser: input ``(B, 2, T)`` (signal, AE residual) -> artifact estimate ``(B, T)``.

    A conv stem at full rate, patch tokens (``patch`` samples each) with learned positions, a
    pre-norm transformer encoder, a transposed-conv read-out back to full rate and a last conv that
    also sees the stem features (a skip connection for the fine detail of EMG).
    """

    def __init__(self, n_times=512, patch=16, d_model=48, n_heads=4, n_layers=2, ff=96, stem=16, dropout=0.1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(2, stem, 7, padding=3), nn.GELU())
        self.embed = nn.Conv1d(stem, d_model, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, n_times // patch, d_model))
        layer = nn.TransformerEncoderLayer(d_model, n_heads, ff, dropout, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.unembed = nn.ConvTranspose1d(d_model, stem, patch, stride=patch)
        self.final_layer = nn.Conv1d(2 * stem, 1, 7, padding=3)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, inp):
        # Inputs follow each part's weight dtype, so a copy whose layers run in bfloat16 while the patch
        # embedding and positions stay float32 (artifacts.apply.transformer_fn) uses this same forward;
        # in plain float32 every cast is a no-op.
        dt = self.stem[0].weight.dtype
        s = self.stem(inp.to(dt))
        tok = self.embed(s.to(self.embed.weight.dtype)).transpose(1, 2) + self.pos
        h = self.encoder(tok.to(dt)).transpose(1, 2)
        return self.final_layer(torch.cat([F.gelu(self.unembed(h)), s], 1))[:, 0]


class Discriminator(nn.Module):
    """1-D CNN telling clean EEG segments ``(B, T)`` from denoised ones (one logit per segment)."""

    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        layers, c = [], 1
        for w in widths:
            layers += [nn.Conv1d(c, w, 7, stride=2, padding=3), nn.LeakyReLU(0.2)]
            c = w
        self.body = nn.Sequential(*layers)
        self.final_layer = nn.Linear(c, 1)

    def forward(self, x):
        return self.final_layer(self.body(x[:, None]).mean(-1))[:, 0]


class ATATNet(nn.Module):
    """Autoencoder gate + transformer; ``forward`` is the transformer path, ``gated`` the full inference.

    Parameters
    ----------
    n_times : int
        Segment length in samples at ``sfreq`` (512 = 2 s at 256 Hz).
    span : int
        Gate resolution in samples (64 = 0.25 s at 256 Hz).
    tau, tau_hi : float
        Correlation thresholds; a window with a span where ``corr(AE(y), y) < tau`` or
        ``> tau_hi`` is denoised. Calibrated after training
        (:func:`neurodecode.training.atat_system.gate_calibration`); ``tau >= 1`` opens the gate
        everywhere.
    """

    def __init__(self, n_times=512, span=64, tau=1.0, ae_widths=(16, 8), patch=16, d_model=48, n_heads=4,
                 n_layers=2, ff=96, stem=16, tau_hi=2.0):
        super().__init__()
        if n_times % (2 * span):
            raise ValueError(f"span ({span}) must divide half the window (n_times={n_times}).")
        self.config = dict(n_times=n_times, span=span, tau=tau, ae_widths=list(ae_widths), patch=patch,
                           d_model=d_model, n_heads=n_heads, n_layers=n_layers, ff=ff, stem=stem, tau_hi=tau_hi)
        self.ae = ConvAutoencoder(tuple(ae_widths))
        self.transformer = ArtifactTransformer(n_times, patch, d_model, n_heads, n_layers, ff, stem)
        self.register_buffer("tau", torch.tensor(float(tau)))
        self.register_buffer("tau_hi", torch.tensor(float(tau_hi)))
        self.span = span

    def forward(self, y):
        """Transformer path on every span: ``(B, T) -> (B, T)`` clean estimate."""
        r = self.ae(y)
        return y - self.transformer(torch.stack([y, y - r.detach()], 1))

    def gate(self, y, rec=None):
        """Boolean mask ``(B, T // span)``: True on spans the autoencoder flags.

        A span is flagged when its correlation with the reconstruction is below ``tau`` (the
        autoencoder cannot reproduce it: broadband artifacts such as EMG) or above ``tau_hi``
        (it is smoother than clean EEG ever is at unit scale: slow, large artifacts such as EOG,
        which a low-capacity autoencoder reproduces *better* than EEG). ``rec``: ``self.ae(y)``
        when the caller already has it (it is computed here otherwise).
        """
        c = span_correlation(self.ae(y) if rec is None else rec, y, self.span)
        return (c < self.tau) | (c > self.tau_hi)

    def window_gate(self, y):
        """Boolean ``(B,)``: True for windows with at least one flagged span (:meth:`gate`)."""
        return self.gate(y).any(1)

    @torch.no_grad()
    def gated(self, y):
        """Full AT-AT inference: the transformer's output on gated windows, the input elsewhere.

        The autoencoder decides at span resolution; a window with any gated span goes through the
        transformer as a whole. (Blending the transformer's output into the gated spans only let
        the contamination of the spans the gate missed through: on EMG validation pairs RRMSE_t
        1.02 vs 0.61 at the same threshold.) Windows without any gated span skip the transformer
        entirely, which is the speed gain on mostly clean recordings.

        Returns
        -------
        out : Tensor, shape (B, T)
        g : Tensor of bool, shape (B, T // span)
        """
        g = self.gate(y)
        out = y.clone()
        rows = g.any(1)
        if rows.any():
            out[rows] = self.forward(y[rows])
        return out, g


class ATAT:
    """A trained AT-AT denoiser for one artifact type.

    Parameters
    ----------
    net : ATATNet
    artifact : {"emg", "eog"}
    sfreq : float
        Rate the network was trained at (Hz).
    l_freq : float
        High-pass applied to a recording before the network sees it (the training EEG was
        band-passed from 1 Hz; EOG from 0.3 Hz). What lies below is left untouched by ``apply``.
    meta : dict
        Provenance (training data, metrics) read from the weights file.
    """

    def __init__(self, net, artifact, sfreq=256.0, l_freq=1.0, meta=None):
        self.net = net.eval()
        self.artifact = artifact
        self.sfreq = float(sfreq)
        self.l_freq = float(l_freq)
        self.meta = meta or {}

    @property
    def n_times(self):
        return int(self.net.config["n_times"])

    # ---------------------------------------------------------------- persistence
    def save(self, path, extra=None):
        """Write safetensors weights with the config and provenance in the metadata."""
        from safetensors.torch import save_file

        meta = {"config": json.dumps(self.net.config), "artifact": self.artifact, "sfreq": str(self.sfreq),
                "l_freq": str(self.l_freq), "meta": json.dumps({**self.meta, **(extra or {})})}
        state = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(path), metadata=meta)
        return Path(path)

    @classmethod
    def from_pretrained(cls, artifact="emg", path=None):
        """Load shipped weights (``neurodecode/weights/atat_<artifact>.safetensors``) or a local file.

        Nothing is downloaded.
        """
        from ..utils import InputFileError, check_option, read_safetensors

        if path is None:
            check_option("artifact", artifact, ("emg", "eog"))
            path = _WEIGHTS / f"atat_{artifact}.safetensors"
        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"{path}: AT-AT weights not found (train them with benchmarks/artifacts_train.py).")
        state, md = read_safetensors(path, what="AT-AT weights")
        if "config" not in md:
            raise InputFileError(f"{path}: not an AT-AT weights file (no 'config' metadata).")
        cfg = json.loads(md["config"])
        net = ATATNet(**cfg)
        state.setdefault("tau_hi", torch.tensor(float(cfg.get("tau_hi", 2.0))))  # files from before the upper threshold
        net.load_state_dict(state)
        return cls(net, md.get("artifact", artifact), float(md.get("sfreq", 256)), float(md.get("l_freq", 1.0)),
                   json.loads(md.get("meta", "{}")))

    def n_parameters(self, inference_only=True):
        """Parameters of the autoencoder + transformer (the discriminator is training-only)."""
        return int(sum(p.numel() for p in self.net.parameters()))

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def denoise_normalised(self, y, gated=True, batch_size=256):
        """Denoise segments already at ``self.sfreq`` with ``n_times`` samples, scaled to unit std.

        Parameters
        ----------
        y : ndarray, shape (n_segments, n_times)

        Returns
        -------
        ndarray, shape (n_segments, n_times), float32
        """
        out = []
        for i in range(0, len(y), batch_size):
            t = torch.as_tensor(np.asarray(y[i : i + batch_size], np.float32))
            out.append((self.net.gated(t)[0] if gated else self.net(t)).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_times), np.float32)

    def denoise(self, x, sfreq, gated=True):
        """Denoise segments at any rate.

        Parameters
        ----------
        x : ndarray, shape (n_segments, n_times)
            Segments at ``sfreq``; each is resampled to the model's rate, cut into model windows
            with 50 % overlap, scaled by its std, denoised, rescaled, overlap-added and resampled back.
        sfreq : float
            Sampling rate of ``x`` in Hz.

        Returns
        -------
        ndarray, same shape as ``x``
        """
        from .apply import denoise_array

        x = np.asarray(x, np.float64)
        if x.ndim != 2:
            from ..utils import UsageError

            raise UsageError(f"x must be (n_segments, n_times), got an array with {x.ndim} dimensions.")
        return denoise_array(self, x, float(sfreq), gated=gated, highpass=False)

    def apply(self, raw, *, picks="eeg", progress=False, chunk_s=120.0, return_summary=False):
        """Clean a whole multichannel Raw of any length, chunk by chunk (see :mod:`.apply`).

        Returns
        -------
        cleaned : mne.io.RawArray
            A new Raw at the original rate: ``EDITED_<ART>``/``BAD_<ART>`` annotations, provenance
            in ``info['description']``; the input is untouched.
        summary : dict
            Only with ``return_summary=True``.
        """
        from .apply import apply_denoiser

        cleaned, summary = apply_denoiser(self, raw, picks=picks, progress=progress, chunk_s=chunk_s)
        return (cleaned, summary) if return_summary else cleaned
