"""hvEEGNet: hierarchical VAE for high-fidelity EEG reconstruction, used for quality control.

Cisotto, Zancanaro, Zoppis & Manzoni, "hvEEGNet: a novel deep learning model for high-fidelity
EEG reconstruction" (Front. Neuroinform. 2024; arXiv 2312.00799). Written from the paper's
description and the notes in ``shared/research/artifact_anchors.md`` (section 1.2).

Model
-----
The encoder is EEGNet cut into three cells (temporal conv -> depthwise spatial conv ->
separable conv + pooling). Each cell's output feeds one latent level, so there are three
latent spaces (NVAE-style): the deepest one has a standard normal prior; the two upper ones
have a prior predicted by the decoder from the level below, and a posterior that shifts that
prior using the encoder's features ("residual" parametrisation, KL in closed form). The
decoder mirrors the encoder with transposed convolutions. ``hierarchical=False`` keeps only
the deepest latent: that is the plain vEEGNet ablation.

Loss: soft-DTW between each channel of the input and of the reconstruction (1-D sequences),
summed over channels and averaged over the batch, plus the sum of the KL terms
(``alpha * recon + beta * KL``, alpha = beta = 1 in the paper). ``coarse_weight > 0`` adds the
same reconstruction term for the coarse prediction (see below); not in the paper, used to fine-tune
the shipped weights so that the deeper levels predict the signal.

Quality control
---------------
``score`` cuts a recording into non-overlapping 1 s windows (at the model's 128 Hz), taken as
recorded: demeaned, in uV, no filtering, so drifts, steps and line noise reach the score intact.
A model that reconstructs EEG this well also reconstructs most artifacts through its finest,
per-channel latent level, so the paper's reconstruction error misses many of them. The score
therefore compares each recorded window with the model's *coarse prediction*: the decoder's
output when the level-1 latent is set to its prior mean, i.e. what the deeper, spatially pooled
levels explain of each channel. Channel-local or non-EEG-like content (a flat or popping
electrode, clipping, mains pickup, muscle, a spike) is what that prediction cannot produce. With
``spatial="loo"`` (default) each channel's residual then has the part that the other channels'
residuals predict linearly subtracted (leave-one-channel-out ridge regression fitted on the
scored recording, :meth:`spatial_map`): spatially coherent physiology that the coarse prediction
misses (blinks, movement) cancels, electrode-local faults stay. Per window and channel, five
summaries of that residual are computed (:meth:`residual_features`:
energy below 3 Hz and above 40 Hz, energy relative to the input, largest jump, largest 62.5 ms
burst), alongside the soft-DTW error of the full reconstruction (the paper's measure) and two
summaries of the level-1 KL. Each quantity becomes a robust z-score per channel (median and IQR
over the recording's own windows by default, ``reference="recording"``; the quantities in
:data:`TWO_SIDED` count in both directions); a window's score is the largest over channels and
over the quantities in ``score_features`` (default: the five residual summaries, chosen on the
validation subject), so one bad channel is enough. ``annotate`` marks windows above a threshold
set to a quantile (``threshold_quantile``, 0.99 in the shipped weights) of the scores of the
training recordings computed the same way. The vEEGNet ablation has a single latent level; its
residual summaries use its only reconstruction.

Channel-set policy
------------------
The model was trained on a fixed list of scalp channels (``ch_names``; the shipped weights use
19 channels of the 10-20 system). A recording's EEG channels are matched to it by name,
case-insensitively, ignoring a trailing ``.``, an ``EEG`` prefix and a reference suffix
(``-REF``, ``-LE``, ...), and with the old 10-20 names T3/T4/T5/T6 read as T7/T8/P7/P8. Extra
channels are ignored; channel order does not matter. Channels in ``info['bads']`` count as
missing. With ``missing="raise"`` (default) a missing channel is an error that lists what is
missing and what the file has; with ``missing="interpolate"`` up to ``max_interpolated``
missing channels are filled by spherical-spline interpolation from the standard 10-05 montage
positions (the result says which ones). Nothing is matched by position alone.
"""

import json
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..utils import InputFileError, UsageError, check_option, record_warning
from .soft_dtw import soft_dtw

logger = logging.getLogger("neurodecode")

__all__ = ["HVEEGNet", "QCScores", "match_channels", "CHANNELS_1020"]

# per-channel quantities computed for each window (see HVEEGNet.channel_features)
RESIDUAL_FEATURES = ("res_low", "res_high", "res_ratio", "res_jump", "res_burst")
FEATURES = ("error", "kl", "kl_peak") + RESIDUAL_FEATURES
# quantities that are anomalous in both directions (too little information or too little residual
# relative to the input is a flat or dead channel); the others only count when too high
TWO_SIDED = ("kl", "kl_peak", "res_ratio")
DEFAULT_SCORE_FEATURES = RESIDUAL_FEATURES
# residual bands (Hz): slow (drift, steps) and fast (line noise, muscle); 1 s windows give 1 Hz bins
LOW_BAND_HZ = 3.0
HIGH_BAND_HZ = 40.0
BURST_S = 0.0625  # moving window of the residual-energy peak (8 samples at 128 Hz): spikes, pops
SPATIAL = ("loo", "none")
# keep the raw windows and coarse predictions of a scored recording in memory between the two passes
# of ``score`` up to this many bytes; longer recordings are read and run through the network twice
_CACHE_BYTES = 512 * 2 ** 20
# buffers filled by ``calibrate`` (not network weights): fine-tuning drops them, older files may lack some
CALIBRATION_BUFFERS = ("channel_median", "channel_iqr", "threshold", "train_spatial_map")

CHANNELS_1020 = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz",
    "C4", "T8", "P7", "P3", "Pz", "P4", "P8", "O1", "O2",
)
_ALIASES = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
_REF_SUFFIXES = ("-REF", "-LE", "-RE", "-AVG", "-AR", "-A1", "-A2", "-M1", "-M2", "-CZ")
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "hveegnet_eegmmidb.safetensors"
BAD_DESCRIPTION = "BAD_hveegnet"


def _norm_name(name):
    n = name.strip().rstrip(".").upper()
    if n.startswith("EEG "):
        n = n[4:].strip()
    for suf in _REF_SUFFIXES:
        if n.endswith(suf):
            n = n[: -len(suf)]
            break
    return _ALIASES.get(n, n)


