"""Real offline images, zero-shot splits and the simulated paired EEG/MEG benchmark."""

import numpy as np
import pytest

from neurodecode.datasets.paired import (
    ImageSet,
    PairedBrainImageData,
    build_simulated_pairs,
    load_image_set,
    zero_shot_split,
)
from neurodecode.utils import UsageError

torch = pytest.importorskip("torch")


def _toy_encoder(dim=12):
    from neurodecode.decoders.image_encoders import ImageEncoder

    def model(x):
        # Mean colour of a 3x3 grid of patches, plus a fixed mix: depends on image content.
        p = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return torch.cat([p, p[:, :1] * 0 + p.std(1, keepdim=True)], 1)[:, :dim]

    prep = {"size": 16, "mean": [0.0] * 3, "std": [1.0] * 3, "resize": "bilinear-antialias"}
    return ImageEncoder("toy", 12, "0" * 64, prep, model)


@pytest.mark.parametrize(
    "source, n, n_concepts, side", [("digits", 1797, 10, 8), ("faces", 200, 20, 25), ("photos", 23 * 5, 23, 64)]
)
def test_image_sets_are_real_and_offline(source, n, n_concepts, side):
    s = load_image_set(source, size=None, crops_per_photo=5)
    assert s.images.shape == (n, side, side, 3) and s.images.dtype == np.uint8
    assert len(np.unique(s.labels)) == n_concepts == len(s.label_names)
    assert s.images.std() > 10  # real content, not blank
    with pytest.raises(UsageError, match="'source' parameter"):
        load_image_set("imagenet")


def test_zero_shot_split_holds_out_whole_concepts():
    labels = np.repeat(np.arange(12), 10)
    test = zero_shot_split(labels, 25, seed=3)
    assert test.sum() >= 25
    assert not set(labels[test]) & set(labels[~test])
    with pytest.raises(UsageError, match="n_test"):
        zero_shot_split(labels, 120)


@pytest.fixture(scope="module")
def small_images():
    s = load_image_set("digits", size=16)
    keep = np.r_[0:60, 900:960]
    return ImageSet(s.images[keep], s.labels[keep], s.label_names, "digits")


def test_simulated_eeg_pairs_structure_and_snr(data_file, small_images):
    data_file("eegmmidb", "S001", "S001R04.edf")
    kw = dict(images=small_images, n_test=30, n_subjects=1, n_sources=6, encoder=_toy_encoder(), n_times=64, seed=1,
              forward_model="linear")
    a = build_simulated_pairs(snr=1.0, **kw)
    b = build_simulated_pairs(snr=4.0, **kw)
    assert isinstance(a, PairedBrainImageData) and a.meta["simulated"] is True
    assert a.X.shape == (120, 64, 64) and a.ch_type == "eeg" and a.sfreq == 100.0
    assert a.ch_pos.shape == (64, 3) and np.isfinite(a.ch_pos).all()
    tr, te = a.image_index[a.split == "train"], a.image_index[a.split == "test"]
    assert len(te) >= 30 and not set(a.image_labels[tr]) & set(a.image_labels[te])
    # Same seed -> same noise segments; the difference is the signal scaled by sqrt(4) - sqrt(1).
    sig_a = (b.X - a.X) / (np.sqrt(4.0) - 1.0) * np.sqrt(1.0)
    noise = a.X - sig_a
    assert sig_a.var() / noise.var() == pytest.approx(1.0, rel=0.05)
    # The signal depends on the image: identical embeddings would give identical responses.
    assert np.corrcoef(sig_a[0].ravel(), sig_a[1].ravel())[0, 1] < 0.99
    ep = a.to_epochs("test")
    assert len(ep) == (a.split == "test").sum() and list(ep.metadata.columns) == ["image_index", "subject", "split"]


def test_physio_forward_model_timing_topography_and_snr(data_file, small_images):
    data_file("eegmmidb", "S001", "S001R04.edf")
    kw = dict(images=small_images, n_test=30, n_subjects=2, n_sources=6, encoder=_toy_encoder(), n_times=60, seed=2)
    clean = build_simulated_pairs(snr=1e8, **kw)  # practically noise-free
    assert clean.meta["forward_model"] == "physio" and clean.meta["physio_params"]["early_jitter_s"] == 0.010
    # Every image evokes the generic response too, so the evoked power exceeds the image-dependent part.
    assert min(clean.meta["evoked_to_image_power"]) > 1.2
    sig = clean.X[clean.subject == 0]
    # Early visual sources: power peaks within 60-130 ms, over occipital sensors.
    tv = sig.var(axis=(0, 1))
    assert 0.06 <= np.argmax(tv) / clean.sfreq <= 0.13 and tv[:3].max() < 0.05 * tv.max()
    top = [clean.ch_names[i] for i in np.argsort(sig.var(axis=(0, 2)))[::-1][:4]]
    assert all(c[0] in "OIP" for c in top), top
    # Subjects differ (individual anatomy) but are related.
    a, b = clean.X[clean.subject == 0], clean.X[clean.subject == 1]
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert 0.2 < r < 0.99
    # snr is the image-dependent power over the noise power.
    lo = build_simulated_pairs(snr=0.5, **kw)  # same seed: same noise, jitter and gains
    S = (clean.X.astype(np.float64) - lo.X) * np.sqrt(0.5) / (np.sqrt(1e8) - np.sqrt(0.5))
    N = lo.X - S
    for si, ratio in enumerate(lo.meta["evoked_to_image_power"]):
        m = lo.subject == si
        assert S[m].var() / N[m].var() == pytest.approx(0.5 * ratio, rel=0.02)
    with pytest.raises(UsageError, match="'forward_model' parameter"):
        build_simulated_pairs(forward_model="nonlinear", **kw)


