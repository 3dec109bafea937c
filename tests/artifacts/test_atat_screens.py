"""Screens of the whole-recording AT-AT path: frontal EOG decision, spectral EMG screen, screened blocks."""

import mne
import numpy as np
import pytest

from neurodecode.artifacts import apply as A
from neurodecode.artifacts import screens as S


def _dense(model, x, sf, overlap):
    hp = A._highpass(x, sf, model.l_freq)
    removed, _ = A._denoise_rows(model, A._resample(hp, sf, model.sfreq), True, overlap=overlap)
    return A._resample_back(removed, model.sfreq, sf, x.shape[1])


def test_frontal_channels_by_name():
    names = ["Fc5.", "Fp1.", "fpz", "AF7", "F7", "T8", "Oz", "AFz.."]
    assert list(S.frontal_channels(names)) == [1, 2, 3, 7]
    assert len(S.frontal_channels(["C3", "C4"])) == 0


def test_chunk_grid_needs_whole_samples(half_model):
    g = S.chunk_grid(16000, 160.0, half_model(), 384)
    assert g == {"hop": 240, "win": 320, "lead": 80, "n_win": int(np.ceil((16000 + 80) / 240))}
    assert S.chunk_grid(16000, 173.61, half_model(), 384) is None


@pytest.mark.parametrize("overlap", [0.5, 0.25])
def test_blocks_with_every_window_match_the_dense_path(overlap, half_model):
    # every window a candidate: the blockwise path must give what the dense path gives, up to the
    # filter's and resampler's edges at block borders (which it keeps far away with its margins)
    sf, model = 160.0, half_model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, int(60 * sf)))
    hop = A.hop_for(model, overlap)
    grid = S.chunk_grid(x.shape[1], sf, model, hop)
    cand = np.ones((3, grid["n_win"]), bool)
    back, hp, n_tf, act = A._denoise_blocks(model, x, sf, cand, grid, overlap=overlap, prescreen=None, tf=model.net)
    assert list(act) == [0, 1, 2]
    ref = _dense(model, x, sf, overlap)
    inner = slice(int(4 * sf), -int(4 * sf))
    err = np.abs(back[:, inner] - ref[:, inner]).max() / np.abs(ref[:, inner]).max()
    assert err < 0.02 and n_tf >= cand.size
    assert np.allclose(hp[:, inner], A._highpass(x, sf, 1.0)[:, inner], atol=0.02 * np.abs(x).max())


def test_blocks_leave_everything_outside_candidate_windows_untouched(half_model):
    sf, model = 160.0, half_model()
    x = np.random.default_rng(1).standard_normal((2, int(40 * sf)))
    hop = A.hop_for(model, 0.25)
    grid = S.chunk_grid(x.shape[1], sf, model, hop)
    cand = np.zeros((2, grid["n_win"]), bool)
    k = 10
    cand[1, k] = True
    back, _, n_tf, act = A._denoise_blocks(model, x, sf, cand, grid, overlap=0.25, prescreen=None, tf=model.net)
    assert list(act) == [1]
    lo = k * grid["hop"] - grid["lead"]
    assert np.all(back[0] == 0) and n_tf >= 1
    outside = np.r_[0 : lo - 20, lo + grid["win"] + 20 : x.shape[1]]  # 20 samples: the resampler's ringing
    assert np.abs(back[1, outside]).max() < 1e-3 * np.abs(back[1]).max()
    assert np.abs(back[1, lo + 100 : lo + 200]).mean() > 0.1  # the window itself was denoised


def _blink_recording(sf=160.0, seconds=60.0, blink_at=(10.0, 31.0)):
    rng = np.random.default_rng(2)
    names = ["Fp1", "Fp2", "AF3", "Fz", "Cz", "Pz", "O1", "O2"]
    x = rng.standard_normal((len(names), int(seconds * sf))) * 10e-6
    t = np.arange(x.shape[1]) / sf
    reach = np.array([1.0, 1.0, 0.8, 0.4, 0.0, 0.0, 0.0, 0.0])
    for b in blink_at:
        x += reach[:, None] * 150e-6 * np.exp(-0.5 * ((t - b) / 0.08) ** 2)
    return x, names


def test_eog_screen_marks_frontal_event_windows_on_the_channels_it_reaches(half_model):
    sf = 160.0
    x, names = _blink_recording(sf)
    grid = S.chunk_grid(x.shape[1], sf, half_model(), 384)
    cand, front = S.eog_spatial_screen(x, sf, S.frontal_channels(names), grid)
    starts = np.arange(grid["n_win"]) * grid["hop"] - grid["lead"]
    holds = [(starts <= b * sf) & (starts + grid["win"] > b * sf) for b in (10.0, 31.0)]
    for h in holds:
        assert cand[0, h].all() and cand[2, h].all()  # Fp1, AF3: the blink is there
        assert cand[4:, h].mean() <= 0.25  # Cz .. O2: it does not reach them (chance agreement only)
    assert cand[4:].mean() < 0.02
    assert front[int(10 * sf)] and not front[int(20 * sf)]
    far = ~(holds[0] | holds[1])
    assert cand[:, far].mean() < 0.05  # background EEG alone rarely passes