def match_channels(info, ch_names, *, missing="raise", max_interpolated=3, source="the recording"):
    """Map the model's channels onto a recording's channels by name.

    Parameters
    ----------
    info : mne.Info
        The recording's measurement info (only EEG channels are considered).
    ch_names : sequence of str
        The model's channels, in model order.
    missing : "raise" | "interpolate"
        What to do about model channels absent from (or bad in) the recording.
    max_interpolated : int
        Most channels that may be interpolated.
    source : str
        Name of the recording in error messages.

    Returns
    -------
    picks : list of int | None
        For each model channel, the index in ``info['ch_names']``, or ``None`` when it is to be
        interpolated.
    interpolated : list of str
        Model channel names that will be interpolated.
    """
    import mne

    check_option("missing", missing, ("raise", "interpolate"))
    eeg = mne.pick_types(info, eeg=True, exclude=[])
    by_name = {}
    for idx in eeg:
        key = _norm_name(info["ch_names"][idx])
        if key in by_name:
            raise InputFileError(
                f"{source}: channels {info['ch_names'][by_name[key]]!r} and {info['ch_names'][idx]!r} "
                "both match the same model channel; drop one before quality control."
            )
        by_name[key] = idx
    picks, absent, bad = [], [], []
    for name in ch_names:
        idx = by_name.get(_norm_name(name))
        if idx is not None and info["ch_names"][idx] in info["bads"]:
            bad.append(name)
            idx = None
        elif idx is None:
            absent.append(name)
        picks.append(idx)
    lost = absent + bad
    if not lost:
        return picks, []
    what = ", ".join(absent) + (" (absent)" if absent else "")
    if bad:
        what += ("; " if absent else "") + ", ".join(bad) + " (marked bad)"
    have = ", ".join(info["ch_names"][i] for i in eeg) or "no EEG channels"
    if missing == "raise":
        raise InputFileError(
            f"{source}: the hvEEGNet model needs the EEG channels {', '.join(ch_names)}; missing: {what}. "
            f"The file has: {have}. Rename the channels, or pass missing='interpolate' "
            f"(--interpolate-missing) to fill up to {max_interpolated} of them from the 10-05 montage."
        )
    if len(lost) > max_interpolated:
        raise InputFileError(
            f"{source}: {len(lost)} of the model's channels are missing ({what}); at most "
            f"{max_interpolated} may be interpolated. The file has: {have}."
        )
    return picks, lost


def _interp_matrix(ch_names, interpolated):
    """Spherical-spline weights (n_interp, n_known) from the standard 10-05 positions."""
    import mne

    from ..io._read import _standard_montage_name

    info = mne.create_info(list(ch_names), 100.0, "eeg")
    info.set_montage(mne.channels.make_standard_montage(_standard_montage_name()), match_case=False, verbose="error")
    info["bads"] = list(interpolated)
    raw = mne.io.RawArray(np.eye(len(ch_names)), info, verbose="error")
    raw.interpolate_bads(reset_bads=True, verbose="error", origin=(0.0, 0.0, 0.04))
    # column j of the result is what channel j's unit impulse becomes; rows of the
    # interpolated channels give their weights on the known ones
    out = raw.get_data()
    known = [i for i, n in enumerate(ch_names) if n not in interpolated]
    rows = [i for i, n in enumerate(ch_names) if n in interpolated]
    return out[np.ix_(rows, known)], rows, known


@dataclass
class QCScores:
    """Per-window quality scores of one recording (or one Epochs object).

    Attributes
    ----------
    onsets : ndarray, shape (n_windows,)
        Window start in seconds from the first sample (Raw), or the epoch index (Epochs).
    durations : ndarray, shape (n_windows,)
        Window length in seconds.
    scores : ndarray, shape (n_windows,)
        Anomaly score (largest standardised channel quantity); above ``threshold`` is flagged.
    channel_errors : ndarray, shape (n_windows, n_chans) | None
        Soft-DTW reconstruction error per sample (uV^2) for each model channel; None when the
        score does not use it (the default residual score), since soft-DTW is most of the cost.
    channel_scores : ndarray, shape (n_windows, n_chans)
        Per channel, the largest robust z-score of the ``score_features`` (see ``HVEEGNet._standardise``).
    ch_names : list of str
        Model channel names (columns of the two arrays above).
    threshold : float
        Threshold used by :meth:`HVEEGNet.annotate`.
    interpolated : list of str
        Model channels filled by interpolation (empty unless asked for).
    channel_kl : ndarray, shape (n_windows, n_chans) | None
        Level-1 KL per channel (hvEEGNet only).
    """

    onsets: np.ndarray
    durations: np.ndarray
    scores: np.ndarray
    channel_errors: np.ndarray
    channel_scores: np.ndarray
    ch_names: list
    threshold: float
    interpolated: list = field(default_factory=list)
    channel_kl: np.ndarray = None

    @property
    def flagged(self):
        """Boolean mask of windows above the threshold, shape (n_windows,)."""
        return self.scores > self.threshold

    def summary(self, n_worst=3):
        """Share of windows flagged and the channels most often worst in flagged windows.

        Channels are ranked by how many flagged windows they are the worst channel of, ties
        broken by their highest score.
        """
        flagged = self.flagged
        worst = []
        if flagged.any():
            counts = np.bincount(self.channel_scores[flagged].argmax(1), minlength=len(self.ch_names))
            peak = self.channel_scores[flagged].max(0)
            order = np.lexsort((-peak, -counts))[:n_worst]  # most often worst, then highest score
            worst = [(self.ch_names[i], int(counts[i])) for i in order if counts[i] > 0]
        return {
            "n_windows": int(len(self.scores)),
            "n_flagged": int(flagged.sum()),
            "fraction_flagged": float(flagged.mean()) if len(flagged) else 0.0,
            "worst_channels": worst,
            "threshold": float(self.threshold),
        }


