"""MEG/EEG brain module for image retrieval (Benchetrit, Banville & King, ICLR 2024).

The network is braindecode's :class:`braindecode.models.BrainModule` (the SimpleConv encoder of
Défossez et al. 2023: spatial attention over sensor positions, per-subject linear layer, dilated
residual convolutions with GLU gates, temporal pooling and a linear head). braindecode marks that
model's file CC BY-NC 4.0; it is imported, not copied. :class:`BrainModuleDecoder` adds what image
retrieval needs: the output is an image embedding, trained with a weighted CLIP-style contrastive
loss plus MSE (:func:`clip_mse_loss`), and :meth:`BrainModuleDecoder.encode` returns a
:class:`~neurodecode.decoders.BrainConditioning` for the generation backend.

Also here: the linear baseline (:class:`RidgeRetrieval`, ridge regression from all sensors x time
samples, or per-sensor time-bin means, to the embedding; regularisation chosen by cross-validation
on the training images).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..utils import UsageError, check_option
from ._registry import register_decoder
from .conditioning import BrainConditioning

__all__ = ["BrainModuleDecoder", "RidgeRetrieval", "SubjectwiseRidge", "RIDGE_FEATURES", "ridge_cv_errors", "clip_loss", "clip_mse_loss", "scale_inputs"]


def scale_inputs(x, clamp=20.0):
    """Robust per-trial, per-channel scaling: median-centred, divided by the trial's IQR, clamped.

    Shapes: ``(batch, n_chans, n_times)`` in and out. Clamping at ``clamp`` robust standard
    deviations keeps artefacts from dominating BatchNorm statistics (as brainmagick does).
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    med = x.median(dim=-1, keepdim=True).values
    q = torch.quantile(x.flatten(1), torch.tensor([0.25, 0.75]), dim=1)  # (2, batch)
    iqr = (q[1] - q[0]).clamp_min(1e-12)[:, None, None] / 1.349
    return ((x - med) / iqr).clamp(-clamp, clamp)


