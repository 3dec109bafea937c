"""NeuroPictor encoder and its two-stage training on tiny configs."""

import numpy as np
import pytest
import torch

from neurodecode.decoders import BrainConditioning, create_decoder
from neurodecode.decoders.neuropictor import NeuroPictorEncoder
from neurodecode.training.neuropictor_system import (
    NeuroPictorSystem,
    SubjectBatches,
    load_checkpoint,
    pretrain,
    refine,
    save_checkpoint,
)
from neurodecode.utils import UsageError

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(num_workers|does not have many workers|LeafSpec|isinstance.*treespec|Total length of).*:UserWarning"
)

TINY = dict(embed_dim=12, n_tokens=4, d_model=16, depth=1, n_heads=2, n_cond_tokens=2, map_channels=3, map_size=4)


def _tiny(nv=None):
    return NeuroPictorEncoder(nv or {"a": 30, "b": 20}, **TINY)


def test_shapes_and_zero_initialised_maps():
    torch.manual_seed(0)
    enc = create_decoder("neuropictor", n_voxels={"a": 30, "b": 20}, **TINY)
    out = enc(torch.randn(5, 20), "b")
    assert out["tokens"].shape == (5, 2, 12)
    assert out["embeds"].shape == (5, 12)
    assert out["maps"].shape == (5, 3, 4, 4)
    # ControlNet-style zero init: the low-level maps start exactly at zero
    assert torch.count_nonzero(out["maps"]) == 0
    cond = enc.encode(np.random.randn(3, 30), "a", levels=("high",))
    assert isinstance(cond, BrainConditioning) and cond.spatial_maps is None and cond.embeds.shape == (3, 12)
    cond = enc.encode(np.random.randn(3, 30), "a", levels=("low",))
    assert torch.count_nonzero(cond.embeds) == 0 and cond.spatial_maps.shape == (3, 3, 4, 4)


def test_bad_inputs():
    enc = _tiny()
    with pytest.raises(UsageError, match="'subject'"):
        enc(torch.randn(2, 30), "zz")
    with pytest.raises(UsageError, match="30 voxels"):
        enc(torch.randn(2, 29), "a")
    with pytest.raises(UsageError, match="n_voxels"):
        NeuroPictorEncoder({}, **TINY)
    with pytest.raises(UsageError, match="levels"):
        enc.encode(torch.randn(2, 30), "a", levels=("mid",))


def test_subject_batches_are_single_subject_and_interleaved():
    data = {s: {"x": np.zeros((n, 3)) + i, "embeds": np.zeros((n, 2)), "low": np.zeros((n, 1, 2, 2))}
            for i, (s, n) in enumerate([("a", 5), ("b", 2)])}
    batches = list(SubjectBatches(data, batch_size=2))
    assert [b["subject"] for b in batches] == ["a", "b", "a", "a"]
    assert all(torch.all(b["x"] == (0 if b["subject"] == "a" else 1)) for b in batches)
    assert sum(len(b["x"]) for b in batches) == 7


def _toy_data(rng, n_vox, n, W):
    z = rng.standard_normal((n, 12)).astype(np.float32)
    low = rng.standard_normal((n, 1, 16, 16)).astype(np.float32) * 0.1
    return {"x": z @ W[:, :n_vox], "embeds": z, "low": low}


def test_pretrain_refine_learn_and_checkpoint_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((12, 30)).astype(np.float32)
    data = {"a": _toy_data(rng, 30, 64, W), "b": _toy_data(rng, 20, 32, W)}
    system = NeuroPictorSystem(_tiny(), lr=3e-3)
    before = system.losses({**{k: torch.as_tensor(v) for k, v in data["b"].items()}, "subject": "b"})["loss"].item()
    shared_before = system.encoder.transformer.layers[0].linear1.weight.clone()
    pretrain(system, data, epochs=8, batch_size=16)
    assert not torch.equal(shared_before, system.encoder.transformer.layers[0].linear1.weight)
    a_layer = system.encoder.subject_layers["a"].linear.weight.clone()
    refine(system, data, "b", epochs=4, batch_size=16)
    # refinement on b leaves a's input layer alone
    assert torch.equal(a_layer, system.encoder.subject_layers["a"].linear.weight)
    system.eval()
    after = system.losses({**{k: torch.as_tensor(v) for k, v in data["b"].items()}, "subject": "b"})["loss"].item()
    assert after < before
    # maps are no longer zero once trained
    assert torch.count_nonzero(system.encoder(torch.as_tensor(data["b"]["x"]), "b")["maps"]) > 0
    p = save_checkpoint(system, tmp_path / "np.safetensors")
    with pytest.raises(UsageError, match="overwrite"):
        save_checkpoint(system, p)
    loaded = load_checkpoint(p).eval()
    x = torch.as_tensor(data["a"]["x"][:3])
    torch.testing.assert_close(loaded.encoder(x, "a")["embeds"], system.encoder(x, "a")["embeds"])
    with pytest.raises(UsageError, match="'subject'"):
        refine(system, data, "c")


def test_metrics_behave():
    from neurodecode.training.neuropictor_system import pixcorr, ssim_score, two_way_identification

    rng = np.random.default_rng(0)
    imgs = rng.random((6, 16, 16))
    assert pixcorr(imgs, imgs) == pytest.approx(1.0)
    assert pixcorr(1 - imgs, imgs) == pytest.approx(-1.0)
    assert ssim_score(imgs, imgs) == pytest.approx(1.0)
    assert ssim_score(rng.random((6, 16, 16)), imgs) < 0.3
    f = rng.standard_normal((20, 8))
    assert two_way_identification(f, f) == 1.0
    assert two_way_identification(f[::-1], f) < 0.6
    with pytest.raises(UsageError, match="at least 2"):
        two_way_identification(f[:1], f[:1])
    per = two_way_identification(f[::-1], f, per_image=True)
    assert per.shape == (20,) and per.mean() == pytest.approx(two_way_identification(f[::-1], f))
    assert pixcorr(imgs, imgs, per_image=True) == pytest.approx(np.ones(6))
    assert ssim_score(imgs, imgs, per_image=True).shape == (6,)


def test_paired_difference_interval():
    from neurodecode.training.neuropictor_system import paired_difference

    rng = np.random.default_rng(1)
    b = rng.random(200)
    noise = rng.normal(0, 0.1, 200)
    up = paired_difference(b + 0.05 + noise, b, n_boot=2000)
    assert up["low"] > 0 and up["mean"] == pytest.approx(0.05 + noise.mean()) and up["p_le_0"] < 0.01
    null = paired_difference(b + noise, b, n_boot=2000)
    assert null["low"] < 0 < null["high"]
    # groups (seeds): each group's mean weighs the same
    two = paired_difference(np.stack([b + 0.1, b]), np.stack([b, b]), n_boot=500)
    assert two["mean"] == pytest.approx(0.05) and two["n"] == 400
    with pytest.raises(UsageError, match="same shape"):
        paired_difference(b, b[:10])
