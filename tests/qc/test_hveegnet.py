"""hvEEGNet model, channel policy, chunked scoring and annotation (tiny untrained models)."""

import mne
import numpy as np
import pytest
import torch

from neurodecode.artifacts.hveegnet import BAD_DESCRIPTION, CHANNELS_1020, RESIDUAL_FEATURES, HVEEGNet, match_channels
from neurodecode.utils import InputFileError

SF = 160.0


def _raw(seconds=30.0, names=CHANNELS_1020, seed=0, sfreq=SF):
    rng = np.random.default_rng(seed)
    n = int(seconds * sfreq)
    # smooth noise of about 15 uV, like scalp EEG
    data = np.cumsum(rng.normal(size=(len(names), n)), axis=1)
    data -= np.convolve(np.ones(n), np.ones(1), "same")[None] * data.mean(1, keepdims=True)
    data = data / data.std(1, keepdims=True) * 15e-6
    info = mne.create_info(list(names), sfreq, "eeg")
    return mne.io.RawArray(data, info, verbose="error")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = HVEEGNet()
    w, _ = m.windows_from_array(_raw(40, seed=1).get_data(), SF)
    return m.calibrate(w)


def test_forward_shapes_and_kl_levels():
    x = torch.randn(3, 19, 128) * 20
    hv, v = HVEEGNet(hierarchical=True), HVEEGNet(hierarchical=False)
    r, kl = hv(x)
    assert r.shape == x.shape and len(kl) == 3 and all(k.shape == (3,) for k in kl)
    assert len(v(x)[1]) == 1
    for kind in ("soft_dtw", "sse"):
        total, rec, klv = hv.loss(x, recon_loss=kind)
        assert torch.isfinite(total) and klv > 0
        total.backward()
    assert hv.enc1[0].weight.grad is not None


def test_eval_is_deterministic_and_training_samples():
    torch.manual_seed(0)
    m = HVEEGNet()
    x = torch.randn(2, 19, 128) * 20
    m.eval()
    assert torch.equal(m(x)[0], m(x)[0])
    m.train()
    assert not torch.equal(m(x)[0], m(x)[0])


def test_bad_config():
    with pytest.raises(ValueError, match="divisible by pool"):
        HVEEGNet(n_times=130, pool=4)
    with pytest.raises(ValueError, match="ch_names has 2 names"):
        HVEEGNet(n_chans=19, ch_names=["Cz", "Pz"])


def test_save_load_roundtrip(model, tmp_path):
    path = model.save_pretrained(tmp_path / "m.safetensors", metadata={"note": "test"})
    loaded = HVEEGNet.from_pretrained(path)
    x = torch.randn(2, 19, 128) * 20
    model.eval()
    assert torch.allclose(loaded(x)[0], model(x)[0])
    assert loaded.threshold.item() == pytest.approx(model.threshold.item())
    assert loaded.metadata["note"] == "test"
    with pytest.raises(ValueError, match="Refusing to overwrite"):
        model.save_pretrained(path)
    with pytest.raises(InputFileError, match="no such file; expected hvEEGNet weights"):
        HVEEGNet.from_pretrained(tmp_path / "absent.safetensors")


def test_channel_policy_names_order_aliases_extras():
    names = ["EEG " + n.upper() + "-REF" for n in CHANNELS_1020][::-1]  # reversed, prefixed, suffixed
    names[names.index("EEG T7-REF")] = "EEG T3-REF"  # old 10-20 name
    info = mne.create_info(names + ["EKG", "Oz"], 100.0, ["eeg"] * 19 + ["ecg", "eeg"])
    picks, interp = match_channels(info, CHANNELS_1020)
    assert interp == []
    assert [info["ch_names"][p] for p in picks][:3] == ["EEG FP1-REF", "EEG FP2-REF", "EEG F7-REF"]
    assert info["ch_names"][picks[CHANNELS_1020.index("T7")]] == "EEG T3-REF"


def test_channel_policy_missing_and_bad():
    names = [n for n in CHANNELS_1020 if n not in ("Cz", "O2")]
    info = mne.create_info(names, 100.0, "eeg")
    with pytest.raises(InputFileError, match="missing: Cz, O2 \\(absent\\)"):
        match_channels(info, CHANNELS_1020, source="rec.edf")
    info["bads"] = ["Pz"]
    with pytest.raises(InputFileError, match="Pz \\(marked bad\\)"):
        match_channels(info, CHANNELS_1020)
    picks, interp = match_channels(info, CHANNELS_1020, missing="interpolate")
    assert interp == ["Cz", "O2", "Pz"] and picks[CHANNELS_1020.index("Cz")] is None
    with pytest.raises(InputFileError, match="at most 2 may be interpolated"):
        match_channels(info, CHANNELS_1020, missing="interpolate", max_interpolated=2)
    with pytest.raises(ValueError, match="'missing' parameter"):
        match_channels(info, CHANNELS_1020, missing="guess")