def clip_loss(pred, target, logit_scale):
    """Symmetric InfoNCE between L2-normalised ``pred`` (B, d) and ``target`` (B, d).

    Row ``i`` of both is a positive pair; the other rows of the batch are negatives. ``logit_scale``
    multiplies the cosine similarities (an inverse temperature).
    """
    p = F.normalize(pred, dim=-1)
    t = F.normalize(target, dim=-1)
    logits = logit_scale * p @ t.T
    labels = torch.arange(len(p), device=p.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def clip_mse_loss(pred, target, logit_scale, clip_weight=0.5):
    """``clip_weight * CLIP + (1 - clip_weight) * MSE`` (the brain module's objective)."""
    if not 0.0 <= clip_weight <= 1.0:
        raise UsageError(f"Invalid value for the 'clip_weight' parameter: expected a value in [0, 1], got {clip_weight}.")
    loss = 0.0
    if clip_weight > 0:
        loss = loss + clip_weight * clip_loss(pred, target, logit_scale)
    if clip_weight < 1:
        loss = loss + (1 - clip_weight) * F.mse_loss(pred, target)
    return loss


class _TemporalAffine(nn.Module):
    """(B, C, T) -> (B, C): a learnt weighted sum over time samples (initialised to the mean)."""

    def __init__(self, n_times):
        super().__init__()
        self.weight = nn.Parameter(torch.full((n_times,), 1.0 / n_times))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x @ self.weight + self.bias


@register_decoder("brain_module")
class BrainModuleDecoder(nn.Module):
    """Brain module mapping ``(batch, n_chans, n_times)`` M/EEG to ``(batch, n_outputs)`` embeddings.

    Parameters
    ----------
    n_chans, n_outputs, n_times, sfreq, chs_info
        braindecode's signal arguments; ``n_outputs`` is the image-embedding size; ``chs_info``
        (``info["chs"]``) gives the sensor positions the spatial attention needs.
    n_subjects : int
        Number of subject-specific layers.
    hidden_dim, depth : int
        Width and number of dilated residual layers (paper: 320 and 10; smaller fits a CPU).
    n_virtual_channels : int
        Outputs of the spatial attention (paper: 270).
    use_merger : bool
        Spatial attention over sensor positions (turned off automatically without positions).
    clip_weight : float
        Weight of the CLIP term in the loss (rest: MSE).
    dropout : float
        Dropout in the convolutions.
    logit_scale_init : float
        Initial inverse temperature of the CLIP term (learnt).
    subject_dim : int
        Size of the learnt subject embedding used with the subject layers (multi-subject only).
    temporal_aggregation : {"affine", "mean"}
        How the time axis is reduced before the linear head: a learnt weighting of the time samples
        (the image paper's "affine" aggregation; it keeps *when* a feature occurred) or braindecode's
        global average pooling.
    """

    def __init__(
        self,
        n_chans,
        n_outputs,
        n_times,
        sfreq=None,
        chs_info=None,
        n_subjects=1,
        hidden_dim=64,
        depth=4,
        n_virtual_channels=64,
        use_merger=True,
        clip_weight=0.5,
        dropout=0.1,
        logit_scale_init=1 / 0.07,
        subject_dim=8,
        temporal_aggregation="affine",
    ):
        super().__init__()
        import warnings

        from braindecode.models import BrainModule

        self.n_chans, self.n_outputs, self.n_times = int(n_chans), int(n_outputs), int(n_times)
        self.n_subjects = int(n_subjects)
        self.clip_weight = float(clip_weight)
        has_pos = bool(chs_info) and any(np.any(np.asarray(ch.get("loc", np.zeros(3)))[:3] != 0) for ch in chs_info)
        with warnings.catch_warnings():
            # braindecode warns about its licence and about locations; we check positions ourselves.
            warnings.simplefilter("ignore")
            self.model = BrainModule(
                n_chans=self.n_chans, n_outputs=self.n_outputs, n_times=self.n_times, sfreq=sfreq,
                chs_info=chs_info if has_pos else None, hidden_dim=hidden_dim, depth=depth,
                use_merger=bool(use_merger and has_pos), n_virtual_channels=n_virtual_channels,
                # braindecode pairs its subject layers with a subject embedding (it requires both).
                n_subjects=max(self.n_subjects, 1), subject_layers=self.n_subjects > 1,
                subject_dim=subject_dim if self.n_subjects > 1 else 0,
                conv_drop_prob=dropout,
            )
        self.uses_spatial_attention = bool(use_merger and has_pos)
        check_option("temporal_aggregation", temporal_aggregation, ("affine", "mean"))
        if temporal_aggregation == "affine":
            head = self.model.final_layer[-1]
            self.model.final_layer = nn.Sequential(
                _TemporalAffine(self.n_times), nn.Linear(head.in_features, self.n_outputs)
            )
        self.logit_scale_raw = nn.Parameter(torch.tensor(float(np.log(logit_scale_init))))

    @property
    def final_layer(self):
        return self.model.final_layer

    @property
    def logit_scale(self):
        return self.logit_scale_raw.exp().clamp(max=100.0)

    def forward(self, x, subject_index=None):
        """``x`` (B, n_chans, n_times) -> embeddings (B, n_outputs)."""
        if self.n_subjects > 1:
            if subject_index is None:
                subject_index = torch.zeros(len(x), dtype=torch.long, device=x.device)
            return self.model(x, subject_index=subject_index.long())
        return self.model(x)

    def loss(self, pred, target, **_):
        return clip_mse_loss(pred, target, self.logit_scale, self.clip_weight)

    @torch.no_grad()
    def predict(self, X, subject=None, batch_size=256):
        """Embeddings for ``X`` (n, n_chans, n_times) as a numpy array (n, n_outputs)."""
        self.eval()
        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        subj = None if subject is None else torch.as_tensor(np.asarray(subject), dtype=torch.long)
        out = []
        for s in range(0, len(X), batch_size):
            xb = scale_inputs(X[s : s + batch_size])
            out.append(self(xb, None if subj is None else subj[s : s + batch_size]))
        return torch.cat(out).numpy()

    def encode(self, inst, subject=None):
        """Decode epochs (or an array ``(n, n_chans, n_times)``) to :class:`BrainConditioning`."""
        X = _as_array(inst, self.n_chans, self.n_times)
        return BrainConditioning(
            embeds=torch.from_numpy(self.predict(X, subject)),
            meta={"decoder": "brain_module", "n_outputs": self.n_outputs},
        )


def _as_array(inst, n_chans, n_times):
    """Accept mne Epochs or an array; check the shape against the decoder."""
    X = inst.get_data(copy=False) if hasattr(inst, "get_data") else np.asarray(inst)
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3 or X.shape[1:] != (n_chans, n_times):
        raise UsageError(
            f"Invalid input for the decoder: expected epochs of shape (n, {n_chans}, {n_times}), got {X.shape}."
        )
    return X.astype(np.float32)


RIDGE_FEATURES = ("flat", "bins")


def _grouped_folds(n, groups, n_folds, seed=0):
    """Fold index (n,) so that trials of one group (one image) always share a fold."""
    groups = np.arange(n) if groups is None else np.asarray(groups)
    uniq = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of_group = np.empty(len(uniq), int)
    fold_of_group[order] = np.arange(len(uniq)) % n_folds
    return fold_of_group[np.searchsorted(uniq, groups)]


def ridge_cv_errors(F, Y, alphas, folds):
    """Held-out mean squared error of ridge for every penalty, by K-fold cross-validation.

    One eigendecomposition per fold, so that every penalty costs one matrix product: of the
    ``(n_train, n_train)`` kernel (dual form) when there are fewer training trials than features,
    else of the ``(p, p)`` covariance (primal form; the same solution, much cheaper for thousands of
    trials). Features and targets are centred with each fold's training means (ridge with an
    unpenalised intercept).

    Parameters
    ----------
    F : ndarray, shape (n, p)
    Y : ndarray, shape (n, d)
    alphas : sequence of float
    folds : ndarray of int, shape (n,)

    Returns
    -------
    errors : ndarray, shape (len(alphas),)
    """
    F, Y = np.asarray(F, np.float64), np.asarray(Y, np.float64)
    err = np.zeros(len(alphas))
    for k in np.unique(folds):
        tr, va = folds != k, folds == k
        fm, ym = F[tr].mean(0), Y[tr].mean(0)
        Ft, Fv, Yt = F[tr] - fm, F[va] - fm, Y[tr] - ym
        if len(Ft) <= Ft.shape[1]:
            # dual: coef = Ft^T U diag(1 / (s + a)) U^T Yt with Ft Ft^T = U diag(s) U^T
            s, U = np.linalg.eigh(Ft @ Ft.T)
            UtY = U.T @ Yt
            Kv = Fv @ Ft.T @ U  # (n_val, n_train) in the eigenbasis
        else:
            # primal: coef = V diag(1 / (s + a)) V^T Ft^T Yt with Ft^T Ft = V diag(s) V^T
            s, V = np.linalg.eigh(Ft.T @ Ft)
            UtY = V.T @ (Ft.T @ Yt)
            Kv = Fv @ V  # (n_val, p) in the eigenbasis
        s = np.clip(s, 0, None)
        for i, a in enumerate(alphas):
            pred = Kv @ (UtY / (s + a)[:, None]) + ym
            err[i] += ((pred - Y[va]) ** 2).sum()
    return err / (len(Y) * Y.shape[1])


@register_decoder("ridge_retrieval")
class RidgeRetrieval:
    """Linear baseline: ridge regression from sensor features to image embeddings.

    Channels are standardised with training statistics. Two feature sets:

    - ``"flat"``: every sensor x time sample (``n_chans * n_times`` features);
    - ``"bins"``: each sensor's mean over consecutive bins of ``bin_samples`` samples (e.g. 50 ms),
      which averages out part of the noise and of the trial-to-trial latency jitter.

    The penalty is chosen among ``alphas`` (relative to the number of features) by ``cv``-fold
    cross-validation on the training trials; with ``groups`` (e.g. the image index) the folds never
    split one image's trials, so a held-out fold holds only unseen images as at test time.

    Parameters
    ----------
    alphas : sequence of float
        Candidate penalties, in units of ``n_features / 1000``.
    features : {"flat", "bins"}
    bin_samples : int
        Samples per bin for ``features="bins"``.
    cv : int
        Number of cross-validation folds for the penalty.
    """

    def __init__(self, alphas=(1e-2, 1e-1, 1, 10, 1e2, 1e3, 1e4, 1e5), n_chans=None, n_times=None, features="flat",
                 bin_samples=5, cv=5, **_):
        check_option("features", features, RIDGE_FEATURES)
        if int(bin_samples) < 1:
            raise UsageError(f"Invalid value for the 'bin_samples' parameter: expected >= 1, got {bin_samples!r}.")
        self.alphas = tuple(alphas)
        self.n_chans, self.n_times = n_chans, n_times
        self.features, self.bin_samples, self.cv = features, int(bin_samples), int(cv)

    def _features(self, X):
        X = np.asarray(X, dtype=np.float64)
        X = (X - self.mean_[None, :, None]) / self.std_[None, :, None]
        if self.features == "bins":
            nb = X.shape[2] // self.bin_samples
            X = X[:, :, : nb * self.bin_samples].reshape(len(X), X.shape[1], nb, self.bin_samples).mean(-1)
        return X.reshape(len(X), -1)

    def fit(self, X, Y, subject=None, groups=None):
        """Fit on ``X`` (n, n_chans, n_times) and targets ``Y`` (n, d); returns ``self``.

        ``groups`` (n,): trials sharing a value (the same image) stay in one cross-validation fold.
        """
        from sklearn.linear_model import Ridge

        X = np.asarray(X)
        Y = np.asarray(Y)
        self.n_chans, self.n_times = X.shape[1], X.shape[2]
        self.mean_ = X.mean(axis=(0, 2))
        self.std_ = X.std(axis=(0, 2)) + 1e-20
        F_ = self._features(X)
        scale = F_.shape[1] / 1000
        grid = [a * scale for a in self.alphas]
        n_groups = len(F_) if groups is None else len(np.unique(groups))
        folds = _grouped_folds(len(F_), groups, max(2, min(self.cv, n_groups)))
        self.cv_errors_ = ridge_cv_errors(F_, Y, grid, folds)
        self.alpha_ = float(grid[int(np.argmin(self.cv_errors_))])
        self.model_ = Ridge(alpha=self.alpha_).fit(F_, Y)
        return self

    def predict(self, X, subject=None):
        """Predicted embeddings (n, d)."""
        return self.model_.predict(self._features(X)).astype(np.float32)

    def encode(self, inst, subject=None):
        """Decode epochs or an array to :class:`BrainConditioning`."""
        X = _as_array(inst, self.n_chans, self.n_times)
        return BrainConditioning(embeds=torch.from_numpy(self.predict(X)), meta={"decoder": "ridge_retrieval"})


class SubjectwiseRidge:
    """One :class:`RidgeRetrieval` per subject; each trial is decoded by its own subject's model.

    The per-subject alternative to a ridge pooled over subjects: it can fit each subject's sensor
    patterns, but sees only that subject's trials.

    Parameters
    ----------
    models : dict
        Subject index -> fitted :class:`RidgeRetrieval`.
    """

    def __init__(self, models):
        if not models:
            raise UsageError("SubjectwiseRidge needs at least one fitted subject model.")
        self.models = dict(models)
        first = next(iter(self.models.values()))
        self.n_chans, self.n_times = first.n_chans, first.n_times

    def predict(self, X, subject):
        """Predicted embeddings (n, d) of ``X`` (n, n_chans, n_times) from subjects ``subject`` (n,)."""
        subject = np.asarray(subject)
        missing = sorted(set(np.unique(subject).tolist()) - set(self.models))
        if missing:
            raise UsageError(f"SubjectwiseRidge has no model for subject(s) {missing}; fitted: {sorted(self.models)}.")
        out = None
        for s_, m in self.models.items():
            rows = np.flatnonzero(subject == s_)
            if len(rows):
                pred = m.predict(np.asarray(X)[rows])
                if out is None:
                    out = np.empty((len(subject), pred.shape[1]), np.float32)
                out[rows] = pred
        return out

    def encode(self, inst, subject):
        """Decode epochs or an array of the given subjects to :class:`BrainConditioning`."""
        X = _as_array(inst, self.n_chans, self.n_times)
        return BrainConditioning(embeds=torch.from_numpy(self.predict(X, subject)),
                                 meta={"decoder": "ridge_retrieval", "per_subject": True})
