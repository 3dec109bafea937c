"""hvEEGNet's spatial reference (spatial="loo"): leave-one-channel-out residual, two-pass scoring."""

import json

import mne
import numpy as np
import pytest
import torch

from neurodecode.artifacts import hveegnet as hv_mod
from neurodecode.artifacts.hveegnet import RESIDUAL_FEATURES, HVEEGNet

SF = 128.0


def _mixed(n_win, seed, rng=None):
    """Windows (n, 19, 128) uV: 3 shared sources with fixed spatial patterns + weak local noise."""
    rng = rng or np.random.default_rng(seed)
    patterns = np.random.default_rng(100).normal(size=(19, 3))
    src = rng.normal(size=(n_win, 3, 128)).cumsum(-1) * 5
    x = np.einsum("ck,nkt->nct", patterns, src) + rng.normal(0, 2, (n_win, 19, 128))
    return x - x.mean(-1, keepdims=True), patterns


def test_spatial_map_is_the_leave_one_out_ridge_regression():
    m = HVEEGNet(spatial_ridge=0.05)
    r, _ = _mixed(40, 0)
    smap = m.spatial_map(r)
    flat = r.transpose(1, 0, 2).reshape(19, -1)
    cov = flat @ flat.T / flat.shape[1]
    cov = cov + 0.05 * np.trace(cov) / 19 * np.eye(19)
    for c in (0, 7, 18):
        others = [j for j in range(19) if j != c]
        beta = np.linalg.solve(cov[np.ix_(others, others)], cov[others, c])
        want = flat[c] - beta @ flat[others]
        np.testing.assert_allclose(smap[c] @ flat, want, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.diag(smap), 1.0)
    np.testing.assert_allclose(m.spatial_map(cov=flat @ flat.T / flat.shape[1]), smap)


def test_loo_cancels_a_shared_artifact_and_keeps_a_local_spike():
    m = HVEEGNet()
    x, patterns = _mixed(60, 1)
    x[10] += patterns[:, :1] * 300 * np.hanning(128)[None]  # a large "blink" through the shared pattern
    x[20, 4, 60:65] += 150.0  # a 40 ms spike on one electrode
    pred = np.zeros_like(x)  # the residual is the input itself here
    smap = m.spatial_map(x)
    raw_f = m._spatial_residual_features(x, pred, None)
    loo_f = m._spatial_residual_features(x, pred, smap)
    burst = RESIDUAL_FEATURES.index("res_burst")

    def z(f):
        f = f[..., burst]
        q25, med, q75 = np.percentile(f, [25, 50, 75], axis=0)
        return ((f - med) / (q75 - q25)).max(1)

    # without the spatial reference the shared artifact outranks the spike; with it, the spike stands out
    assert z(raw_f)[10] > z(raw_f)[20]
    assert z(loo_f)[20] > 3 * max(z(loo_f)[10], 1.0)
    assert np.argmax(loo_f[20, :, burst]) == 4


def _raw(seconds, seed):
    x, _ = _mixed(int(seconds), seed)
    data = np.concatenate(list(x), axis=-1) * 1e-6
    return mne.io.RawArray(data, mne.create_info(list(hv_mod.CHANNELS_1020), SF, "eeg"), verbose="error")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = HVEEGNet()
    w, _ = m.windows_from_array(_raw(40, 2).get_data(), SF)
    return m.calibrate(w, groups=np.repeat([0, 1], 20))


def test_calibration_stores_a_training_map(model):
    assert model.spatial == "loo" and model.config["spatial"] == "loo"
    smap = model.train_spatial_map.numpy()
    assert not np.allclose(smap, np.eye(19))
    np.testing.assert_allclose(np.diag(smap), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="'spatial' parameter"):
        HVEEGNet(spatial="pca")


def test_two_pass_score_without_cache_is_identical(model, monkeypatch):
    raw = _raw(45, 3)
    raw._data[6, int(30.2 * SF):int(30.25 * SF)] += 300e-6  # spike on F8
    cached = model.score(raw, chunk_s=10)
    monkeypatch.setattr(hv_mod, "_CACHE_BYTES", 0)  # read and run every chunk twice
    again, (w, r) = model.score(raw, chunk_s=10, return_recon=True)
    np.testing.assert_allclose(again.channel_scores, cached.channel_scores, rtol=1e-5, atol=1e-5)
    assert w.shape == r.shape == (45, 19, 128)
    assert int(np.argmax(cached.scores)) == 30 and cached.ch_names[int(cached.channel_scores[30].argmax())] == "F8"


def test_spatial_none_scores_the_plain_residual(model):
    raw = _raw(35, 4)
    loo = model.score(raw)
    try:
        model.set_spatial("none")
        plain = model.score(raw)
        w, _ = model.windows_from_array(raw.get_data(), SF)
        feats, _ = model.channel_features(w, error=False, spatial_map="none")
        np.testing.assert_allclose(plain.channel_scores, model._standardise(feats, "recording"), rtol=1e-5, atol=1e-5)
    finally:
        model.set_spatial("loo")
    assert not np.allclose(loo.channel_scores, plain.channel_scores)
    with pytest.raises(ValueError, match="'spatial_map' parameter"):
        model.channel_features(w, spatial_map="pca")


def test_short_recording_uses_the_training_map(model):
    w, _ = model.windows_from_array(_raw(12, 5).get_data(), SF)  # fewer than min_reference_windows
    own, _ = model.channel_features(w, error=False, spatial_map=model.spatial_map(w - model._features(w, spatial_map="none")[2]))
    default, _ = model.channel_features(w, error=False)
    train, _ = model.channel_features(w, error=False, spatial_map=model.train_spatial_map.numpy())
    np.testing.assert_allclose(default, train, equal_nan=True)
    assert not np.allclose(default[..., -5:], own[..., -5:])


def test_weights_saved_before_the_option_load_without_projection(model, tmp_path):
    from safetensors.torch import load_file, save_file

    path = model.save_pretrained(tmp_path / "new.safetensors")
    assert HVEEGNet.from_pretrained(path).spatial == "loo"
    state = load_file(str(path))
    state.pop("train_spatial_map")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["config"])
    config.pop("spatial"), config.pop("spatial_ridge")
    meta["config"] = json.dumps(config)
    save_file(state, str(tmp_path / "old.safetensors"), metadata=meta)
    old = HVEEGNet.from_pretrained(tmp_path / "old.safetensors")
    assert old.spatial == "none"
    np.testing.assert_array_equal(old.train_spatial_map.numpy(), np.eye(19))