def test_eog_screen_without_an_eye_event_passes_nothing(half_model):
    x, names = _blink_recording(blink_at=())
    grid = S.chunk_grid(x.shape[1], 160.0, half_model(), 384)
    cand, front = S.eog_spatial_screen(x, 160.0, S.frontal_channels(names), grid)
    assert cand.mean() < 0.02 and front.mean() < 0.05


def test_emg_screen_equals_the_prescreen_at_the_model_rate(half_model):
    # at the model's own rate, without slack and band limits, the screen is the shipped pre-screen
    sf, model = 256.0, half_model()
    rng = np.random.default_rng(3)
    t = np.arange(int(30 * sf)) / sf
    x = np.vstack([np.sin(2 * np.pi * 3 * t) + 0.1 * rng.standard_normal(len(t)), rng.standard_normal(len(t)),
                   np.sin(2 * np.pi * 5 * t) + (t > 15) * rng.standard_normal(len(t))])
    hop = A.hop_for(model, 0.25)
    grid = S.chunk_grid(x.shape[1], sf, model, hop)
    thr = 0.25
    cand = S.emg_spectral_screen(x, sf, grid, thr, model.sfreq, l_freq=0.0, slack=1.0, mains=())
    pad = np.pad(x, ((0, 0), (grid["lead"], grid["n_win"] * grid["hop"])), mode="reflect")
    from numpy.lib.stride_tricks import sliding_window_view

    w = sliding_window_view(pad, grid["win"], axis=-1)[:, :: grid["hop"]][:, : grid["n_win"]]
    exact = ~A.prescreen_skip(w.reshape(-1, grid["win"]), {"feature": "hf_fraction", "threshold": thr}, sf)
    assert np.mean(cand.ravel() == exact) > 0.99
    assert cand[1].all() and not cand[0].any() and 0.3 < cand[2].mean() < 0.7
    assert S.emg_spectral_screen(x, sf, grid, thr, model.sfreq, slack=0.5).sum() >= cand.sum()


def test_apply_denoiser_uses_the_screens_and_falls_back_without_frontal_channels():
    from neurodecode.artifacts.atat import ATAT

    x, names = _blink_recording(seconds=30.0)
    models = [ATAT.from_pretrained("eog"), ATAT.from_pretrained("emg")]
    raw = mne.io.RawArray(x, mne.create_info(names, 160.0, "eeg"), verbose="error")
    out, s = A.apply_denoiser(models, raw)
    assert s["screen"] == {"eog": "frontal EOG decision", "emg": "spectral"}
    assert s["screen_fraction"]["eog"] < 0.3 and s["gate_fraction"]["eog"] <= s["screen_fraction"]["eog"]
    out_eog, _ = A.apply_denoiser(models[:1], raw)
    changed = np.abs(out_eog.get_data() - x).max(1)
    assert changed[0] > 1e-6 and changed[4:].max() < 0.1 * changed[0]  # frontal blinks cleaned, posterior barely
    no_front = mne.io.RawArray(x[3:], mne.create_info(names[3:], 160.0, "eeg"), verbose="error")
    _, s2 = A.apply_denoiser(models, no_front)
    assert s2["screen"]["eog"] is None and s2["screen"]["emg"] == "spectral"
    _, s3 = A.apply_denoiser(models, raw, screen=False)
    assert s3["screen"] == {"eog": None, "emg": None} and s3["screen_settings"] is None
    with pytest.raises(A.UsageError, match="unknown setting"):
        A.apply_denoiser(models, raw, screen={"z_eye": 3})


def test_emg_screen_ignores_line_noise_but_not_broadband_muscle(half_model):
    sf, model = 160.0, half_model()
    rng = np.random.default_rng(4)
    t = np.arange(int(30 * sf)) / sf
    eeg = np.sin(2 * np.pi * 6 * t) + 0.2 * rng.standard_normal(len(t))
    line = eeg + 1.5 * np.sin(2 * np.pi * 60 * t)  # strong mains hum, no muscle
    muscle = eeg + 1.5 * rng.standard_normal(len(t))  # broadband
    x = np.vstack([line, muscle])
    grid = S.chunk_grid(x.shape[1], sf, model, A.hop_for(model, 0.25))
    with_mains = S.emg_spectral_screen(x, sf, grid, 0.28, model.sfreq, mains=())
    cand = S.emg_spectral_screen(x, sf, grid, 0.28, model.sfreq)
    assert with_mains[0].all() and not cand[0].any()  # the hum alone no longer passes
    assert cand[1].all()