class HVEEGNet(nn.Module):
    """Hierarchical VAE on EEGNet blocks (hvEEGNet), with QC scoring on Raw/Epochs.

    Parameters
    ----------
    n_chans : int
        Number of EEG channels C.
    n_times : int
        Window length T in samples (at ``sfreq``).
    sfreq : float
        Sampling rate the model runs at; recordings are resampled to it.
    ch_names : sequence of str | None
        Model channel names (default: the 19 channels of :data:`CHANNELS_1020`).
    F1, D, F2 : int
        EEGNet widths: temporal filters, depth multiplier of the spatial conv, separable filters.
    kernel_length : int
        Temporal kernel (samples); ``sfreq / 4`` as in EEGNet (64 at 250 Hz in the paper).
    separable_kernel : int
        Kernel of the separable conv (16 in the paper).
    pool : int
        Temporal pooling after the separable conv (T must be divisible by it).
    latent_channels : tuple of 3 int
        Latent maps at levels 1 (after the temporal conv, one per channel and time),
        2 (after the spatial conv) and 3 (deepest, after pooling).
    hierarchical : bool
        ``False`` keeps only the deepest latent level (the vEEGNet ablation).
    dropout : float
        Dropout in the encoder (0.5 in the paper).
    gamma : float
        Soft-DTW smoothing.
    alpha, beta : float
        Weights of the reconstruction and KL terms.
    coarse_weight : float
        Weight of an extra reconstruction term for the coarse prediction (level 1 at its prior
        mean; not in the paper, 0 keeps the paper's loss). Without it the finest level carries
        nearly everything and the deeper levels predict little of the signal; the quality score
        compares the input with that coarse prediction (see :meth:`residual_features`).
    input_scale_uv : float
        Inputs (in uV, demeaned per window) are divided by this before the network and
        outputs multiplied back, so the loss stays in uV as in the paper.
    threshold_quantile : float
        Quantile of clean-training scores used as the annotation threshold.
    reference : "recording" | "training"
        Where the per-channel error statistics that standardise scores come from: the scored
        recording itself (robust median/IQR over its windows; adapts to its amplitude) or the
        clean training windows (fixed).
    min_reference_windows : int
        Fewer windows than this fall back to the training reference.
    score_features : sequence of str
        Which per-channel quantities of :data:`FEATURES` enter the score (see
        :meth:`channel_features`); default: the coarse-prediction residual features
        (:data:`RESIDUAL_FEATURES`). The vEEGNet ablation has no ``"kl"``/``"kl_peak"``.
    spatial : "loo" | "none"
        Spatial reference of the residual features. ``"loo"`` (default): before the ``res_*``
        features are computed, each channel's residual has the part that the other channels'
        residuals predict linearly subtracted (leave-one-channel-out regression fitted on the
        scored recording; see :meth:`spatial_map`), so that spatially coherent physiology
        (blinks, movement) that the coarse prediction misses cancels while electrode-local
        faults remain. ``"none"``: the residual as is (the score before this option existed;
        weights saved without the key load with ``"none"``, which their calibration was made for).
    spatial_ridge : float
        Ridge added to the residual covariance, as a fraction of its mean variance.
    """

    def __init__(
        self,
        n_chans=19,
        n_times=128,
        sfreq=128.0,
        ch_names=None,
        F1=8,
        D=2,
        F2=16,
        kernel_length=33,
        separable_kernel=15,
        pool=4,
        latent_channels=(2, 8, 16),
        hierarchical=True,
        dropout=0.5,
        gamma=1.0,
        alpha=1.0,
        beta=1.0,
        input_scale_uv=20.0,
        coarse_weight=0.0,
        threshold_quantile=0.99,
        reference="recording",
        min_reference_windows=30,
        score_features=DEFAULT_SCORE_FEATURES,
        spatial="loo",
        spatial_ridge=0.01,
    ):
        super().__init__()
        ch_names = list(ch_names) if ch_names is not None else list(CHANNELS_1020[:n_chans])
        if len(ch_names) != n_chans:
            raise UsageError(f"HVEEGNet: ch_names has {len(ch_names)} names but n_chans is {n_chans}.")
        if n_times % pool:
            raise UsageError(f"HVEEGNet: n_times ({n_times}) must be divisible by pool ({pool}).")
        self.config = dict(
            n_chans=n_chans, n_times=n_times, sfreq=float(sfreq), ch_names=ch_names, F1=F1, D=D, F2=F2,
            kernel_length=kernel_length, separable_kernel=separable_kernel, pool=pool,
            latent_channels=list(latent_channels), hierarchical=bool(hierarchical), dropout=dropout,
            gamma=gamma, alpha=alpha, beta=beta, input_scale_uv=input_scale_uv,
            threshold_quantile=threshold_quantile, reference=reference, min_reference_windows=min_reference_windows,
            coarse_weight=float(coarse_weight), spatial=spatial, spatial_ridge=float(spatial_ridge),
        )
        check_option("reference", reference, ("recording", "training"))
        check_option("spatial", spatial, SPATIAL)
        self.spatial, self.spatial_ridge = spatial, float(spatial_ridge)
        self.reference, self.min_reference_windows = reference, int(min_reference_windows)
        # vEEGNet has no per-channel latent: no KL features, and its residual features use its
        # only reconstruction
        self.feature_names = list(FEATURES) if hierarchical else ["error"] + list(RESIDUAL_FEATURES)
        self.set_score_features(score_features)
        self.n_chans, self.n_times, self.sfreq, self.ch_names = n_chans, n_times, float(sfreq), ch_names
        self.hierarchical = bool(hierarchical)
        self.gamma, self.alpha, self.beta = gamma, alpha, beta
        F = F1 * D
        L1, L2, L3 = latent_channels
        # encoder: three EEGNet cells
        self.enc1 = nn.Sequential(nn.Conv2d(1, F1, (1, kernel_length), padding=(0, kernel_length // 2), bias=False), nn.BatchNorm2d(F1))
        self.enc2 = nn.Sequential(
            nn.Conv2d(F1, F, (n_chans, 1), groups=F1, bias=False), nn.BatchNorm2d(F), nn.ELU(), nn.Dropout2d(dropout)
        )
        self.enc3 = nn.Sequential(
            nn.Conv2d(F, F, (1, separable_kernel), padding=(0, separable_kernel // 2), groups=F, bias=False),
            nn.Conv2d(F, F2, 1, bias=False), nn.BatchNorm2d(F2), nn.ELU(),
            nn.AvgPool2d((1, pool)), nn.Dropout2d(dropout),
        )
        # deepest latent: posterior from the encoder, prior N(0, I)
        self.q3 = nn.Conv2d(F2, 2 * L3, 1)
        # decoder mirrors the encoder
        self.dec3 = nn.Sequential(
            nn.Conv2d(L3, F2, 1, bias=False), nn.Upsample(scale_factor=(1, pool)),
            nn.ConvTranspose2d(F2, F, 1, bias=False),
            nn.ConvTranspose2d(F, F, (1, separable_kernel), padding=(0, (separable_kernel - 1) // 2), groups=F, bias=False),
            nn.BatchNorm2d(F), nn.ELU(),
        )
        if self.hierarchical:
            self.p2, self.q2 = nn.Conv2d(F, 2 * L2, 1), nn.Conv2d(2 * F, 2 * L2, 1)
            self.z2_in = nn.Conv2d(L2, F, 1)
        self.dec2 = nn.Sequential(nn.ConvTranspose2d(F, F1, (n_chans, 1), groups=F1, bias=False), nn.BatchNorm2d(F1), nn.ELU())
        if self.hierarchical:
            self.p1, self.q1 = nn.Conv2d(F1, 2 * L1, 1), nn.Conv2d(2 * F1, 2 * L1, 1)
            self.z1_in = nn.Conv2d(L1, F1, 1)
        # stride-1 transposed convs give T + (k + 1) % 2 samples with this padding; cropped to T
        self.final_layer = nn.ConvTranspose2d(F1, 1, (1, kernel_length), padding=(0, (kernel_length - 1) // 2), bias=False)
        # calibration, filled by ``calibrate`` and saved with the weights
        nf = len(self.feature_names)
        self.register_buffer("channel_median", torch.zeros(n_chans, nf))
        self.register_buffer("channel_iqr", torch.ones(n_chans, nf))
        self.register_buffer("threshold", torch.tensor(float("inf")))
        # leave-one-channel-out map of the training recordings (identity until calibrated: no
        # projection); used by recordings too short for their own (see spatial_map)
        self.register_buffer("train_spatial_map", torch.eye(n_chans))
        self.input_scale_uv = float(input_scale_uv)
        self.threshold_quantile = float(threshold_quantile)
        self._keep_coarse = False

    def set_score_features(self, features):
        """Choose the per-channel quantities that enter the score (kept in the saved config).

        The threshold is not recomputed: call :meth:`calibrate` afterwards.
        """
        for f in features:
            check_option("score_features", f, FEATURES)
        self.score_features = [f for f in self.feature_names if f in features] or ["error"]
        self.config["score_features"] = list(self.score_features)

    def set_spatial(self, spatial):
        """Choose the spatial reference of the residual features (``"loo"`` or ``"none"``; kept in the saved config).

        The calibration is not recomputed: call :meth:`calibrate` afterwards.
        """
        check_option("spatial", spatial, SPATIAL)
        self.spatial = self.config["spatial"] = spatial

    # ------------------------------------------------------------------ network
    @staticmethod
    def _sample(mu, logvar, sample):
        if not sample:
            return mu
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def forward(self, x, sample=None):
        """Reconstruct windows.

        Parameters
        ----------
        x : Tensor, shape (batch, n_chans, n_times)
            Windows in uV, demeaned per channel.
        sample : bool | None
            Draw latents from the posterior (default: only in training mode); otherwise use
            the posterior means, which makes scoring deterministic.

        Returns
        -------
        recon : Tensor, shape (batch, n_chans, n_times)
        kl : list of Tensor, each shape (batch,)
            KL term of each latent level (deepest first).
        """
        sample = self.training if sample is None else sample
        h = x[:, None] / self.input_scale_uv
        h1 = self.enc1(h)  # (B, F1, C, T)
        h2 = self.enc2(h1)  # (B, F, 1, T)
        h3 = self.enc3(h2)  # (B, F2, 1, T/pool)
        mu3, lv3 = self.q3(h3).chunk(2, dim=1)
        lv3 = lv3.clamp(-12, 8)
        kl = [0.5 * (mu3.pow(2) + lv3.exp() - 1 - lv3).flatten(1).sum(1)]
        d = self.dec3(self._sample(mu3, lv3, sample))[..., : self.n_times]  # (B, F, 1, T)
        if self.hierarchical:
            d, k2 = self._residual_level(d, h2, self.p2, self.q2, self.z2_in, sample)
            kl.append(k2.flatten(1).sum(1))
        d = self.dec2(d)  # (B, F1, C, T)
        if self.hierarchical:
            d, k1 = self._residual_level(d, h1, self.p1, self.q1, self.z1_in, sample)
            kl.append(k1.flatten(1).sum(1))
            per_sample = k1.sum(1)  # (B, C, T): level-1 information per channel and sample
            self._last_kl1 = (per_sample.sum(-1), per_sample.amax(-1))
            if self._keep_coarse:
                # the decoder's own prediction of level 1 from the deeper levels (prior mean,
                # no per-channel detail from the encoder): what the spatially pooled latents
                # explain of each channel
                self._last_coarse = self.final_layer(self._coarse_d)[:, 0, :, : self.n_times] * self.input_scale_uv
        recon = self.final_layer(d)[:, 0, :, : self.n_times] * self.input_scale_uv
        return recon, kl

    def _residual_level(self, d, h, prior_net, post_net, z_in, sample):
        """One upper latent level: prior from the decoder, posterior = prior shifted by the encoder."""
        mu_p, lv_p = prior_net(d).chunk(2, dim=1)
        if prior_net is getattr(self, "p1", None) and self._keep_coarse:
            self._coarse_d = d + z_in(mu_p)
        dmu, dlv = post_net(torch.cat((h, d), dim=1)).chunk(2, dim=1)
        lv_p, dlv = lv_p.clamp(-12, 8), dlv.clamp(-12, 8)
        # KL(N(mu_p + dmu, s_p^2 e^dlv) || N(mu_p, s_p^2)) in closed form (NVAE eq. 2)
        kl_map = 0.5 * (dmu.pow(2) / lv_p.exp() + dlv.exp() - 1 - dlv)
        z = self._sample(mu_p + dmu, lv_p + dlv, sample)
        return d + z_in(z), kl_map

    def loss(self, x, recon_loss="soft_dtw"):
        """Paper loss: ``alpha * soft-DTW per channel (summed) + beta * sum of KL``, batch mean.

        With ``coarse_weight > 0`` (hierarchical only), ``coarse_weight * alpha`` times the same
        reconstruction term of the coarse prediction is added (deep supervision of levels 2-3).

        Parameters
        ----------
        x : Tensor, shape (batch, n_chans, n_times)
        recon_loss : "soft_dtw" | "sse"
            ``"sse"`` (sum of squared errors, the soft-DTW of the diagonal alignment only) is a
            cheap O(T) stand-in used for warm-up epochs; it is an upper bound of the hard DTW cost.

        Returns
        -------
        total, recon, kl : Tensor (scalars)
        """
        check_option("recon_loss", recon_loss, ("soft_dtw", "sse"))
        coarse_w = self.config["coarse_weight"] if self.hierarchical else 0.0
        self._keep_coarse = coarse_w > 0
        try:
            recon_x, kl = self(x)
            coarse = self._last_coarse if coarse_w > 0 else None
        finally:
            self._keep_coarse = False
            self._last_coarse = self._coarse_d = None
        b, c, t = x.shape

        def rec_term(y):
            if recon_loss == "sse":
                return (x - y).pow(2).sum((1, 2)).mean()
            return soft_dtw(x.reshape(b * c, t), y.reshape(b * c, t), self.gamma).reshape(b, c).sum(1).mean()

        rec = rec_term(recon_x)
        kl_total = torch.stack(kl).sum(0).mean()
        total = self.alpha * rec + self.beta * kl_total
        if coarse is not None:
            total = total + coarse_w * self.alpha * rec_term(coarse)
        return total, rec, kl_total

    @property
    def n_features(self):
        """Number of per-channel features computed (see :attr:`feature_names`)."""
        return len(self.feature_names)

    def residual_features(self, x, pred):
        """Per-channel summaries of the residual ``x - pred``.

        Parameters
        ----------
        x, pred : ndarray, shape (n_windows, n_chans, n_times), uV

        Returns
        -------
        ndarray, shape (n_windows, n_chans, 5)
            In the order of :data:`RESIDUAL_FEATURES`, all natural logs of energies (uV^2) or
            amplitudes (uV): ``res_low`` residual energy below 3 Hz (drift, steps), ``res_high``
            above 40 Hz (line noise, muscle), ``res_ratio`` residual energy over input energy (a
            flat channel has almost no energy of its own but the prediction from its neighbours
            does), ``res_jump`` largest sample-to-sample jump of the residual (pops, clipping
            edges), ``res_burst`` largest residual energy in a 62.5 ms moving window (spikes).
        """
        from scipy.ndimage import uniform_filter1d

        x, pred = np.asarray(x, np.float64), np.asarray(pred, np.float64)
        res = x - pred
        eps = 1e-3
        power = np.abs(np.fft.rfft(res, axis=-1)) ** 2
        freqs = np.fft.rfftfreq(res.shape[-1], 1.0 / self.sfreq)
        energy = (res ** 2).sum(-1)
        burst = max(int(round(BURST_S * self.sfreq)), 1)
        out = [
            np.log(power[..., freqs < LOW_BAND_HZ].sum(-1) + eps),
            np.log(power[..., freqs >= HIGH_BAND_HZ].sum(-1) + eps),
            np.log(energy + eps) - np.log((x ** 2).sum(-1) + eps),
            np.log(np.abs(np.diff(res, axis=-1)).max(-1) + eps),
            np.log(uniform_filter1d(res ** 2, burst, axis=-1).max(-1) + eps),
        ]
        return np.stack(out, -1)

    def spatial_map(self, residuals=None, cov=None):
        """Leave-one-channel-out regression map of a recording's residuals.

        Row ``c`` of the map gives channel ``c``'s residual minus its least-squares prediction
        from the other channels' residuals at the same sample: with ``P`` the inverse of the
        (ridge-regularised) channel covariance, that prediction error is ``(P r)_c / P_cc``.
        Content shared across electrodes (a blink, a movement, common noise) is predictable
        from the neighbours and cancels; a fault of one electrode (flat, pop, clipping, mains
        pickup, a spike, local drift or muscle) is not, and is kept.

        Parameters
        ----------
        residuals : ndarray, shape (n_windows, n_chans, n_times) | None
            Residual windows of one recording (input minus coarse prediction).
        cov : ndarray, shape (n_chans, n_chans) | None
            Alternatively, their channel covariance.

        Returns
        -------
        ndarray, shape (n_chans, n_chans)
        """
        if cov is None:
            cov, _ = self._residual_cov(residuals, 0.0)
        cov = np.asarray(cov, np.float64)
        ridge = self.spatial_ridge * max(np.trace(cov) / len(cov), 1e-12)
        prec = np.linalg.inv(cov + ridge * np.eye(len(cov)))
        return prec / np.diag(prec)[:, None]

    def _map_for(self, n_windows, cov):
        """The spatial map a recording of ``n_windows`` windows is scored with (None: no projection)."""
        if self.spatial == "none":
            return None
        if self.reference == "recording" and n_windows >= self.min_reference_windows:
            return self.spatial_map(cov=cov)
        return self.train_spatial_map.numpy().astype(np.float64)

    def _spatial_residual_features(self, x, pred, smap):
        """:meth:`residual_features` of ``x - pred`` after the spatial map (None: as is)."""
        if smap is None:
            return self.residual_features(x, pred)
        res = np.einsum("cd,ndt->nct", smap, np.asarray(x, np.float64) - np.asarray(pred, np.float64))
        return self.residual_features(x, np.asarray(x, np.float64) - res)

    @torch.no_grad()
    def channel_features(self, windows, batch_size=64, error=True, spatial_map=None):
        """Per-window, per-channel quantities that the quality score is built from.

        Parameters
        ----------
        windows : ndarray or Tensor, shape (n_windows, n_chans, n_times), uV, demeaned
        error : bool
            Compute the soft-DTW ``error`` column; False leaves it NaN (soft-DTW is about nine
            tenths of the scoring time, and the default score does not use it).
        spatial_map : ndarray, shape (n_chans, n_chans) | "none" | None
            Spatial map applied to the residual before the ``res_*`` features (see
            :meth:`spatial_map`). None: with ``spatial="loo"``, the map of ``windows`` themselves,
            taken as one recording (the training map when they are fewer than
            ``min_reference_windows`` or ``reference="training"``); ``"none"``: no projection.

        Returns
        -------
        features : ndarray, shape (n_windows, n_chans, n_features)
            Columns named by :attr:`feature_names`:
            ``error``: soft-DTW reconstruction error per sample (uV^2), as in the paper.
            ``kl`` (hvEEGNet only): KL divergence of the level-1 latent summed over that
            channel's latent maps and time, i.e. how much information about the channel the
            encoder had to pass beyond what the decoder predicted from the deeper levels.
            ``kl_peak`` (hvEEGNet only): the largest per-sample value of that KL over time, which
            a short transient (a 40 ms spike is 5 of 128 samples) raises far more than the sum.
            ``res_*``: :meth:`residual_features` of the input against the coarse prediction
            (hvEEGNet: level 1 at its prior mean, i.e. decoded from levels 2-3 only; vEEGNet:
            its only reconstruction), after the spatial map.
        recon : ndarray, shape (n_windows, n_chans, n_times)
            The full reconstruction (all levels at their posterior means).
        """
        feats, recs, _ = self._features(windows, batch_size, error, spatial_map)
        return feats, recs

    @torch.no_grad()
    def _features(self, windows, batch_size=64, error=True, spatial_map=None):
        """:meth:`channel_features` plus the coarse prediction, shape (n_windows, n_chans, n_times)."""
        windows = np.asarray(windows)
        base, recs, coarse = self._forward_batches(windows, batch_size, error)
        if isinstance(spatial_map, str):
            check_option("spatial_map", spatial_map, ("none",))
            smap = None
        elif spatial_map is None:
            smap = self._map_for(len(windows), self._residual_cov(windows, coarse)[0]) if len(windows) else None
        else:
            smap = np.asarray(spatial_map, np.float64)
        res = self._spatial_residual_features(windows, coarse, smap) if len(windows) else \
            np.zeros((0, self.n_chans, len(RESIDUAL_FEATURES)))
        return np.concatenate([base, res], -1), recs, coarse

    @staticmethod
    def _residual_cov(windows, coarse):
        """Channel covariance of the residuals (about zero mean: windows are demeaned) and the number of samples."""
        r = np.asarray(windows, np.float64) - np.asarray(coarse, np.float64)
        n = r.shape[0] * r.shape[2]
        return np.einsum("nct,ndt->cd", r, r) / max(n, 1), n

    @torch.no_grad()
    def _forward_batches(self, windows, batch_size=64, error=True):
        """Network pass: the non-residual features, the full reconstruction and the coarse prediction."""
        was = self.training
        self.eval()
        self._keep_coarse = True
        feats, recs, coarse = [], [], []
        try:
            for i in range(0, len(windows), batch_size):
                x = torch.as_tensor(np.asarray(windows[i:i + batch_size]), dtype=torch.float32)
                r, _ = self(x, sample=False)
                b, c, t = x.shape
                if error:
                    e = soft_dtw(x.reshape(b * c, t), r.reshape(b * c, t), self.gamma).reshape(b, c) / t
                else:
                    e = torch.full((b, c), float("nan"))
                f = [e] + (list(self._last_kl1) if self.hierarchical else [])
                pred = self._last_coarse if self.hierarchical else r
                feats.append(torch.stack(f, -1).numpy().astype(np.float64))
                recs.append(r.numpy())
                coarse.append(pred.numpy())
        finally:
            self._keep_coarse = False
            self._last_coarse = self._coarse_d = None
            self.train(was)
        nb = self.n_features - len(RESIDUAL_FEATURES)
        if not feats:
            empty = np.zeros((0, self.n_chans, self.n_times))
            return np.zeros((0, self.n_chans, nb)), empty, empty
        return np.concatenate(feats), np.concatenate(recs), np.concatenate(coarse)

    def channel_errors(self, windows, batch_size=64):
        """Soft-DTW reconstruction error per sample, shape (n_windows, n_chans), and the reconstruction."""
        # the network pass alone: no spatial map or residual features, which would be discarded
        f, r, _ = self._forward_batches(np.asarray(windows), batch_size, error=True)
        return f[..., 0], r

    def _standardise(self, features, reference="training"):
        """Per-channel scores from features, shape (n_windows, n_chans).

        Each feature is turned into a robust z-score per channel. ``reference="training"`` uses
        the clean-training median/IQR stored with the weights; ``"recording"`` the median/IQR of
        ``features`` itself, which adapts to a recording's overall amplitude and stays valid
        while a minority of its windows are corrupted (fewer than ``min_reference_windows``
        windows fall back to training). The reconstruction error counts when too high; the
        features in :data:`TWO_SIDED` (the level-1 KL, the residual-to-input ratio) in both
        directions (too little information or residual is a flat or dead channel). A channel's
        score is the largest of these. A 2-D input is read as the error alone.
        """
        features = np.asarray(features)
        if features.ndim == 2:
            features = features[..., None]
        nf = features.shape[-1]
        # a 2-D input (the error alone) is scored as such, whatever ``score_features`` says
        names = self.feature_names if nf > 1 else ["error"]
        use = [names.index(f) for f in self.score_features] if nf > 1 else [0]
        if reference == "recording" and len(features) >= self.min_reference_windows:
            q25, med, q75 = np.percentile(features, [25, 50, 75], axis=0)
            iqr = np.maximum(q75 - q25, 1e-6)
        else:
            med, iqr = self.channel_median.numpy()[:, :nf], self.channel_iqr.numpy()[:, :nf]
        z = (features - med) / iqr
        for i, name in enumerate(names):
            if name in TWO_SIDED:
                z[..., i] = np.abs(z[..., i])
        return z[..., use].max(-1)

    def calibrate(self, windows, groups=None, batch_size=64):
        """Set the per-channel statistics and the threshold from clean windows.

        Parameters
        ----------
        windows : ndarray, shape (n_windows, n_chans, n_times)
            Clean training windows (uV, demeaned), as made by :meth:`windows_from_array`.
        groups : ndarray, shape (n_windows,) | None
            Recording of each window. With ``reference="recording"`` the threshold is the
            ``threshold_quantile`` of scores standardised within each recording, exactly as
            :meth:`score` does on a new recording.

        Returns
        -------
        self
        """
        windows = np.asarray(windows)
        base, _, coarse = self._forward_batches(windows, batch_size, error=True)
        if self.spatial == "loo":
            cov, _ = self._residual_cov(windows, coarse)
            self.train_spatial_map.copy_(torch.as_tensor(self.spatial_map(cov=cov), dtype=torch.float32))
        train_map = self.train_spatial_map.numpy().astype(np.float64) if self.spatial == "loo" else None
        errors = np.concatenate([base, self._spatial_residual_features(windows, coarse, train_map)], -1)
        q25, med, q75 = np.percentile(errors, [25, 50, 75], axis=0)
        self.channel_median.copy_(torch.as_tensor(med, dtype=torch.float32))
        self.channel_iqr.copy_(torch.as_tensor(np.maximum(q75 - q25, 1e-6), dtype=torch.float32))
        if groups is None or self.reference == "training":
            scores = self._standardise(errors).max(1)
        else:
            groups = np.asarray(groups)
            scores = []
            for g in np.unique(groups):
                sel = groups == g
                smap = self._map_for(int(sel.sum()), self._residual_cov(windows[sel], coarse[sel])[0])
                f = np.concatenate([base[sel], self._spatial_residual_features(windows[sel], coarse[sel], smap)], -1)
                scores.append(self._standardise(f, self.reference).max(1))
            scores = np.concatenate(scores)
        self.threshold.copy_(torch.tensor(float(np.quantile(scores, self.threshold_quantile))))
        return self

    # ------------------------------------------------------------------ data
    def _rate_fraction(self, sfreq):
        if abs(sfreq - self.sfreq) < 1e-6:
            return Fraction(1, 1)
        return Fraction(self.sfreq / sfreq).limit_denominator(1000)

    def _to_model_rate(self, data, sfreq):
        """(C, n) at ``sfreq`` -> (C, m) at the model's rate (polyphase, anti-aliased)."""
        if abs(sfreq - self.sfreq) < 1e-6:
            return data
        from scipy.signal import resample_poly

        frac = self._rate_fraction(sfreq)
        return resample_poly(data, frac.numerator, frac.denominator, axis=-1)

    def windows_from_array(self, data, sfreq, stride=None):
        """Cut model-channel data into model windows.

        Parameters
        ----------
        data : ndarray, shape (n_chans, n_samples)
            In volts, model channel order, at ``sfreq``.
        sfreq : float
        stride : int | None
            Step in model samples (default: one window, no overlap).

        Returns
        -------
        windows : ndarray, shape (n_windows, n_chans, n_times), uV, demeaned per channel
        starts : ndarray, shape (n_windows,)
            Start sample of each window at the model rate. When the length is not a multiple
            of the window, one last window ending at the last sample is added.
        """
        x = self._to_model_rate(np.asarray(data, dtype=np.float64) * 1e6, sfreq)
        t = self.n_times
        stride = stride or t
        n = x.shape[-1]
        if n < t:
            return np.zeros((0, self.n_chans, t), np.float32), np.zeros(0, int)
        starts = list(range(0, n - t + 1, stride))
        if starts[-1] + t < n:
            starts.append(n - t)
        starts = np.asarray(starts)
        w = np.stack([x[:, s:s + t] for s in starts])
        w -= w.mean(-1, keepdims=True)
        return w.astype(np.float32), starts

    def _picked(self, inst, missing, max_interpolated):
        source = _describe(inst)
        picks, interp = match_channels(
            inst.info, self.ch_names, missing=missing, max_interpolated=max_interpolated, source=source
        )
        mat = None
        if interp:
            mat = _interp_matrix(self.ch_names, interp)
            record_warning(f"{source}: interpolated missing channel(s) {', '.join(interp)} for hvEEGNet scoring.")
        return picks, interp, mat

    @staticmethod
    def _assemble(get, picks, mat, n_chans):
        known = [p for p in picks if p is not None]
        data_known = get(known)
        if mat is None:
            return data_known
        weights, rows, known_rows = mat
        out = np.zeros((n_chans, data_known.shape[-1]))
        out[known_rows] = data_known
        out[rows] = weights @ data_known
        return out

    def _raw_windows(self, raw, picks, mat, starts):
        """Model windows of a Raw at the given model-rate start samples (one read per call).

        One second of context on each side feeds the resampling filter, so a window's values
        do not depend on how the recording was chunked.
        """
        sf, t, n = raw.info["sfreq"], self.n_times, raw.n_times
        pad = int(np.ceil(sf))
        m0, m1 = int(starts[0]), int(starts[-1]) + t
        den = self._rate_fraction(sf).denominator
        # start on a sample that falls on the model's grid (multiple of the resampling
        # denominator), so that windows are identical however the recording is chunked
        a = max(int(np.floor(m0 / self.sfreq * sf)) - pad, 0) // den * den
        b = min(int(np.ceil(m1 / self.sfreq * sf)) + pad, n)
        data = self._assemble(lambda p: raw.get_data(picks=p, start=a, stop=b), picks, mat, self.n_chans)
        x = self._to_model_rate(data * 1e6, sf)
        off = int(round(a / sf * self.sfreq))
        w = np.stack([x[:, s - off:s - off + t] for s in starts])
        w = w - w.mean(-1, keepdims=True)
        return w.astype(np.float32)

    def windows_at(self, raw, onsets_s, *, missing="raise", max_interpolated=3, coarse=False):
        """Input and reconstruction of the windows starting at ``onsets_s`` (seconds from the first sample).

        Returns
        -------
        windows, recon : ndarray, shape (n, n_chans, n_times), uV
        coarse : ndarray, shape (n, n_chans, n_times), only with ``coarse=True``
            The coarse prediction the residual features compare the input with.
        """
        picks, _, mat = self._picked(raw, missing, max_interpolated)
        starts = np.round(np.asarray(onsets_s) * self.sfreq).astype(int)
        w = np.concatenate([self._raw_windows(raw, picks, mat, [s]) for s in starts]) if len(starts) else \
            np.zeros((0, self.n_chans, self.n_times), np.float32)
        _, r, c = self._features(w, error=False, spatial_map="none")
        return (w, r, c) if coarse else (w, r)

    # ------------------------------------------------------------------ public QC API
    def score(self, inst, *, missing="raise", max_interpolated=3, chunk_s=60.0, batch_size=64, return_recon=False):
        """Per-window anomaly scores of a Raw or Epochs.

        A Raw is read in chunks of ``chunk_s`` seconds (plus one second of context on each side
        for the resampling filter), so memory stays bounded on long recordings. An Epochs object
        is scored per epoch: each epoch is cut into model windows and keeps the worst one.

        Parameters
        ----------
        inst : mne.io.BaseRaw | mne.BaseEpochs
        missing : "raise" | "interpolate"
            Channel-set policy (see the module docstring).
        max_interpolated : int
        chunk_s : float
            Seconds of data read at once from a Raw.
        batch_size : int
        return_recon : bool
            Also return the model-rate input and reconstruction windows, each
            ``(n_windows, n_chans, n_times)`` (memory grows with the recording).

        Returns
        -------
        scores : QCScores
        (windows, recon) : tuple of ndarray, only with ``return_recon``
        """
        import mne

        if not isinstance(inst, (mne.io.BaseRaw, mne.BaseEpochs)):
            raise UsageError(f"score expects an mne Raw or Epochs, got {type(inst).__name__}.")
        source = _describe(inst)
        if self.threshold.item() == float("inf"):
            record_warning("hvEEGNet has no calibrated threshold (call calibrate); nothing will be flagged.")
        picks, interp, mat = self._picked(inst, missing, max_interpolated)
        need_error = "error" in self.score_features
        sf = inst.info["sfreq"]
        if sf < self.sfreq:
            record_warning(
                f"{source}: sampling rate {sf:g} Hz is below the model's {self.sfreq:g} Hz; it is upsampled "
                "and high-frequency artifacts above its Nyquist frequency cannot be seen."
            )
        t = self.n_times
        win_s = t / self.sfreq
        # the recording is cut into items (a chunk of a Raw, or one epoch), each a stack of windows
        if isinstance(inst, mne.io.BaseRaw):
            n = inst.n_times
            if n / sf < win_s:
                raise InputFileError(
                    f"{source}: the recording lasts {n / sf:.3f} s, shorter than one hvEEGNet window "
                    f"({win_s:g} s); nothing can be scored."
                )
            step = max(int(round(chunk_s / win_s)), 1) * t  # model samples per chunk, whole windows
            total = int(np.floor(n / sf * self.sfreq))
            starts_all = list(range(0, total - t + 1, t))
            if starts_all[-1] + t < total:
                starts_all.append(total - t)
            starts_all = np.asarray(starts_all)
            items = [starts_all[(starts_all >= c0) & (starts_all < c0 + step)] for c0 in range(0, total, step)]
            items = [sel for sel in items if len(sel)]

            def item_windows(sel):
                return self._raw_windows(inst, picks, mat, sel)

            onsets = [sel / self.sfreq for sel in items]
            durs = [np.full(len(sel), win_s) for sel in items]
        elif isinstance(inst, mne.BaseEpochs):
            if len(inst.times) / sf < win_s - 1e-9:
                raise InputFileError(
                    f"{source}: epochs last {len(inst.times) / sf:.3f} s, shorter than one hvEEGNet window ({win_s:g} s)."
                )
            items = list(range(len(inst)))

            def item_windows(i):
                data = self._assemble(lambda p: inst.get_data(picks=p, item=[i])[0], picks, mat, self.n_chans)
                return self.windows_from_array(data, sf)[0]

            onsets = [np.array([float(i)]) for i in items]
            durs = [np.array([len(inst.times) / sf]) for _ in items]
        else:
            raise UsageError(f"score expects an mne Raw or Epochs, got {type(inst).__name__}.")
        # pass 1: the network on every window; the residuals' channel covariance over the whole
        # recording gives its spatial map (see spatial_map)
        cache, cov, n_samp, n_win, used = [], 0.0, 0, 0, 0
        for it in items:
            w = item_windows(it)
            base, r, c = self._forward_batches(w, batch_size, error=need_error)
            if self.spatial == "loo":
                cv, k = self._residual_cov(w, c)
                cov, n_samp = cov + cv * k, n_samp + k
            n_win += len(w)
            used += w.nbytes + c.nbytes + (r.nbytes if return_recon else 0)
            cache.append((w, base, r if return_recon else None, c) if used <= _CACHE_BYTES else None)
        smap = self._map_for(n_win, cov / max(n_samp, 1)) if self.spatial == "loo" else None
        # pass 2: residual features with that map (cached windows, or read and run again)
        errs, wins, recs = [], [], []
        for it, hit in zip(items, cache):
            if hit is None:
                w = item_windows(it)
                base, r, c = self._forward_batches(w, batch_size, error=need_error)
            else:
                w, base, r, c = hit
            e = np.concatenate([base, self._spatial_residual_features(w, c, smap)], -1)
            if isinstance(inst, mne.BaseEpochs):
                worst = self._standardise(e).max(1).argmax()  # the epoch keeps its worst window
                e, w = e[worst:worst + 1], w[worst:worst + 1]
                r = r[worst:worst + 1] if return_recon else r
            errs.append(e)
            if return_recon:
                wins.append(w)
                recs.append(r)
        feats = np.concatenate(errs)
        ch_scores = self._standardise(feats, self.reference)
        out = QCScores(
            onsets=np.concatenate(onsets), durations=np.concatenate(durs), scores=ch_scores.max(1),
            channel_errors=feats[..., 0] if need_error else None, channel_scores=ch_scores,
            channel_kl=feats[..., 1] if self.hierarchical else None, ch_names=list(self.ch_names),
            threshold=float(self.threshold.item()), interpolated=interp,
        )
        if return_recon:
            return out, (np.concatenate(wins), np.concatenate(recs))
        return out

    def reconstruct(self, inst, **kwargs):
        """Model-rate input windows and their reconstructions.

        Returns
        -------
        windows, recon : ndarray, shape (n_windows, n_chans, n_times)
            uV, demeaned per window; channels are :attr:`ch_names`.
        scores : QCScores
        """
        scores, (w, r) = self.score(inst, return_recon=True, **kwargs)
        return w, r, scores

    def annotate(self, raw, *, threshold=None, scores=None, **kwargs):
        """Return a copy of ``raw`` with ``BAD_hveegnet`` annotations on windows above threshold.

        The input is not modified and no sample is removed. Adjacent flagged windows are merged
        into one annotation.

        Parameters
        ----------
        raw : mne.io.BaseRaw
        threshold : float | None
            Score threshold (default: the calibrated one stored with the weights).
        scores : QCScores | None
            Reuse scores already computed for this ``raw``.
        **kwargs
            Passed to :meth:`score` (``missing``, ``chunk_s``, ...).

        Returns
        -------
        raw : mne.io.BaseRaw
            New object; its annotations are the original ones plus the new ``BAD_hveegnet`` ones.
        """
        import mne

        if not isinstance(raw, mne.io.BaseRaw):
            raise UsageError(f"annotate expects an mne Raw, got {type(raw).__name__}.")
        if scores is None:
            scores = self.score(raw, **kwargs)
        thr = scores.threshold if threshold is None else float(threshold)
        flagged = scores.scores > thr
        onsets, durations = [], []
        for on, du, f in zip(scores.onsets, scores.durations, flagged):
            if not f:
                continue
            if onsets and on <= onsets[-1] + durations[-1] + 1e-9:
                durations[-1] = max(durations[-1], on + du - onsets[-1])
            else:
                onsets.append(float(on))
                durations.append(float(du))
        out = raw.copy()
        new = mne.Annotations(
            np.asarray(onsets) + raw.first_time, durations, [BAD_DESCRIPTION] * len(onsets),
            orig_time=raw.annotations.orig_time,
        )
        out.set_annotations(raw.annotations + new)
        return out

    # ------------------------------------------------------------------ weights
    def save_pretrained(self, path, *, metadata=None, overwrite=False):
        """Write weights, calibration and config to one safetensors file (atomic)."""
        from safetensors.torch import save_file

        from ..utils import atomic_path

        meta = {"config": json.dumps(self.config), "format": "neurodecode-hveegnet-1"}
        meta.update({k: str(v) for k, v in (metadata or {}).items()})
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(path, overwrite=overwrite) as tmp:
            save_file(state, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def from_pretrained(cls, path=None):
        """Load shipped (default) or local weights; nothing is downloaded.

        Parameters
        ----------
        path : path-like | None
            A ``.safetensors`` file written by :meth:`save_pretrained`. Default: the weights
            shipped in ``neurodecode/weights/hveegnet_eegmmidb.safetensors``.
        """
        from ..utils import read_safetensors

        path = Path(path) if path is not None else DEFAULT_WEIGHTS
        state, meta = read_safetensors(path, what="hvEEGNet weights")
        try:
            config = json.loads(meta["config"])
        except (KeyError, ValueError) as err:
            raise InputFileError(f"{path}: not an hvEEGNet weights file ({err}).") from err
        # files saved before the spatial option were calibrated without it
        config.setdefault("spatial", "none")
        model = cls(**config)
        own = model.state_dict()
        state.setdefault("train_spatial_map", own["train_spatial_map"])
        for key in ("channel_median", "channel_iqr"):
            # weights calibrated by an older version: keep the network, drop the stale statistics
            if key in state and state[key].shape != own[key].shape:
                state[key] = own[key]
                state["threshold"] = own["threshold"]
        model.load_state_dict(state)
        model.metadata = meta
        model.eval()
        return model


def _describe(inst):
    fn = getattr(inst, "filenames", None) or [None]
    if fn and fn[0] is not None:
        return str(fn[0])
    return f"the {type(inst).__name__}"
