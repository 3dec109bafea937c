"""DBConformer: shapes, braindecode contract, parameter count against the paper."""

import pytest
import torch

from neurodecode.decoders import create_decoder, list_decoders
from neurodecode.decoders.dbconformer import DBConformer


def _n(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_paper_configuration():
    # Paper's BNCI2014001 setting: 22 channels, 1000 samples at 250 Hz, 2 classes (Table VIII: 92,066 params,
    # EEG Conformer 789,668). Our count adds the 1,681 parameters of the channel-attention pooling.
    from braindecode.models import EEGConformer

    model = create_decoder("dbconformer", n_chans=22, n_outputs=2, n_times=1000, sfreq=250)
    conformer = EEGConformer(n_chans=22, n_outputs=2, n_times=1000, sfreq=250)
    n_db, n_conf = _n(model), _n(conformer)
    print(f"DBConformer {n_db:,} params; EEGConformer {n_conf:,}; ratio {n_conf / n_db:.2f}")
    assert n_db == 93_747
    assert n_db - _n(model.channel_pool) == 92_066
    assert n_conf / n_db >= 8
    assert (model.patch_size, model.temporal_kernel_size, model.n_tokens) == (125, 63, 8)


def test_forward_shape_and_braindecode_contract():
    model = DBConformer(n_chans=21, n_outputs=3, n_times=256, sfreq=64)
    x = torch.randn(4, 21, 256)
    out = model(x)
    assert out.shape == (4, 3)
    assert isinstance(model.final_layer, torch.nn.Linear) and model.final_layer.out_features == 3
    # no softmax at the end: rows of logits do not sum to one
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))
    # sizes scale with the sampling rate: 0.5 s patches, ~0.25 s kernel
    assert model.patch_size == 32 and model.temporal_kernel_size == 17 and model.n_tokens == 8
    w = model.channel_pool.last_weights
    assert w.shape == (4, 21) and torch.allclose(w.sum(1), torch.ones(4))


def test_gradients_reach_both_branches():
    model = DBConformer(n_chans=8, n_outputs=2, n_times=128, sfreq=64)
    model(torch.randn(3, 8, 128)).sum().backward()
    assert model.temporal_embedding.spatial[0].weight.grad.abs().sum() > 0
    assert model.channel_embedding.conv[0].weight.grad.abs().sum() > 0


def test_mean_pooling_variant_and_registry():
    assert "dbconformer" in list_decoders()
    m = create_decoder("dbconformer", n_chans=8, n_outputs=2, n_times=128, sfreq=64, channel_attention=False)
    assert m.channel_pool is None and m(torch.randn(2, 8, 128)).shape == (2, 2)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_heads"):
        DBConformer(n_chans=8, n_outputs=2, n_times=128, sfreq=64, num_heads=3)
    with pytest.raises(ValueError, match="patch_size"):
        DBConformer(n_chans=8, n_outputs=2, n_times=20, sfreq=64)