def test_interpolated_channel_is_close_to_truth(model):
    raw = _raw(10, seed=4)
    # make the data spatially smooth so that interpolation can recover it: one common source
    raw._data[:] = raw._data[:1] * np.linspace(0.8, 1.2, 19)[:, None]
    dropped = raw.copy().drop_channels(["Cz"])
    dropped.set_montage("standard_1005")
    with pytest.warns(UserWarning, match="interpolated missing channel"):
        s = model.score(dropped, missing="interpolate")
    assert s.interpolated == ["Cz"]
    full = model.score(raw)
    assert len(s.scores) == len(full.scores)


def test_chunking_does_not_change_scores(model):
    raw = _raw(23.3, seed=2)
    a = model.score(raw, chunk_s=3)
    b = model.score(raw, chunk_s=60)
    assert len(a.scores) == 24  # 23 full windows + one aligned to the end
    assert a.channel_errors is None  # the default residual score skips soft-DTW
    np.testing.assert_allclose(a.channel_scores, b.channel_scores, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(a.onsets, b.onsets)
    kept = list(model.score_features)
    try:
        model.set_score_features(["error"])  # a score that uses the paper's error computes it
        a, b = model.score(raw, chunk_s=3), model.score(raw, chunk_s=60)
    finally:
        model.set_score_features(kept)
    assert np.isfinite(a.channel_errors).all() and a.channel_errors.shape == (24, 19)
    np.testing.assert_allclose(a.channel_errors, b.channel_errors, rtol=1e-4, atol=1e-3)


def test_annotate_flags_injected_spike_and_keeps_input(model):
    raw = _raw(30, seed=3)
    raw._data[5, int(12.4 * SF):int(12.45 * SF)] += 400e-6  # a 400 uV spike on F4 at 12.4 s
    before = raw.get_data().copy()
    out = model.annotate(raw)
    assert len(raw.annotations) == 0 and np.array_equal(raw.get_data(), before)
    bad = [a for a in out.annotations if a["description"] == BAD_DESCRIPTION]
    assert any(a["onset"] <= 12.4 < a["onset"] + a["duration"] for a in bad)
    assert sum(a["duration"] for a in bad) < 5  # the rest of the clean recording mostly passes
    s = model.score(raw)
    assert s.summary()["worst_channels"][0][0] == "F4"
    assert out.n_times == raw.n_times


def test_too_short_and_wrong_type(model):
    with pytest.raises(InputFileError, match="shorter than one hvEEGNet window"):
        model.score(_raw(0.5))
    with pytest.raises(ValueError, match="expects an mne Raw or Epochs"):
        model.score(np.zeros((19, 1000)))
    with pytest.raises(ValueError, match="annotate expects an mne Raw"):
        model.annotate(np.zeros(3))


def test_epochs_scoring(model):
    raw = _raw(20, seed=5)
    raw._data[3, int(8.3 * SF):int(8.35 * SF)] += 400e-6
    epochs = mne.make_fixed_length_epochs(raw, duration=2.0, preload=True, verbose="error")
    s = model.score(epochs)
    assert s.scores.shape == (len(epochs),) and s.channel_scores.shape == (len(epochs), 19)
    assert int(np.argmax(s.scores)) == 4  # the epoch that holds 8.3 s
    short = mne.make_fixed_length_epochs(raw, duration=0.5, verbose="error")
    with pytest.raises(InputFileError, match="shorter than one"):
        model.score(short)


def test_reference_modes_and_grouped_calibration(model):
    rng = np.random.default_rng(0)
    errors = rng.gamma(2.0, 10.0, size=(40, 19)) * 3  # a recording with errors three times larger
    z_rec = model._standardise(errors, "recording")
    z_train = model._standardise(errors, "training")
    assert abs(np.median(z_rec)) < 0.2  # centred on its own recording
    assert not np.allclose(z_rec, z_train)
    # too few windows: fall back to the training statistics
    np.testing.assert_allclose(model._standardise(errors[:5], "recording"), z_train[:5])
    with pytest.raises(ValueError, match="'reference' parameter"):
        HVEEGNet(reference="other")
    w, _ = model.windows_from_array(_raw(64, seed=6).get_data(), SF)
    thr_grouped = float(model.calibrate(w, groups=np.repeat([0, 1], [32, len(w) - 32])).threshold)
    thr_pooled = float(model.calibrate(w).threshold)
    assert np.isfinite(thr_grouped) and thr_grouped != thr_pooled


def test_score_features_config():
    assert HVEEGNet(hierarchical=False, score_features=("kl", "error")).score_features == ["error"]
    assert HVEEGNet(hierarchical=False).score_features == list(RESIDUAL_FEATURES)  # no KL, same residual score
    assert HVEEGNet().score_features == list(RESIDUAL_FEATURES)
    hv = HVEEGNet(score_features=("kl_peak", "error"))
    assert hv.score_features == ["error", "kl_peak"] and hv.n_features == 8
    with pytest.raises(ValueError, match="'score_features' parameter"):
        HVEEGNet(score_features=("bogus",))
    feats, _ = hv.channel_features(np.random.default_rng(0).normal(0, 20, (3, 19, 128)).astype(np.float32))
    assert feats.shape == (3, 19, 8)
    assert (feats[..., 2] <= feats[..., 1] + 1e-4).all()  # the peak of a non-negative KL is below its sum
    # only the selected features enter the score
    only_error = HVEEGNet(score_features=("error",))
    only_error.load_state_dict(hv.state_dict())
    np.testing.assert_allclose(only_error._standardise(feats), (feats[..., 0] - 0.0) / 1.0)
    hv.set_score_features(["res_ratio"])
    assert hv.config["score_features"] == ["res_ratio"]


def test_residual_features_see_flat_line_noise_step_and_spike():
    m = HVEEGNet()
    rng = np.random.default_rng(0)
    t = np.arange(128) / 128.0
    x = np.cumsum(rng.normal(size=(6, 19, 128)), -1)
    x = (x - x.mean(-1, keepdims=True)) * 3  # smooth, EEG-like
    pred = x + rng.normal(0, 2, x.shape)  # a prediction that misses only small noise
    bad = x.copy()
    bad[1, 4] = rng.normal(0, 0.05, 128)  # flat electrode
    bad[2, 4] += 30 * np.sin(2 * np.pi * 50 * t)  # 50 Hz mains on one electrode
    bad[3, 4] += np.where(t > 0.5, 100.0, 0.0)  # a 100 uV step
    bad[4, 4] += 200 * np.exp(-0.5 * ((t - 0.4) / 0.01) ** 2)  # a 200 uV spike
    f = m.residual_features(bad, pred)
    clean = m.residual_features(x, pred)
    names = list(RESIDUAL_FEATURES)
    low, high, ratio, jump, burst = (names.index(n) for n in ("res_low", "res_high", "res_ratio", "res_jump", "res_burst"))
    assert f[1, 4, ratio] > clean[1, 4, ratio] + 5  # residual energy far above the channel's own
    assert f[2, 4, high] > clean[2, 4, high] + 3
    assert f[3, 4, low] > clean[3, 4, low] + 3 and f[3, 4, jump] > clean[3, 4, jump] + 2
    assert f[4, 4, burst] > clean[4, 4, burst] + 3
    # untouched channels and windows keep their values
    np.testing.assert_allclose(f[:, :4], clean[:, :4])
    np.testing.assert_allclose(f[0], clean[0])


def test_coarse_weight_adds_the_coarse_reconstruction_term():
    torch.manual_seed(0)
    x = torch.randn(4, 19, 128) * 20
    plain = HVEEGNet(coarse_weight=0.0).eval()
    deep = HVEEGNet(coarse_weight=1.0).eval()
    deep.load_state_dict(plain.state_dict())
    t0, r0, k0 = plain.loss(x, recon_loss="sse")
    t1, r1, k1 = deep.loss(x, recon_loss="sse")
    assert torch.allclose(r0, r1) and torch.allclose(k0, k1)  # same network, same paper terms
    _, _, coarse = deep._features(x.numpy())
    extra = ((x - torch.as_tensor(coarse, dtype=torch.float32)) ** 2).sum((1, 2)).mean()
    assert torch.allclose(t1 - t0, extra, rtol=1e-4)
    assert deep.config["coarse_weight"] == 1.0 and not deep._keep_coarse


def test_fine_tune_start_loads_network_weights_and_accepts_pre_spatial_files(tmp_path):
    from safetensors.torch import save_file

    from neurodecode.training.hveegnet_system import load_network_weights

    torch.manual_seed(0)
    src = HVEEGNet()
    state = {k: v.detach().contiguous() for k, v in src.state_dict().items() if k != "train_spatial_map"}
    old = tmp_path / "old.safetensors"
    save_file(state, str(old), metadata={"config": "{}"})  # as written before the spatial map existed
    torch.manual_seed(1)
    dst = HVEEGNet()
    assert not torch.equal(dst.enc1[0].weight, src.enc1[0].weight)
    load_network_weights(dst, old)
    assert torch.equal(dst.enc1[0].weight, src.enc1[0].weight)
    # a different architecture is refused with the file named
    with pytest.raises(InputFileError, match="old.safetensors: does not match the configured architecture"):
        load_network_weights(HVEEGNet(hierarchical=False), old)


def test_channel_errors_match_the_error_column_of_channel_features(model):
    w, _ = model.windows_from_array(_raw(6, seed=7).get_data(), SF)
    err, rec = model.channel_errors(w, batch_size=4)
    feats, rec_f = model.channel_features(w, batch_size=4)
    assert err.shape == (6, 19) and np.isfinite(err).all() and (err > 0).all()
    np.testing.assert_allclose(err, feats[..., model.feature_names.index("error")], rtol=1e-6)
    np.testing.assert_allclose(rec, rec_f, rtol=1e-6)
