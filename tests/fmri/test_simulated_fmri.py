"""Simulated multi-subject fMRI benchmark: real BOLD noise, fixed feature mixtures, leakage-free split."""

import numpy as np
import pytest

from neurodecode.datasets.simulated_fmri import low_level_features, real_bold_noise, simulate_subjects
from neurodecode.utils import UsageError


def test_low_level_features():
    img = np.zeros((2, 8, 8))
    img[0, :4, :4] = 1.0  # bright top-left quadrant
    f = low_level_features(img, size=2)
    assert f.shape == (2, 8)
    np.testing.assert_allclose(f[0, :4], [1, 0, 0, 0])  # luminance grid
    np.testing.assert_allclose(f[0, 4:], 0)  # uniform blocks carry no contrast energy
    with pytest.raises(UsageError, match="cannot be pooled"):
        low_level_features(np.zeros((1, 10, 10)), size=4)


def test_simulated_subjects_use_real_noise(shared_data):
    noise = real_bold_noise()
    assert [n.shape[0] for n in noise] == [40, 40, 20]  # nitime runs x2, nipy run
    rng = np.random.default_rng(0)
    images = rng.random((60, 8, 8))
    embeds = rng.standard_normal((60, 16))
    subs = simulate_subjects(images, embeds, train_sizes=(30, 10), n_voxels=(50, 20), snr=(100.0, 0.0),
                             n_test=10, test_repeats=2, low_size=4, n_high=8, noise=noise, seed=1)
    a, b = subs
    assert a["train"].n_voxels == 50 and b["train"].n_voxels == 20
    assert a["train"].meta["simulated"] is True and a["noise_source"].endswith("fmri1.nii.gz")
    test_ids = set(range(50, 60))
    for s in subs:
        assert set(s["train"].stim_ids).isdisjoint(test_ids)  # no test image in any training set
        assert sorted(set(s["test"].stim_ids)) == sorted(test_ids) and len(s["test"]) == 20
    # snr 0: pure real noise, which is unit-variance per voxel like the cleaned BOLD
    assert 0.5 < b["train"].responses.std() < 1.5
    # at a very high snr the two repeats of a test image agree; with noise only they do not
    def repeat_corr(s):
        r = s["test"].responses
        return np.corrcoef(r[0::2].ravel(), r[1::2].ravel())[0, 1]

    assert repeat_corr(a) > 0.95
    assert abs(repeat_corr(b)) < 0.3
    # the same seed gives the same data
    again = simulate_subjects(images, embeds, train_sizes=(30, 10), n_voxels=(50, 20), snr=(100.0, 0.0),
                              n_test=10, test_repeats=2, low_size=4, n_high=8, noise=noise, seed=1)
    np.testing.assert_array_equal(again[0]["train"].responses, a["train"].responses)
    with pytest.raises(UsageError, match="one entry per subject"):
        simulate_subjects(images, embeds, train_sizes=(30,), n_voxels=(50, 20), snr=(1.0, 1.0), noise=noise)
    with pytest.raises(UsageError, match="not held out"):
        simulate_subjects(images, embeds, train_sizes=(55,), n_voxels=(5,), snr=(1.0,), n_test=10, noise=noise)
