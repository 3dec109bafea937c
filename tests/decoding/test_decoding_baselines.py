"""Every registered classification decoder is created the same way and maps trials to classes."""

import numpy as np
import pytest
import torch

from neurodecode.decoders import create_decoder, list_decoders
from neurodecode.utils import UsageError

NAMES = ["dbconformer", "eegconformer", "eegnet", "shallow", "csp_lda", "ts_lr"]
SIGNAL = {"n_chans": 8, "n_outputs": 2, "n_times": 256, "sfreq": 64.0}


@pytest.mark.parametrize("name", NAMES)
def test_registered_decoder_conforms(name):
    assert name in list_decoders()
    model = create_decoder(name, **SIGNAL)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 8, 256))
    y = np.r_[np.zeros(10, int), np.ones(10, int)]
    X[y == 1, :2] *= 3  # class 1: more power on two channels
    if isinstance(model, torch.nn.Module):
        assert hasattr(model, "final_layer")
        out = model.eval()(torch.as_tensor(X, dtype=torch.float32))
        assert out.shape == (20, 2)
    else:
        pred = model.fit(X, y).predict(X)
        assert pred.shape == (20,) and (pred == y).mean() > 0.9


def test_unknown_decoder_lists_valid_names():
    with pytest.raises(UsageError, match="'dbconformer'.*but got 'dbconformr'"):
        create_decoder("dbconformr", **SIGNAL)


def test_sklearn_baseline_rejects_unknown_argument():
    with pytest.raises(UsageError, match="n_componentz"):
        create_decoder("csp_lda", n_componentz=4)
