"""Denoising metrics of the EEGdenoiseNet protocol (Zhang et al. 2021, eq. 8-10).

Every function takes the denoised signal and the clean reference as arrays of shape
``(n_segments, n_times)`` (a 1-D array is one segment) and returns one value per segment;
average over segments yourself (the benchmark reports the mean per SNR, then the mean over SNRs).

The spectral RRMSE needs a power-spectrum estimator, which the paper does not name. We use
Welch's method with a Hann window of ``nperseg = n_times // 2`` samples (1 s for a 2 s segment at
256 Hz, 1 Hz resolution), 50 % overlap, one-sided density, on the full band 0..sfreq/2.
"""

import numpy as np

# The fidelity suite for synthetic windows lives in fidelity.py; re-exported here so that every
# metric is found in one place.
from .fidelity import (  # noqa: E402
    acf_distance,
    augmentation_utility,
    band_power_deltas,
    band_powers,
    class_recovery,
    covariance_distance,
    distribution_metrics,
    mmd_rbf,
    prd,
)

__all__ = [
    "rrmse_temporal", "rrmse_spectral", "correlation_coefficient", "welch_psd", "output_snr", "WELCH_DOC",
    "band_powers", "band_power_deltas", "covariance_distance", "acf_distance", "mmd_rbf", "prd",
    "distribution_metrics", "class_recovery", "augmentation_utility",
]

WELCH_DOC = "Welch PSD, Hann window, nperseg = n_times // 2, 50 % overlap, one-sided density, 0..sfreq/2"


def _pair(denoised, clean):
    d = np.asarray(denoised, dtype=np.float64)
    c = np.asarray(clean, dtype=np.float64)
    if d.shape != c.shape:
        raise ValueError(f"denoised and clean must have the same shape, got {d.shape} and {c.shape}.")
    if d.ndim == 1:
        d, c = d[None], c[None]
    if d.ndim != 2:
        raise ValueError(f"expected (n_segments, n_times) arrays, got {d.ndim} dimensions.")
    return d, c


def _rms(a):
    return np.sqrt(np.mean(a**2, axis=-1))


def rrmse_temporal(denoised, clean):
    """Relative RMS error in time: ``RMS(f(y) - x) / RMS(x)``.

    Parameters
    ----------
    denoised, clean : ndarray, shape (n_segments, n_times) or (n_times,)

    Returns
    -------
    rrmse : ndarray, shape (n_segments,)
    """
    d, c = _pair(denoised, clean)
    return _rms(d - c) / _rms(c)


def welch_psd(x, sfreq=256.0, nperseg=None):
    """Welch power spectral density used by :func:`rrmse_spectral` (see module docstring).

    Returns
    -------
    freqs : ndarray, shape (n_freqs,)
    psd : ndarray, shape (n_segments, n_freqs)
    """
    from scipy.signal import welch

    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    nperseg = int(nperseg or max(8, x.shape[-1] // 2))
    return welch(x, fs=sfreq, window="hann", nperseg=nperseg, noverlap=nperseg // 2, axis=-1)


def rrmse_spectral(denoised, clean, sfreq=256.0, nperseg=None):
    """Relative RMS error of the power spectrum: ``RMS(PSD(f(y)) - PSD(x)) / RMS(PSD(x))``.

    Parameters
    ----------
    denoised, clean : ndarray, shape (n_segments, n_times) or (n_times,)
    sfreq : float
        Sampling rate in Hz (only the frequency axis depends on it).
    nperseg : int | None
        Welch segment length; default ``n_times // 2``.

    Returns
    -------
    rrmse : ndarray, shape (n_segments,)
    """
    d, c = _pair(denoised, clean)
    _, pd_ = welch_psd(d, sfreq, nperseg)
    _, pc = welch_psd(c, sfreq, nperseg)
    return _rms(pd_ - pc) / _rms(pc)


def correlation_coefficient(denoised, clean):
    """Pearson correlation per segment: ``Cov(f(y), x) / sqrt(Var(f(y)) Var(x))``.

    Returns
    -------
    cc : ndarray, shape (n_segments,)
        A constant segment has no defined correlation and gives NaN.
    """
    d, c = _pair(denoised, clean)
    d = d - d.mean(axis=-1, keepdims=True)
    c = c - c.mean(axis=-1, keepdims=True)
    den = np.sqrt((d**2).sum(-1) * (c**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (d * c).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def output_snr(denoised, clean):
    """Output SNR as a power ratio in dB, ``10 log10(sum x^2 / sum (f(y) - x)^2)`` (used by later papers)."""
    d, c = _pair(denoised, clean)
    return 10 * np.log10((c**2).sum(-1) / ((d - c) ** 2).sum(-1))
