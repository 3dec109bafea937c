"""AT-AT network, gate, persistence and segment-level denoising."""

import numpy as np
import pytest
import torch

from neurodecode.artifacts.atat import ATAT, ATATNet, span_correlation
from neurodecode.utils import InputFileError, UsageError

TINY = dict(ae_widths=(4, 4), d_model=16, n_heads=2, n_layers=1, ff=32, stem=4)


def _model(artifact="emg", tau=0.9, seed=0):
    torch.manual_seed(seed)
    return ATAT(ATATNet(tau=tau, **TINY), artifact, 256.0, 1.0)


def test_span_correlation_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 128)), rng.standard_normal((2, 128))
    got = span_correlation(torch.tensor(a), torch.tensor(b), 64).numpy()
    want = [[np.corrcoef(a[i, k * 64:(k + 1) * 64], b[i, k * 64:(k + 1) * 64])[0, 1] for k in range(2)] for i in range(2)]
    assert got == pytest.approx(np.array(want), abs=1e-6)


def test_gate_controls_where_the_transformer_acts():
    y = torch.randn(4, 512)
    never = _model(tau=-2.0).net.eval()
    out, g = never.gated(y)
    assert not g.any() and torch.equal(out, y)
    always = _model(tau=2.0).net.eval()
    out, g = always.gated(y)
    assert g.all()
    assert torch.allclose(out, always(y), atol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    m = _model(tau=0.42)
    p = m.save(tmp_path / "w.safetensors", extra={"note": "test"})
    back = ATAT.from_pretrained(path=p)
    assert float(back.net.tau) == pytest.approx(0.42)
    assert back.meta["note"] == "test" and back.artifact == "emg"
    y = np.random.default_rng(1).standard_normal((3, 512)).astype(np.float32)
    assert np.allclose(back.denoise_normalised(y), m.denoise_normalised(y), atol=1e-6)
    with pytest.raises(InputFileError, match="not found"):
        ATAT.from_pretrained(path=tmp_path / "missing.safetensors")
    with pytest.raises(UsageError, match="artifact"):
        ATAT.from_pretrained("ecg")


@pytest.mark.parametrize("sfreq,n", [(256.0, 512), (160.0, 800), (500.0, 1200)])
def test_denoise_any_rate_keeps_shape(sfreq, n):
    m = _model(tau=2.0)
    x = np.random.default_rng(2).standard_normal((3, n))
    out = m.denoise(x, sfreq)
    assert out.shape == x.shape and np.isfinite(out).all()
    assert not np.allclose(out, x)
    with pytest.raises(UsageError, match="n_segments, n_times"):
        m.denoise(x[0], sfreq)


def test_never_gated_model_returns_input_exactly():
    m = _model(tau=-2.0)
    x = np.random.default_rng(3).standard_normal((2, 700))
    assert np.allclose(m.denoise(x, 200.0), x, atol=1e-5)  # float32 model path


def test_shipped_weights_load_and_are_small():
    for art in ("emg", "eog"):
        try:
            m = ATAT.from_pretrained(art)
        except InputFileError:
            pytest.skip("shipped AT-AT weights not built yet")
        # at most a tenth of the largest EEGdenoiseNet baseline (SimpleCNN, 16.8 M at 512 samples)
        assert m.n_parameters() < 1_680_000
        assert m.meta["train"]["artifact"] == art
