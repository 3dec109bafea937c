"""Baseline denoisers of the EEGdenoiseNet benchmark, re-implemented from the papers' descriptions.

* :class:`FCNN`, :class:`SimpleCNN`, :class:`ComplexCNN`, :class:`RNNDenoiser`: the four networks of
  Zhang et al. 2021 (EEGdenoiseNet, section 2.3): four dense layers; four conv-BN-ReLU layers and a
  dense head; three parallel residual branches with kernels 3/5/7 (1D-ResCNN style) and a dense head;
  a one-unit LSTM over time with three dense layers.
* :class:`NovelCNN`: Zhang et al. 2021 (ICASSP) muscle-artifact network: seven conv blocks doubling the
  width from 32 to 2048 with average pooling in between, then a dense layer.
* :func:`filter_denoise`: a zero-phase Butterworth low-pass (EMG) or high-pass (EOG).

All networks map a normalised segment ``(batch, n_times)`` to its clean estimate ``(batch, n_times)``.
Widths follow the papers, so parameter counts can be compared (:func:`count_parameters`).
"""

import numpy as np
import torch
from torch import nn

__all__ = ["FCNN", "SimpleCNN", "ComplexCNN", "RNNDenoiser", "NovelCNN", "BASELINES", "count_parameters",
           "filter_denoise"]


def count_parameters(model):
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


class FCNN(nn.Module):
    """Four dense layers of width ``n_times`` (ReLU, dropout 0.3) and a linear output."""

    def __init__(self, n_times=512, dropout=0.3):
        super().__init__()
        layers = []
        for _ in range(3):
            layers += [nn.Linear(n_times, n_times), nn.ReLU(), nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)
        self.final_layer = nn.Linear(n_times, n_times)

    def forward(self, x):
        return self.final_layer(self.body(x))


class SimpleCNN(nn.Module):
    """Four Conv1d(64, k=3)-BN-ReLU layers, flattened into a dense output of ``n_times``."""

    def __init__(self, n_times=512, width=64, dropout=0.3):
        super().__init__()
        layers, c = [], 1
        for _ in range(4):
            layers += [nn.Conv1d(c, width, 3, padding=1), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]
            c = width
        self.body = nn.Sequential(*layers)
        self.final_layer = nn.Linear(width * n_times, n_times)

    def forward(self, x):
        return self.final_layer(self.body(x[:, None]).flatten(1))


class _ResBlock(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(c, c, k, padding=k // 2), nn.BatchNorm1d(c), nn.ReLU(),
            nn.Conv1d(c, c, k, padding=k // 2), nn.BatchNorm1d(c),
        )

    def forward(self, x):
        return torch.relu(x + self.net(x))


class ComplexCNN(nn.Module):
    """Three residual branches (kernels 3, 5, 7; ``n_blocks`` blocks of ``width`` channels each),
    concatenated, fused by a 1x1 conv and read out by a dense layer."""

    def __init__(self, n_times=512, width=32, n_blocks=3):
        super().__init__()
        self.branches = nn.ModuleList()
        for k in (3, 5, 7):
            self.branches.append(nn.Sequential(
                nn.Conv1d(1, width, k, padding=k // 2), nn.BatchNorm1d(width), nn.ReLU(),
                *[_ResBlock(width, k) for _ in range(n_blocks)],
            ))
        self.fuse = nn.Sequential(nn.Conv1d(3 * width, width, 1), nn.BatchNorm1d(width), nn.ReLU())
        self.final_layer = nn.Linear(width * n_times, n_times)

    def forward(self, x):
        h = torch.cat([b(x[:, None]) for b in self.branches], 1)
        return self.final_layer(self.fuse(h).flatten(1))


class RNNDenoiser(nn.Module):
    """A one-unit LSTM over time, then dense layers of width ``n_times`` (ReLU, dropout 0.3)."""

    def __init__(self, n_times=512, hidden=1, dropout=0.3):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.body = nn.Sequential(
            nn.Linear(hidden * n_times, n_times), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(n_times, n_times), nn.ReLU(), nn.Dropout(dropout),
        )
        self.final_layer = nn.Linear(n_times, n_times)

    def forward(self, x):
        h, _ = self.lstm(x[:, :, None])
        return self.final_layer(self.body(h.flatten(1)))


class NovelCNN(nn.Module):
    """Seven blocks of two Conv1d(k=3)-ReLU layers, widths 32..2048, average pooling between blocks
    (six poolings), dropout and a dense output (Zhang et al. 2021, ICASSP)."""

    def __init__(self, n_times=512, base=32, n_blocks=7, dropout=0.5):
        super().__init__()
        layers, c = [], 1
        for i in range(n_blocks):
            w = base * 2**i
            layers += [nn.Conv1d(c, w, 3, padding=1), nn.ReLU(), nn.Conv1d(w, w, 3, padding=1), nn.ReLU()]
            if i < n_blocks - 1:
                layers.append(nn.AvgPool1d(2))
            c = w
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.final_layer = nn.Linear(c * (n_times // 2 ** (n_blocks - 1)), n_times)

    def forward(self, x):
        return self.final_layer(self.drop(self.body(x[:, None]).flatten(1)))


BASELINES = {"fcnn": FCNN, "simple_cnn": SimpleCNN, "complex_cnn": ComplexCNN, "rnn": RNNDenoiser,
             "novel_cnn": NovelCNN}


def filter_denoise(y, sfreq, *, kind, cutoff, order=4):
    """Zero-phase Butterworth filter applied per segment.

    Parameters
    ----------
    y : ndarray, shape (n_segments, n_times)
    kind : {"lowpass", "highpass"}
        Low-pass removes EMG (broadband, mostly above 20 Hz); high-pass removes EOG (mostly below 4 Hz).
    cutoff : float
        Cut-off frequency in Hz.

    Returns
    -------
    ndarray, same shape as ``y``
    """
    from scipy.signal import butter, sosfiltfilt

    sos = butter(order, cutoff, btype=kind, fs=sfreq, output="sos")
    return sosfiltfilt(sos, np.asarray(y, np.float64), axis=-1)
