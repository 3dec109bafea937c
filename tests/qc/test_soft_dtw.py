"""soft-DTW: agreement with a plain dynamic programme, gradients, divergence properties."""

import numpy as np
import pytest
import torch

from neurodecode.artifacts.soft_dtw import SoftDTW, soft_dtw, soft_dtw_reference


@pytest.mark.parametrize("t1,t2,gamma", [(7, 5, 0.5), (5, 9, 1.0), (12, 12, 0.1), (1, 4, 1.0)])
def test_matches_reference_dp(t1, t2, gamma):
    rng = np.random.default_rng(t1 * 10 + t2)
    x, y = rng.normal(size=(4, t1)), rng.normal(size=(4, t2))
    got = soft_dtw(torch.tensor(x), torch.tensor(y), gamma).numpy()
    want = [soft_dtw_reference(x[i], y[i], gamma) for i in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_small_gamma_approaches_hard_dtw():
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.0, 1.0, 2.0, 3.0]], dtype=torch.float64)  # a pure time shift: DTW cost 0
    assert abs(soft_dtw(x, y, 1e-3).item()) < 1e-2
    assert soft_dtw(x, y, 1.0).item() < 0  # smoothing makes the value negative


def test_gradient_matches_finite_differences():
    torch.manual_seed(0)
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: soft_dtw(a, b, 0.7), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: soft_dtw(a, b, 0.7, normalize=True), (x, y))


def test_multivariate_and_module():
    torch.manual_seed(1)
    x, y = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 6, 3, dtype=torch.float64)
    v = SoftDTW(gamma=0.5)(x, y)
    assert v.shape == (2,)
    # with d = 1 the multivariate path equals the 1-D one
    np.testing.assert_allclose(soft_dtw(x[..., :1], y[..., :1], 0.5), soft_dtw(x[..., 0], y[..., 0], 0.5))


def test_divergence_zero_on_identical_and_positive_otherwise():
    torch.manual_seed(2)
    x = torch.randn(4, 10, dtype=torch.float64)
    np.testing.assert_allclose(soft_dtw(x, x, 1.0, normalize=True), 0.0, atol=1e-10)
    assert (soft_dtw(x, x + 0.5 * torch.randn_like(x), 1.0, normalize=True) > 0).all()


def test_large_amplitudes_stay_finite():
    # uV-scale EEG gives costs far larger than gamma: exp() must not underflow into NaN
    torch.manual_seed(3)
    x = (100 * torch.randn(2, 64)).requires_grad_()
    y = 100 * torch.randn(2, 64)
    v = soft_dtw(x, y, 1.0)
    v.sum().backward()
    assert torch.isfinite(v).all() and torch.isfinite(x.grad).all()


def test_bad_shapes_and_gamma():
    with pytest.raises(ValueError, match="same N"):
        soft_dtw(torch.zeros(2, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="gamma must be > 0"):
        soft_dtw(torch.zeros(2, 5), torch.zeros(2, 5), gamma=0)
