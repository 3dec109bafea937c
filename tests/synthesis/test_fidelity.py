"""Fidelity metrics on controlled inputs whose answer is known."""

import numpy as np
import pytest

from neurodecode.artifacts import fidelity as fd


def _noise(n, seed, scale=1.0, C=4, T=256):
    return scale * np.random.default_rng(seed).standard_normal((n, C, T))


def test_band_power_delta_of_scaled_copy_is_power_ratio():
    X = _noise(50, 0)
    assert fd.band_power_deltas(X, X, 128)["mean"] == pytest.approx(0.0, abs=1e-12)
    d = fd.band_power_deltas(X, 2 * X, 128)  # power x4 -> relative error 3 in every band
    assert all(d[b] == pytest.approx(3.0) for b in fd.BANDS)


def test_covariance_and_acf_distances():
    X = _noise(100, 1)
    mix = np.array([[1, 0.9, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    Y = np.einsum("cd,ndt->nct", mix, _noise(100, 2))
    assert fd.covariance_distance(X, _noise(100, 3)) < 0.1
    assert fd.covariance_distance(X, Y) > 0.5
    smooth = np.cumsum(_noise(100, 4), -1)  # random walk: long autocorrelation
    assert fd.acf_distance(X, _noise(100, 5)) < 0.15  # sampling noise of 64 lags
    assert fd.acf_distance(X, smooth) > 1.0


def test_mmd_detects_shift_and_not_same_distribution():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((150, 5)), rng.standard_normal((150, 5))
    same = fd.mmd_rbf(A, B, n_permutations=100)
    shifted = fd.mmd_rbf(A, B + 0.7, n_permutations=100)
    assert abs(same["mmd2"]) < 0.01 and same["p_value"] > 0.05
    assert shifted["mmd2"] > 0.05 and shifted["p_value"] < 0.02
    with pytest.raises(ValueError, match="at least 2 samples"):
        fd.mmd_rbf(A[:1], B)


def test_prd_identical_vs_disjoint():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((200, 3))
    same = fd.prd(A, A + 1e-3 * rng.standard_normal(A.shape), n_runs=2)
    far = fd.prd(A, A + 50.0, n_runs=2)
    assert same["F8"] > 0.9 and same["F1/8"] > 0.9
    assert far["F8"] < 0.1 and far["F1/8"] < 0.1


def test_knn_class_recovery_and_shape_errors():
    rng = np.random.default_rng(0)
    X = np.concatenate([_noise(40, 6), _noise(40, 7, scale=5.0)])
    y = np.repeat([0, 1], 40)
    knn = fd.fit_knn(X, y, 128)
    res = fd.class_recovery({"knn": knn}, np.concatenate([_noise(20, 8), _noise(20, 9, 5.0)]), np.repeat([0, 1], 20))
    assert res["knn"] == pytest.approx(1.0)
    flipped = fd.class_recovery({"knn": knn}, np.concatenate([_noise(20, 8, 5.0), _noise(20, 9)]), np.repeat([0, 1], 20))
    assert flipped["knn"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        fd.covariance_distance(_noise(5, 0), _noise(5, 0, C=3))
    with pytest.raises(ValueError, match="NaN"):
        fd.acf_distance(np.full((3, 2, 10), np.nan), _noise(3, 0, C=2, T=10))
    assert rng is not None


def test_mean_ci_matches_t_interval():
    m, h = fd.mean_ci([1.0, 2.0, 3.0])
    assert m == pytest.approx(2.0) and h == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)


def test_augmentation_utility_step_matched_control(monkeypatch):
    calls = []
    real_train_cnn = fd.train_cnn

    def spy(X, y, sfreq, **kw):
        calls.append((len(X), kw["epochs"]))
        return real_train_cnn(X, y, sfreq, **kw)

    monkeypatch.setattr(fd, "train_cnn", spy)
    X = np.concatenate([_noise(30, 1, C=4, T=128), _noise(30, 2, 20.0, C=4, T=128)])
    y = np.repeat([0, 1], 30)
    syn = (_noise(10, 3, 20.0, C=4, T=128), np.ones(10, int))
    res = fd.augmentation_utility(X, y, X, y, {"s": syn}, 128, seeds=(0, 1), epochs=1, match_steps=True)
    assert set(res) == {"real", "real+s", "real@1.17ep"}
    assert len(res["real@1.17ep"]["bacc"]) == 2 and "delta_matched_mean" in res["real+s"]
    # per seed: real (1 epoch of 60), augmented (1 epoch of 70), step-matched real (70/60 epochs of 60)
    assert calls[:3] == [(60, 1), (70, 1), (60, pytest.approx(70 / 60))]
