"""fMRI data path: masking, cleaning, per-stimulus responses, NSD-style HDF5."""

import h5py
import numpy as np
import pytest

from neurodecode.datasets.fmri import (
    BoldMasker,
    FMRIResponses,
    average_repeats,
    bold_to_responses,
    clean_signal,
    read_nsd_responses,
    stimulus_responses,
    write_nsd_responses,
)
from neurodecode.io import read_bold
from neurodecode.utils import InputFileError, UsageError
from neurodecode.utils._errors import RecoverableDamageWarning


def test_clean_signal_detrends_and_zscores():
    rng = np.random.default_rng(0)
    t = np.arange(50)[:, None]
    X = 100 + 0.5 * t + rng.standard_normal((50, 4))
    Xc = clean_signal(X)
    np.testing.assert_allclose(Xc.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(Xc.std(0), 1, atol=1e-5)
    # the linear drift is gone: no correlation with time left
    assert abs(np.corrcoef(t[:, 0], Xc[:, 0])[0, 1]) < 1e-5
    assert X[0, 0] > 90  # input untouched


def test_clean_signal_constant_voxel_warns():
    X = np.ones((10, 2))
    X[:, 1] = np.arange(10)
    problems = []
    with pytest.warns(RecoverableDamageWarning, match="1 voxel"):
        Xc = clean_signal(X, problems=problems, detrend=False)
    assert np.all(Xc[:, 0] == 0) and len(problems) == 1


def test_stimulus_responses_hrf_delay_window():
    X = np.arange(20, dtype=float)[:, None].repeat(3, 1)  # value == volume index
    R, kept = stimulus_responses(X, tr=2.0, onsets=[0.0, 10.0], hrf_delay=4.0, window=4.0)
    # onset 0: volumes at 4 s and 6 s -> indices 2, 3 -> mean 2.5; onset 10: 14, 16 s -> 7, 8
    np.testing.assert_allclose(R[:, 0], [2.5, 7.5])
    assert kept.tolist() == [0, 1]
    # window shorter than a TR: first volume at/after onset + delay
    R, _ = stimulus_responses(X, tr=2.0, onsets=[1.0], hrf_delay=4.0, window=0.5)
    assert R[0, 0] == 3
    with pytest.warns(RecoverableDamageWarning, match="dropped"):
        R, kept = stimulus_responses(X, tr=2.0, onsets=[0.0, 39.0], hrf_delay=4.0)
    assert kept.tolist() == [0]
    with pytest.raises(UsageError, match="'tr'"):
        stimulus_responses(X, tr=0, onsets=[0.0])


def test_masker_on_real_bold(data_file):
    runs = [read_bold(data_file("fmri_nitime", f"fmri{i}.nii.gz")) for i in (1, 2)]
    masker = BoldMasker()
    X1, X2 = masker.fit_transform(runs)
    assert masker.mask_.shape == (10, 10, 18)
    assert X1.shape == (40, masker.n_voxels_) and X2.shape == X1.shape
    assert masker.n_voxels_ == int((runs[0].mask & runs[1].mask).sum())
    np.testing.assert_allclose(X1.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(X1.std(0), 1, atol=1e-3)
    vol = masker.inverse_transform(X1[:2])
    assert vol.shape == (10, 10, 18, 2)
    np.testing.assert_array_equal(vol[masker.mask_].T, X1[:2])
    with pytest.raises(UsageError, match="mask"):
        BoldMasker(mask=np.ones((3, 3, 3), bool)).fit(runs)
    nipy = read_bold(data_file("fmri_nipy", "functional.nii.gz"))
    with pytest.raises(InputFileError, match="volume shape"):
        masker.transform(nipy)


def test_bold_to_responses_real_runs(data_file):
    paths = [data_file("fmri_nitime", f"fmri{i}.nii.gz") for i in (1, 2)]
    # TR 1.35 s, 40 volumes = 54 s; events every 9 s, stim ids shared between runs
    ev = [np.array([[t, k] for k, t in enumerate(np.arange(0, 45, 9.0))]) for _ in paths]
    out = bold_to_responses(paths, ev, subject="nitime")
    assert out.responses.shape == (10, out.meta["n_voxels"])
    assert out.sessions.tolist() == [0] * 5 + [1] * 5
    assert out.meta["hrf_delay"] == 4.5
    # first event: volumes whose times fall in [4.5, 7.5) s -> indices 4 and 5 (5.4 s, 6.75 s)
    X = out.masker.transform(read_bold(paths[0]))
    np.testing.assert_allclose(out.responses[0], X[4:6].mean(0), rtol=1e-5)
    avg = average_repeats(out)
    assert len(avg) == 5 and avg.meta["n_repeats"] == [2] * 5
    np.testing.assert_allclose(avg.responses[0], (out.responses[0] + out.responses[5]) / 2, rtol=1e-5)
    with pytest.raises(UsageError, match="one table per run"):
        bold_to_responses(paths, ev[:1])


def test_nsd_roundtrip_and_layouts(tmp_path):
    rng = np.random.default_rng(1)
    a = FMRIResponses(rng.standard_normal((6, 5)), np.arange(6), "sub-01", meta={"x": 1})
    b = FMRIResponses(rng.standard_normal((4, 7)), np.arange(4) + 2, "sub-02")
    p = write_nsd_responses(tmp_path / "resp.h5", [a, b])
    with pytest.raises(UsageError, match="overwrite"):
        write_nsd_responses(p, [a])
    with pytest.raises(UsageError, match="several subjects"):
        read_nsd_responses(p)
    r = read_nsd_responses(p, "sub-02")
    np.testing.assert_allclose(r.responses, b.responses, rtol=1e-6)
    assert r.stim_ids.tolist() == [2, 3, 4, 5] and r.n_voxels == 7
    # the subject group also reads through io.read_bold
    assert read_bold(p, dataset="sub-01/betas").to_array().shape == (6, 5)
    with pytest.raises(UsageError, match="'subject'"):
        read_nsd_responses(p, "sub-09")

    # NSD per-session layout: int16 betas x 300, 4D with a mask, z-scored per session
    betas = rng.normal(0, 2, (8, 3, 3, 2)) * 300
    mask = np.zeros((3, 3, 2), bool)
    mask[1:, :, 0] = True
    q = tmp_path / "betas_session01.hdf5"
    with h5py.File(q, "w") as f:
        f["betas"] = betas.astype(np.int16)
        f["mask"] = mask
    with pytest.raises(InputFileError, match="stim_ids"):
        read_nsd_responses(q)
    r = read_nsd_responses(q, stim_ids=np.arange(8))
    assert r.responses.shape == (8, 6)
    np.testing.assert_allclose(r.responses.std(0), 1, atol=1e-4)
    raw = read_nsd_responses(q, stim_ids=np.arange(8), zscore=False)
    np.testing.assert_allclose(raw.responses, betas.astype(np.int16)[:, mask] / 300, rtol=1e-5)
    with pytest.raises(InputFileError, match="2 stimulus ids"):
        read_nsd_responses(q, stim_ids=[0, 1])

    # damaged: NaN betas are zeroed with a warning
    z = tmp_path / "nan.h5"
    with h5py.File(z, "w") as f:
        f["betas"] = np.array([[1.0, np.nan], [2.0, 3.0]], np.float32)
        f["stim_ids"] = np.array([0, 1])
    with pytest.warns(RecoverableDamageWarning, match="non-finite"):
        r = read_nsd_responses(z, zscore=False)
    assert r.responses[0, 1] == 0
    with pytest.raises(InputFileError, match="no such file"):
        read_nsd_responses(tmp_path / "missing.h5")
