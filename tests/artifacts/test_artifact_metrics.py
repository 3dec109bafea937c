"""Metrics of the EEGdenoiseNet protocol on hand-computed cases."""

import numpy as np
import pytest

from neurodecode.artifacts.metrics import correlation_coefficient, output_snr, rrmse_spectral, rrmse_temporal


def test_rrmse_temporal_hand_computed():
    x = np.array([1.0, -1.0, 1.0, -1.0])
    out = np.array([1.0, -1.0, 1.0, 1.0])  # error only in the last sample: RMS(err) = sqrt(4/4) = 1
    assert rrmse_temporal(out, x) == pytest.approx([1.0])
    assert rrmse_temporal(x, x) == pytest.approx([0.0])
    assert rrmse_temporal(0.5 * x, x) == pytest.approx([0.5])


def test_rrmse_spectral_scaling():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 512))
    assert rrmse_spectral(x, x) == pytest.approx(np.zeros(3))
    # doubling the amplitude multiplies the PSD by 4: RMS(4P - P) / RMS(P) = 3
    assert rrmse_spectral(2 * x, x) == pytest.approx(np.full(3, 3.0))


def test_correlation_coefficient_cases():
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    assert correlation_coefficient(3 * x + 7, x) == pytest.approx([1.0])
    assert correlation_coefficient(-x, x) == pytest.approx([-1.0])
    # hand-computed: centred a = [-1.5,-.5,.5,1.5], b = [1,-1,-1,1] -> cov 0
    assert correlation_coefficient(np.array([[2.0, 0.0, 0.0, 2.0]]), x) == pytest.approx([0.0])
    assert np.isnan(correlation_coefficient(np.ones((1, 4)), x)[0])


def test_output_snr_and_shape_errors():
    x = np.array([[1.0, -1.0, 1.0, -1.0]])
    assert output_snr(x * 1.1, x) == pytest.approx([20.0])  # error power 1 % of signal
    with pytest.raises(ValueError, match="same shape"):
        rrmse_temporal(np.zeros(4), np.zeros(5))
