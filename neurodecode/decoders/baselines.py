"""Baseline decoders, registered by name: braindecode's networks and two classic pipelines.

Neural baselines are braindecode's own implementations (reused, not rewritten) with their
default hyper-parameters, except EEGNet's first temporal kernel, which braindecode sizes for
128 Hz (64 samples = 0.5 s) and we scale to half a second at the data's rate.

* ``eegconformer`` - :class:`braindecode.models.EEGConformer` (Song et al. 2023)
* ``eegnet``       - :class:`braindecode.models.EEGNet` (Lawhern et al. 2018)
* ``shallow``      - :class:`braindecode.models.ShallowFBCSPNet` (Schirrmeister et al. 2017)
* ``csp_lda``      - :class:`mne.decoding.CSP` (6 log-variance components, Ledoit-Wolf) + LDA
* ``ts_lr``        - pyriemann covariances (OAS) -> tangent space -> logistic regression

The scikit-learn pipelines accept and ignore braindecode's signal arguments, so every name is
created the same way: ``create_decoder(name, n_chans=..., n_outputs=..., n_times=..., sfreq=...)``.
"""

from ._registry import register_decoder

_SIGNAL = ("n_chans", "n_outputs", "n_times", "sfreq", "chs_info", "input_window_seconds")


@register_decoder("eegconformer")
def eegconformer(**kwargs):
    """braindecode's EEG Conformer with its defaults."""
    from braindecode.models import EEGConformer

    return EEGConformer(**kwargs)


@register_decoder("eegnet")
def eegnet(**kwargs):
    """braindecode's EEGNet (F1=8, D=2); first kernel = 0.5 s at ``sfreq`` unless given."""
    from braindecode.models import EEGNet

    if "kernel_length" not in kwargs and kwargs.get("sfreq"):
        kwargs["kernel_length"] = max(8, int(round(kwargs["sfreq"] / 2)))
    return EEGNet(**kwargs)


@register_decoder("shallow")
def shallow(**kwargs):
    """braindecode's ShallowFBCSPNet with its defaults."""
    from braindecode.models import ShallowFBCSPNet

    return ShallowFBCSPNet(**kwargs)


@register_decoder("csp_lda")
def csp_lda(n_components=6, reg="ledoit_wolf", **signal):
    """CSP (log-variance features) + linear discriminant analysis; signal arguments are ignored."""
    from mne.decoding import CSP
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.pipeline import make_pipeline

    _check_signal(signal)
    return make_pipeline(CSP(n_components=n_components, reg=reg, log=True), LinearDiscriminantAnalysis())


@register_decoder("ts_lr")
def ts_lr(estimator="oas", C=1.0, **signal):
    """Riemannian tangent space of trial covariances + logistic regression; signal arguments are ignored."""
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    _check_signal(signal)
    return make_pipeline(Covariances(estimator=estimator), TangentSpace(metric="riemann"),
                         LogisticRegression(C=C, max_iter=1000))


def _check_signal(signal):
    unknown = set(signal) - set(_SIGNAL)
    if unknown:
        from ..utils import UsageError

        raise UsageError(f"Unknown parameter(s) {sorted(unknown)} for a scikit-learn baseline.")
