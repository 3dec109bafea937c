"""Decoder checkpoints: save, rebuild from the stored config, same outputs; used by reconstruct."""

import numpy as np
import pytest
import torch

from neurodecode.decoders import create_decoder, load_decoder, save_decoder
from neurodecode.decoders.brain_module import RidgeRetrieval
from neurodecode.utils import InputFileError, UsageError


def test_torch_decoder_round_trip(tmp_path):
    torch.manual_seed(0)
    dec = create_decoder("ubp", n_chans=4, n_outputs=8, n_times=32).eval()
    X = np.random.default_rng(0).normal(size=(3, 4, 32)).astype(np.float32)
    p = save_decoder(dec, tmp_path / "ubp.safetensors")
    back = load_decoder(p)
    assert type(back) is type(dec)
    np.testing.assert_allclose(np.asarray(back.encode(X).embeds), np.asarray(dec.encode(X).embeds), rtol=1e-6)
    with pytest.raises(UsageError, match="Refusing to overwrite"):
        save_decoder(dec, p)


def test_ridge_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(40, 3, 10)), rng.normal(size=(40, 5))
    dec = RidgeRetrieval().fit(X, Y)
    back = load_decoder(save_decoder(dec, tmp_path / "ridge.safetensors"))
    np.testing.assert_allclose(back.predict(X), dec.predict(X), rtol=1e-5, atol=1e-6)


def test_bad_checkpoints(tmp_path):
    with pytest.raises(InputFileError, match="no such file; expected a decoder checkpoint"):
        load_decoder(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(InputFileError, match="not a readable safetensors file with a decoder checkpoint"):
        load_decoder(junk)
    with pytest.raises(UsageError, match="not fitted"):
        save_decoder(RidgeRetrieval(), tmp_path / "r.safetensors")


def test_reconstruct_with_a_decoder_checkpoint(tmp_path, capsys):
    """End to end: brain data -> saved decoder -> shipped generator -> images and scores."""
    from neurodecode.cli import main

    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 3, 10)).astype(np.float32)
    dec = RidgeRetrieval().fit(X, rng.normal(size=(30, 1280)))  # the default encoder's 1280-d space
    ckpt = save_decoder(dec, tmp_path / "dec.safetensors")
    data = tmp_path / "in.npz"
    np.savez(data, X=X[:4])
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["reconstruct", "--decoder", str(ckpt), "--generator", "ann-digits", "--input", str(data), "-o", str(out),
              "--steps", "2"])
    assert exc.value.code == 0, capsys.readouterr().err
    with np.load(out / "reconstructions.npz") as z:
        assert z["images"].shape[0] == 4 and z["hallucination_score"].shape == (4,)
