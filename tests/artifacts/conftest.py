"""Fixtures shared by the artifact tests."""

import pytest


@pytest.fixture
def half_model():
    """Return ``make(artifact="eog", l_freq=1.0)``: a stand-in for a trained AT-AT model.

    Its network removes exactly half of every window (``forward(y) = 0.5 * y``) and its gate is open
    everywhere, so what the whole-recording path removes can be predicted exactly. It has the shipped
    models' window (512 samples at 256 Hz) and gate span (64 samples).
    """
    import torch

    class _Half(torch.nn.Module):
        span = 64

        def forward(self, y):
            return 0.5 * y

        def gate(self, y):
            return torch.ones(len(y), y.shape[1] // self.span, dtype=torch.bool)

    class _Model:
        n_times, sfreq = 512, 256.0

        def __init__(self, artifact, l_freq):
            self.artifact, self.l_freq = artifact, l_freq
            self.net = _Half()

    def make(artifact="eog", l_freq=1.0):
        return _Model(artifact, l_freq)

    return make
