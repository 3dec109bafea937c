"""Retrieval metrics, brain module, ridge baseline, UBP projector and blur prior, Lightning training."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurodecode.datasets.paired import PairedBrainImageData  # noqa: E402
from neurodecode.decoders import BrainConditioning, create_decoder  # noqa: E402
from neurodecode.decoders.retrieval_metrics import (  # noqa: E402
    chance_scores,
    kway_top1,
    retrieval_ranks,
    retrieval_scores,
)
from neurodecode.decoders.ubp import BlurPrior  # noqa: E402
from neurodecode.utils import UsageError  # noqa: E402

torch.set_num_threads(1)


def test_metrics_perfect_constant_and_random():
    rng = np.random.default_rng(0)
    cand = rng.normal(size=(50, 16))
    target = rng.permutation(50)[:40]
    perfect = retrieval_scores(cand[target], cand, target)
    assert perfect["top1"] == 1.0 and perfect["median_rank"] == 1.0 and perfect["kway_2"] == 1.0
    const = retrieval_ranks(np.ones((40, 16)), cand, target)
    assert const.min() >= 1 and const.max() <= 50
    ties = retrieval_ranks(np.ones((3, 2)), np.ones((5, 2)), [0, 1, 2])
    np.testing.assert_array_equal(ties, [5, 5, 5])  # ties count against the prediction
    rand = [retrieval_scores(rng.normal(size=(40, 16)), cand, target, ks=())["top5"] for _ in range(20)]
    assert abs(np.mean(rand) - chance_scores(50)["top5"]) < 0.04
    assert 0.35 < kway_top1(rng.normal(size=(40, 16)), cand, target, 2) < 0.65
    with pytest.raises(UsageError, match="same d"):
        retrieval_scores(np.ones((2, 3)), np.ones((4, 5)), [0, 1])
    with pytest.raises(UsageError, match="'target'"):
        retrieval_ranks(np.ones((2, 3)), np.ones((4, 3)), [0, 9])
    with pytest.raises(UsageError, match="'k'"):
        kway_top1(np.ones((2, 3)), np.ones((4, 3)), [0, 1], 9)


def test_blur_prior_assigns_levels_from_running_similarity():
    prior = BlurPrior(40, mode="uncertainty", momentum=0.3)
    s = np.zeros(40)
    s[3], s[7] = 10.0, -10.0
    prior.update(np.arange(40), s)
    lv = prior.levels(np.arange(40))
    assert lv[3] == BlurPrior.LESS and lv[7] == BlurPrior.MORE and (np.delete(lv, [3, 7]) == BlurPrior.MEDIUM).all()
    prior.update([3], [0.0])  # running average: 0.3 * 0 + 0.7 * 10
    assert prior.running[3] == pytest.approx(7.0)
    assert (BlurPrior(40, mode="fixed").levels(np.arange(40)) == BlurPrior.MEDIUM).all()
    assert set(prior.stats()) == {"less", "medium", "more"}
    with pytest.raises(UsageError, match="'mode'"):
        BlurPrior(3, mode="sometimes")


def _chs_info(n):
    import mne

    info = mne.create_info([f"E{i}" for i in range(n)], 100.0, "eeg")
    for i, ch in enumerate(info["chs"]):
        ch["loc"][:3] = [0.08 * np.cos(i), 0.08 * np.sin(i), 0.05]
    return [dict(ch) for ch in info["chs"]]


def test_brain_module_shapes_subjects_and_encode():
    m = create_decoder("brain_module", n_chans=6, n_outputs=10, n_times=40, sfreq=100.0, chs_info=_chs_info(6),
                       n_subjects=2, hidden_dim=16, depth=2, n_virtual_channels=8)
    assert m.uses_spatial_attention
    y = m(torch.randn(5, 6, 40), torch.tensor([0, 1, 0, 1, 1]))
    assert y.shape == (5, 10)
    loss = m.loss(y, torch.randn(5, 10))
    loss.backward()
    assert m.logit_scale_raw.grad is not None
    cond = m.encode(np.random.default_rng(0).normal(size=(3, 6, 40)), subject=[0, 1, 1])
    assert isinstance(cond, BrainConditioning) and tuple(cond.embeds.shape) == (3, 10)
    with pytest.raises(UsageError, match=r"\(n, 6, 40\)"):
        m.encode(np.zeros((3, 5, 40)))
    no_pos = create_decoder("brain_module", n_chans=6, n_outputs=10, n_times=40, hidden_dim=16, depth=2,
                            temporal_aggregation="mean")
    assert not no_pos.uses_spatial_attention
    assert isinstance(no_pos.final_layer[0], torch.nn.AdaptiveAvgPool1d)
    # The affine aggregation weights time samples: shifting the input in time changes the output.
    x = torch.randn(2, 6, 40)
    m.eval()
    with torch.no_grad():
        m.model.final_layer[0].weight.copy_(torch.linspace(0, 1, 40))
        assert not torch.allclose(m(x), m(torch.roll(x, 10, dims=-1)), atol=1e-4)
    with pytest.raises(UsageError, match="'temporal_aggregation'"):
        create_decoder("brain_module", n_chans=6, n_outputs=10, n_times=40, temporal_aggregation="max")


def test_ridge_retrieves_linear_mapping():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(4 * 20, 12))
    Y = rng.normal(size=(200, 12))
    X = (Y @ np.linalg.pinv(W)).reshape(200, 4, 20) + 0.01 * rng.normal(size=(200, 4, 20))
    r = create_decoder("ridge_retrieval").fit(X[:150], Y[:150])
    s = retrieval_scores(r.predict(X[150:]), Y[150:], np.arange(50))
    assert s["top1"] > 0.8
    assert r.encode(X[150:152]).embeds.shape == (2, 12)


def test_ridge_cross_validates_penalty_and_bins_time():
    from neurodecode.decoders.brain_module import RidgeRetrieval, ridge_cv_errors

    rng = np.random.default_rng(3)
    Y = rng.normal(size=(120, 6))
    # Features: a noisy linear image of Y repeated over 20 samples (so time bins average the noise).
    W = rng.normal(size=(6, 8))
    X = np.repeat((Y @ W)[:, :, None], 20, axis=2) + 2.0 * rng.normal(size=(120, 8, 20))
    groups = np.arange(120) // 2  # pairs of trials share an image
    r = RidgeRetrieval(features="bins", bin_samples=5).fit(X, Y, groups=groups)
    assert r.alpha_ == pytest.approx(r.alphas[int(np.argmin(r.cv_errors_))] * 32 / 1000)
    assert r.predict(X).shape == (120, 6) and r._features(X).shape == (120, 8 * 4)
    # The chosen penalty has the lowest held-out error, and an absurd penalty is worse.
    F = r._features(X)
    e = ridge_cv_errors(F, Y, [r.alpha_, 1e9], np.arange(120) % 5)
    assert e[0] < e[1]
    with pytest.raises(UsageError, match="'features' parameter"):
        RidgeRetrieval(features="pca")


@pytest.mark.parametrize("n, p", [(60, 25), (30, 80)])  # primal (n > p) and dual (n < p) solutions
def test_ridge_cv_errors_match_explicit_ridge_fits(n, p):
    from sklearn.linear_model import Ridge

    from neurodecode.decoders.brain_module import ridge_cv_errors

    rng = np.random.default_rng(5)
    F = rng.normal(size=(n, p)) + 3.0  # non-zero means: the intercept must be unpenalised
    Y = F[:, :4] @ rng.normal(size=(4, 3)) + rng.normal(size=(n, 3))
    folds = np.arange(n) % 3
    alphas = [0.1, 10.0, 1e3]
    got = ridge_cv_errors(F, Y, alphas, folds)
    want = np.zeros(len(alphas))
    for i, a in enumerate(alphas):
        for k in range(3):
            tr, va = folds != k, folds == k
            want[i] += ((Ridge(alpha=a).fit(F[tr], Y[tr]).predict(F[va]) - Y[va]) ** 2).sum()
    np.testing.assert_allclose(got, want / Y.size, rtol=1e-6)


def test_ubp_projector_learns_and_reports_blur():
    u = create_decoder("ubp", n_chans=4, n_outputs=8, n_times=10, blur="fixed")
    assert float(u.logit_scale.detach()) == pytest.approx(1 / 0.07, rel=1e-4)
    rng = np.random.default_rng(2)
    Y = torch.tensor(rng.normal(size=(64, 8)), dtype=torch.float32)
    X = torch.tensor(rng.normal(size=(64, 4, 10)), dtype=torch.float32)
    X = X + (Y @ torch.randn(8, 40)).reshape(64, 4, 10)
    opt = torch.optim.AdamW(u.parameters(), lr=3e-3)
    before = retrieval_scores(u(X).detach().numpy(), Y.numpy(), np.arange(64))["top1"]
    for _ in range(60):
        loss = u.loss(u(X), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    u.eval()
    after = retrieval_scores(u(X).detach().numpy(), Y.numpy(), np.arange(64))["top1"]
    assert after > max(0.5, before + 0.3)
    assert u.encode(X[:2].numpy()).meta["blur"] == "fixed"
    with pytest.raises(UsageError, match="'blur'"):
        create_decoder("ubp", n_chans=4, n_outputs=8, n_times=10, blur="gaussian")


def _toy_paired(n_img=40, n_ch=5, n_t=16, seed=0):
    from neurodecode.decoders.image_encoders import ImageEncoder

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n_img, 12, 12, 3), dtype=np.uint8)

    def model(x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)

    prep = {"size": 12, "mean": [0.0] * 3, "std": [1.0] * 3, "resize": "bilinear-antialias"}
    enc = ImageEncoder("toy", 12, "0" * 64, prep, model)
    emb = enc.encode(images)
    A = rng.normal(size=(12, n_ch * n_t))
    X = ((emb - emb.mean(0)) @ A).reshape(n_img, n_ch, n_t) + 0.1 * rng.normal(size=(n_img, n_ch, n_t))
    labels = np.arange(n_img) // 2
    split = np.where(labels >= 15, "test", "train")
    info = _chs_info(n_ch)
    d = PairedBrainImageData(X=X.astype(np.float32), image_index=np.arange(n_img), subject=np.zeros(n_img, int),
                             split=split, ch_names=[c["ch_name"] for c in info], sfreq=100.0, images=images,
                             embeds=emb, image_labels=labels, ch_pos=np.array([c["loc"][:3] for c in info]),
                             meta={"encoder": "toy"})
    return d, enc


@pytest.mark.parametrize("method, blur", [("ubp", "uncertainty"), ("brain_module", "none"), ("ridge", "none")])
def test_run_retrieval_end_to_end_tiny(method, blur):
    from neurodecode.training.retrieval import RetrievalDataModule, run_retrieval

    d, enc = _toy_paired()
    dm = RetrievalDataModule(data=d, blur=blur, encoder=enc, batch_size=8, val_fraction=0.2, seed=0)
    kw = {"hidden_dim": 8, "depth": 1, "n_virtual_channels": 4} if method == "brain_module" else None
    s, model = run_retrieval(dm, method, decoder_kwargs=kw, max_epochs=2, patience=2)
    assert s["n_candidates"] == 10 and s["n_trials"] == 10 and s["method"] == method and s["blur"] == blur
    assert 0 <= s["top1"] <= s["top5"] <= 1 and 1 <= s["median_rank"] <= 10
    # Validation concepts are training concepts held out; no test image is used before testing.
    assert not set(dm.val_images) & set(dm.test_images) and not set(dm.fit_images) & set(dm.val_images)
    if blur == "uncertainty":
        assert set(s["blur_levels"]) == {"less", "medium", "more"}
        assert not np.allclose(dm.targets.levels[:, 0], dm.targets.levels[:, 2])
    assert model.encode(d.X[:3]).embeds.shape == (3, 12)
    if method == "ridge":
        assert s["top1"] > 0.5  # the toy mapping is linear and nearly noise-free


def test_ridge_per_subject_fits_one_model_per_subject():
    from neurodecode.decoders.brain_module import SubjectwiseRidge
    from neurodecode.training.retrieval import RetrievalDataModule, run_retrieval

    d, enc = _toy_paired()
    # A second subject whose sensors are a permutation of the first's (another head, other patterns).
    perm = np.random.default_rng(1).permutation(d.X.shape[1])
    d.X = np.concatenate([d.X, d.X[:, perm]])
    for name in ("image_index", "split"):
        setattr(d, name, np.concatenate([getattr(d, name)] * 2))
    d.subject = np.repeat([0, 1], len(d.X) // 2)
    dm = RetrievalDataModule(data=d, encoder=enc, val_fraction=0.2, seed=0)
    s, model = run_retrieval(dm, "ridge_per_subject")
    assert isinstance(model, SubjectwiseRidge) and sorted(model.models) == [0, 1]
    assert s["n_trials"] == 20 and s["top1"] > 0.5
    # Each model saw only its own subject's fit trials (its channel statistics are theirs).
    X, subj, _ = dm.arrays("fit")
    for k in (0, 1):
        np.testing.assert_allclose(model.models[k].mean_, X[subj == k].mean(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.models[0].mean_, model.models[1].mean_)
    # Each trial goes through its own subject's model.
    np.testing.assert_allclose(model.predict(d.X[-3:], [1, 1, 1]), model.models[1].predict(d.X[-3:]))
    assert model.encode(d.X[:2], subject=[0, 1]).embeds.shape == (2, 12)
    with pytest.raises(UsageError, match="no model for subject"):
        model.predict(d.X[:2], [0, 5])


def test_retrieve_command_on_real_mindbigdata(data_file, tmp_path):
    data_file("mindbigdata_mw_sample", "MW-sample.csv")
    import json

    import typer
    from typer.testing import CliRunner

    from neurodecode._cli.retrieval import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop():  # a second command keeps typer from collapsing the app into one command
        pass

    out = tmp_path / "scores.json"
    res = CliRunner().invoke(app, ["retrieve", "--data", "mindbigdata", "--method", "ridge", "--out", str(out),
                                   "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "chance top-1 10.0 %" in res.output
    s = json.loads(out.read_text())
    assert s["n_candidates"] == 10 and s["n_trials"] == 52 and s["simulated"] is False
    res = CliRunner().invoke(app, ["retrieve", "--data", "mindbigdata", "--method", "ridge", "--out", str(out)])
    assert res.exit_code != 0 and "Refusing to overwrite" in str(res.exception)


def test_per_subject_ridge_cannot_be_saved_and_says_so_before_training(tmp_path):
    from neurodecode._cli.retrieval import evaluate_retrieval
    from neurodecode.utils import UsageError

    dest = tmp_path / "dec.safetensors"
    with pytest.raises(UsageError, match="ridge_per_subject keeps one ridge per subject"):
        evaluate_retrieval("ridge_per_subject", save_decoder=dest, n_images=10)
    assert not dest.exists()
