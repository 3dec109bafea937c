"""Speed options of the whole-recording AT-AT path: window overlap, bfloat16 transformer, pre-screen."""

import numpy as np
import pytest
import torch

from neurodecode.artifacts import apply as A
from neurodecode.artifacts.atat import ATAT
from neurodecode.utils import UsageError


@pytest.mark.parametrize("hop", [256, 384, 448])
def test_crossfade_weights_sum_to_one(hop):
    w = A.crossfade_weights(512, hop).astype(np.float64)
    o = 512 - hop
    assert np.allclose(w[hop:] + w[:o], 1.0, atol=1e-6)
    assert np.all(w[o:hop] == 1.0)
    if hop == 256:  # the half-overlap layout keeps the sin^2 window
        assert np.allclose(w, np.sin(np.pi * (np.arange(512) + 0.5) / 512) ** 2, atol=1e-6)


@pytest.mark.parametrize("overlap", [0.5, 0.25, 0.125])
@pytest.mark.parametrize("n", [300, 2000, 7777])
def test_overlap_add_removes_exactly_what_every_window_removes(overlap, n, half_model):
    # 32 Hz at 256 Hz: every window holds whole cycles, so its mean is zero and the (mean-removing)
    # normalisation changes nothing; away from the reflected edges the weights must sum to one
    t = np.arange(n) / 256.0
    sig = np.vstack([np.sin(2 * np.pi * 32 * t + 0.3), 2 * np.cos(2 * np.pi * 32 * t)]).astype(np.float32)
    removed, frac = A._denoise_rows(half_model("emg"), sig, gated=True, overlap=overlap)
    assert removed.shape == sig.shape and np.all(frac == 1)
    assert np.allclose(removed[:, 512:-512], 0.5 * sig[:, 512:-512], atol=1e-5)
    assert np.abs(removed).max() > 0.4


def test_bad_overlap_and_precision_are_refused(half_model):
    with pytest.raises(UsageError, match="overlap must be in"):
        A.hop_for(half_model("emg"), 0.75)
    with pytest.raises(UsageError, match="precision must be one of"):
        A.resolve_precision("float16")
    assert A.resolve_precision("auto") == ("bfloat16" if A.cpu_has_bf16() else "float32")


def test_prescreen_skips_only_windows_below_threshold(half_model):
    t = np.arange(256 * 20) / 256.0
    slow = np.sin(2 * np.pi * 2 * t)[None].astype(np.float32)  # no power above 30 Hz
    noise = np.random.default_rng(0).standard_normal((1, len(t))).astype(np.float32)
    screen = {"feature": "hf_fraction", "threshold": 0.3}
    rem, frac = A._denoise_rows(half_model("emg"), np.vstack([slow, noise]), overlap=0.25, prescreen=screen)
    assert frac[0] == 0 and np.all(rem[0] == 0)
    plain, _ = A._denoise_rows(half_model("emg"), np.vstack([slow, noise]), overlap=0.25)
    assert frac[1] == 1 and np.array_equal(rem[1], plain[1]) and np.abs(plain[0]).max() > 0.1


def test_calibrate_prescreen_threshold_is_the_miss_quantile():
    y = np.random.default_rng(1).standard_normal((400, 512))
    sc = A.calibrate_prescreen(y, "smoothness", 256.0, miss=0.05)
    skipped = A.prescreen_skip(y, sc, 256.0)
    assert sc["feature"] == "smoothness" and 0.03 <= skipped.mean() <= 0.07
    shipped = {a: A.load_prescreen(a) for a in ("emg", "eog")}
    assert shipped["emg"]["feature"] == "hf_fraction" and shipped["eog"]["feature"] == "smoothness"
    assert all(s["val_miss"] <= 0.02 for s in shipped.values())


def test_bfloat16_transformer_stays_close_to_float32():
    torch.manual_seed(0)
    net = ATAT.from_pretrained("emg").net.eval()
    y = torch.randn(64, 512)
    with torch.inference_mode():
        ref = A.transformer_fn(net, "float32")(y)
        bf = A.transformer_fn(net, "bfloat16")(y)
    rel = float((bf - ref).norm() / (y - ref).norm())  # relative to the removed signal
    assert bf.dtype == torch.float32 and 0 < rel < 0.05
    # the bfloat16 path runs on a copy: the model itself stays float32 and gives the same output
    assert all(p.dtype == torch.float32 for p in net.parameters())
    with torch.inference_mode():
        assert torch.equal(net(y), ref)


def test_band_limited_smoothness_ignores_content_above_its_cut():
    rng = np.random.default_rng(2)
    t = np.arange(512) / 256.0
    slow = np.sin(2 * np.pi * 3 * t)
    hiss = 0.5 * np.sin(2 * np.pi * 90 * t)  # above 40 Hz: the band-limited feature must not see it
    f40 = A.PRESCREEN_FEATURES["smoothness_40"]
    fall = A.PRESCREEN_FEATURES["smoothness"]
    x = np.vstack([slow, slow + hiss, rng.standard_normal(512)])
    v40, vall = f40(x, 256.0), fall(x, 256.0)
    assert abs(v40[0] - v40[1]) < 1e-3 and vall[1] < vall[0] - 0.1
    assert v40[2] < v40[0]  # white noise is rougher than a slow wave