def test_v1_energy_and_naka_rushton():
    from neurodecode.datasets.paired import naka_rushton, v1_contrast_energy

    img = np.zeros((2, 64, 64, 3), np.uint8)
    img[0, :32, :32] = (np.indices((32, 32)).sum(0) % 8 < 4)[..., None] * 255  # texture top-left only
    e = v1_contrast_energy(img)
    assert e.shape == (2, 16) and set(np.argsort(e[0])[-4:]) == {0, 1, 4, 5} and e[1].max() < 1e-9  # row-major grid
    assert v1_contrast_energy(img, lowpass_sigma=20)[0, 0] < 0.5 * e[0, 0]  # blur removes fine contrast
    r = naka_rushton(np.array([0.0, 1.0, 2.0, 100.0]), n=2, c50=1.0)
    np.testing.assert_allclose(r[:3], [0.0, 0.5, 0.8])
    assert 0.99 < r[3] < 1.0


def test_simulated_meg_uses_kit_montage(data_file, small_images):
    data_file("mne_python_kit_meg", "test.sqd")
    d = build_simulated_pairs(images=small_images, n_test=30, n_subjects=1, modality="meg", n_sources=4,
                              encoder=_toy_encoder(), n_times=50, sfreq=100.0, seed=0)
    assert d.X.shape == (120, 157, 50) and d.ch_type == "mag"


def test_simulation_rejects_bad_parameters(small_images):
    with pytest.raises(UsageError, match="'snr' parameter"):
        build_simulated_pairs(images=small_images, snr=0, encoder=_toy_encoder())
    with pytest.raises(UsageError, match="'modality' parameter"):
        build_simulated_pairs(images=small_images, modality="fmri", encoder=_toy_encoder())


def test_meg_noise_surrogates_keep_spectra_and_cross_spectra():
    from neurodecode.datasets.paired import _phase_surrogates

    rng = np.random.default_rng(0)
    base = np.cumsum(rng.normal(size=(2, 256)), axis=1)
    base[1] = 0.5 * base[0] + 0.1 * base[1]  # correlated channels
    sur = _phase_surrogates(base, 3, 256, rng)
    spec = np.abs(np.fft.rfft(base - base.mean(1, keepdims=True), axis=1))
    for s in sur:
        np.testing.assert_allclose(np.abs(np.fft.rfft(s, axis=1)), spec, rtol=1e-3, atol=1e-3)
        assert np.corrcoef(s)[0, 1] == pytest.approx(np.corrcoef(base)[0, 1], abs=1e-3)
        assert np.abs(s - (base - base.mean(1, keepdims=True))).max() > 1.0  # a new waveform


@pytest.mark.parametrize("forward_model", ["physio", "linear"])
def test_train_repeats_add_new_trials_of_training_images_only(data_file, small_images, forward_model):
    data_file("eegmmidb", "S001", "S001R04.edf")
    kw = dict(images=small_images, n_test=30, n_subjects=2, n_sources=6, encoder=_toy_encoder(), n_times=40, seed=4,
              forward_model=forward_model)
    one = build_simulated_pairs(snr=1.0, **kw)
    np.testing.assert_array_equal(build_simulated_pairs(snr=1.0, train_repeats=1, **kw).X, one.X)  # the default
    three = build_simulated_pairs(snr=1.0, train_repeats=3, **kw)
    n_test_img = one.meta["n_test_images"]
    n_train_img = 120 - n_test_img
    assert three.meta["train_repeats"] == 3 and len(three) == 2 * (120 + 2 * n_train_img)
    for si in range(2):
        m = three.subject == si
        counts = np.bincount(three.image_index[m], minlength=120)
        test_rows = np.unique(three.image_index[m & (three.split == "test")])
        assert len(test_rows) == n_test_img and (counts[test_rows] == 1).all()  # test images once
        assert (np.delete(counts, test_rows) == 3).all()  # training images three times
        assert set(three.split[m & np.isin(three.image_index, test_rows)]) == {"test"}
    # Each repetition is a new trial (own noise, jitter and gain), but the image-dependent signal is
    # shared: without noise, repeats of one image are more alike than trials of different images.
    clean = build_simulated_pairs(snr=1e8, train_repeats=2, **kw)
    img = np.flatnonzero(clean.split == "train")[0]
    same = np.flatnonzero((clean.image_index == clean.image_index[img]) & (clean.subject == 0))
    other = np.flatnonzero((clean.image_index != clean.image_index[img]) & (clean.subject == 0) & (clean.split == "train"))
    assert len(same) == 2
    same3 = np.flatnonzero((three.image_index == three.image_index[img]) & (three.subject == 0))
    assert len(same3) == 3 and not np.allclose(three.X[same3[0]], three.X[same3[1]])
    dev = clean.X[clean.subject == 0].mean(0)
    r_same = np.corrcoef((clean.X[same[0]] - dev).ravel(), (clean.X[same[1]] - dev).ravel())[0, 1]
    r_other = np.median([np.corrcoef((clean.X[same[0]] - dev).ravel(), (clean.X[o] - dev).ravel())[0, 1]
                         for o in other[:20]])
    assert r_same > 0.3 and r_same > r_other + 0.25, (r_same, r_other)
    with pytest.raises(UsageError, match="'train_repeats' parameter"):
        build_simulated_pairs(snr=1.0, train_repeats=0, **kw)
