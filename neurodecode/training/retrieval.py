"""Lightning system and data module for brain-to-image retrieval (brain module, UBP).

``RetrievalDataModule`` turns a :class:`~neurodecode.datasets.paired.PairedBrainImageData` (simulated
or read from THINGS-style files) into training/validation/test trials with their target
embeddings. Validation images are a zero-shot subset of the *training* concepts' complement:
concepts are held out from the training images, never taken from the test set, so early stopping
sees no test data.

``RetrievalSystem`` receives a decoder name and its keyword arguments, builds the decoder once the
data's signal size is known, and trains it with the decoder's own loss; with a UBP decoder it
chooses each pair's blur level through :class:`~neurodecode.decoders.ubp.BlurPrior`.

Both are LightningCLI-friendly (JSON-primitive ``__init__`` arguments); see
``pipelines/retrieval_*.yaml``.
"""

from __future__ import annotations

import copy
import logging

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..datasets.paired import PairedBrainImageData, build_simulated_pairs, zero_shot_split
from ..decoders.brain_module import scale_inputs
from ..decoders.retrieval_metrics import retrieval_scores
from ..decoders.ubp import BLUR_MODES, DEFAULT_DELTA, DEFAULT_SIGMA0, BlurPrior
from ..utils import UsageError, check_option

logger = logging.getLogger("neurodecode")

__all__ = ["RetrievalDataModule", "RetrievalSystem", "TargetSpace", "fit_retrieval", "evaluate_decoder"]


class TargetSpace:
    """Target embeddings at three blur levels, centred and scaled with training images only.

    Parameters
    ----------
    levels : ndarray, shape (n_images, 3, d)
        Embeddings of every image at blur levels less / medium / more (identical for the ablations).
    train_images : array of int
        Rows used to compute the centring mean and scale (training images only).
    """

    def __init__(self, levels, train_images):
        levels = np.asarray(levels, dtype=np.float32)
        self.mean_ = levels[train_images].mean(axis=(0, 1))
        self.scale_ = float(np.sqrt(((levels[train_images] - self.mean_) ** 2).mean()))
        self.levels = (levels - self.mean_) / self.scale_

    @property
    def dim(self):
        return self.levels.shape[-1]

    def candidates(self, rows):
        """Medium-level (test-time) embeddings of images ``rows``, (len(rows), d)."""
        return self.levels[np.asarray(rows), BlurPrior.MEDIUM]


def target_levels(data, blur="none", sigma0=DEFAULT_SIGMA0, delta=DEFAULT_DELTA, *, encoder=None,
                  checkpoint=None, cache_dir=None, fovea=True):
    """Embeddings (n_images, 3, d) for the blur mode: sharp, fixed ``sigma0``, or ``sigma0 -/+ delta``."""
    from ..decoders.image_encoders import encode_cached, get_image_encoder

    check_option("blur", blur, BLUR_MODES)
    if blur == "none":
        if data.embeds is None:
            raise UsageError("The paired data has no image embeddings; give images or embeddings.")
        return np.repeat(data.embeds[:, None], 3, axis=1)
    if data.images is None:
        raise UsageError(f"blur={blur!r} needs the images themselves (to embed blurred copies); the data has none.")
    if encoder is not None and not isinstance(encoder, str):
        enc = encoder
    else:
        name = encoder or data.meta.get("encoder", "efficientnet_lite0")
        size = data.meta.get("encoder_size") if name == "efficientnet_lite0" else None
        enc = get_image_encoder(name, checkpoint, image_size=size)
    mid = encode_cached(enc, data.images, cache_dir=cache_dir, blur_sigma=sigma0, fovea=fovea)
    if blur == "fixed":
        return np.repeat(mid[:, None], 3, axis=1)
    lo = encode_cached(enc, data.images, cache_dir=cache_dir, blur_sigma=max(sigma0 - delta, 0.0), fovea=fovea)
    hi = encode_cached(enc, data.images, cache_dir=cache_dir, blur_sigma=sigma0 + delta, fovea=fovea)
    return np.stack([lo, mid, hi], axis=1)


class _Trials(Dataset):
    def __init__(self, X, subject, image_index, pair_index):
        self.X = torch.as_tensor(X, dtype=torch.float32)
        self.subject = torch.as_tensor(subject, dtype=torch.long)
        self.image_index = torch.as_tensor(image_index, dtype=torch.long)
        self.pair_index = torch.as_tensor(pair_index, dtype=torch.long)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.subject[i], self.image_index[i], self.pair_index[i]


class RetrievalDataModule(L.LightningDataModule):
    """Trials and targets for retrieval training.

    Parameters
    ----------
    modality, snr, lowpass_sigma, n_subjects, train_repeats, n_test, image_source, n_images, n_sources,
    latency_jitter, forward_model, n_times, sfreq, encoder_size, seed
        Passed to :func:`~neurodecode.datasets.paired.build_simulated_pairs` (ignored when ``data`` is
        given).
    blur : {"none", "fixed", "uncertainty"}
        Target space: sharp embeddings, fixed blur ``sigma0``, or three levels for UBP.
    sigma0, delta : float
        Medium blur and step (pixels at 224 px).
    val_fraction : float
        Fraction of training images (whole concepts) held out for validation.
    batch_size : int
    cache_dir : str | None
        Embedding cache folder.
    data : PairedBrainImageData | None
        Use these paired data instead of simulating (e.g. from :mod:`neurodecode.datasets.things`).
        Missing embeddings are computed from its images with ``encoder``.
    val_mode : {"concepts", "trials"}
        ``"concepts"`` (zero-shot): validation images are whole training concepts held out, and test
        candidates are the test images. ``"trials"`` (closed set, e.g. 10 digit images): the last
        ``val_fraction`` of training trials validate, and every image is a candidate.
    encoder : str or ImageEncoder
        Image encoder for data without embeddings and for blurred targets (``encoder_size`` applies to
        the default one).
    """

    def __init__(self, modality="eeg", snr=1.0, lowpass_sigma=0.0, n_subjects=2, n_test=200, train_repeats=1,
                 image_source="mixed", n_images=None, n_sources=32, latency_jitter=0.02, forward_model="physio", n_times=80,
                 sfreq=100.0, encoder_size=None, blur="none", sigma0=DEFAULT_SIGMA0, delta=DEFAULT_DELTA, val_fraction=0.1,
                 batch_size=128, cache_dir=None, seed=0, data=None, val_mode="concepts",
                 encoder="efficientnet_lite0"):
        super().__init__()
        check_option("val_mode", val_mode, ("concepts", "trials"))
        self.val_mode, self.encoder = val_mode, encoder
        check_option("blur", blur, BLUR_MODES)
        self.sim_kwargs = dict(modality=modality, snr=snr, lowpass_sigma=lowpass_sigma, n_subjects=n_subjects,
                               train_repeats=train_repeats,
                               n_test=n_test, image_source=image_source, n_images=n_images, n_sources=n_sources,
                               latency_jitter=latency_jitter, forward_model=forward_model, n_times=n_times, sfreq=sfreq, seed=seed,
                               encoder_size=encoder_size)
        self.blur, self.sigma0, self.delta = blur, float(sigma0), float(delta)
        self.val_fraction, self.batch_size, self.cache_dir, self.seed = val_fraction, batch_size, cache_dir, seed
        self.data = data
        self._ready = False

    def setup(self, stage=None):
        if self._ready:
            return
        if self.data is None:
            self.data = build_simulated_pairs(cache_dir=self.cache_dir, **self.sim_kwargs)
        d = self.data
        if not isinstance(d, PairedBrainImageData):
            raise UsageError("Invalid value for the 'data' parameter: expected PairedBrainImageData.")
        if d.embeds is None:
            self._embed(d)
        train_imgs = np.unique(d.image_index[d.split == "train"])
        is_train = d.split == "train"
        if self.val_mode == "concepts":
            labels = d.image_labels if d.image_labels is not None else np.arange(len(d.embeds))
            n_val = max(1, int(round(self.val_fraction * len(train_imgs))))
            val_mask = zero_shot_split(labels[train_imgs], n_val, seed=self.seed + 1)
            self.val_images = train_imgs[val_mask]
            self.fit_images = train_imgs[~val_mask]
            self.test_images = d.test_images()
            is_fit = np.isin(d.image_index, self.fit_images) & is_train
            is_val = np.isin(d.image_index, self.val_images) & is_train
        else:
            tr = np.flatnonzero(is_train)
            n_val = max(1, int(round(self.val_fraction * len(tr))))
            is_fit, is_val = np.zeros(len(d), bool), np.zeros(len(d), bool)
            is_fit[tr[:-n_val]], is_val[tr[-n_val:]] = True, True
            self.fit_images = train_imgs
            self.val_images = self.test_images = np.arange(len(d.embeds))
        self.targets = TargetSpace(
            target_levels(d, self.blur, self.sigma0, self.delta, cache_dir=self.cache_dir,
                          encoder=None if isinstance(self.encoder, str) else self.encoder), self.fit_images
        )
        self.index = {"fit": np.flatnonzero(is_fit), "val": np.flatnonzero(is_val),
                      "test": np.flatnonzero(d.split == "test")}
        # Robust per-trial scaling once, up front (cheap, and the same for every model).
        self.X = scale_inputs(d.X).numpy()
        self._ready = True

    def _embed(self, d):
        from ..decoders.image_encoders import encode_cached, get_image_encoder

        if d.images is None:
            raise UsageError("The paired data has neither embeddings nor images; read it with load_images=True.")
        if isinstance(self.encoder, str):
            size = self.sim_kwargs["encoder_size"] if self.encoder == "efficientnet_lite0" else None
            enc = get_image_encoder(self.encoder, image_size=size)
        else:
            enc = self.encoder
        d.embeds = encode_cached(enc, d.images, cache_dir=self.cache_dir)
        d.meta.update(encoder=enc.name, encoder_size=int(enc.preprocessing["size"]))

    @property
    def signal_kwargs(self):
        """Signal arguments (n_chans, n_times, sfreq, chs_info, n_outputs, n_subjects) for the decoder."""
        self.setup()
        d = self.data
        info = d.info()
        return {"n_chans": len(d.ch_names), "n_times": d.X.shape[-1], "sfreq": d.sfreq,
                "chs_info": [dict(ch) for ch in info["chs"]], "n_outputs": self.targets.dim,
                "n_subjects": d.n_subjects}

    def _dataset(self, part):
        idx = self.index[part]
        d = self.data
        return _Trials(self.X[idx], d.subject[idx], d.image_index[idx], idx)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self._dataset("fit"), batch_size=self.batch_size, shuffle=True, drop_last=True, generator=g)

    def val_dataloader(self):
        return DataLoader(self._dataset("val"), batch_size=1024)

    def test_dataloader(self):
        return DataLoader(self._dataset("test"), batch_size=1024)

    def arrays(self, part):
        """``(X, subject, image_index)`` of a part (``"fit"``, ``"val"``, ``"test"``)."""
        idx = self.index[part]
        return self.X[idx], self.data.subject[idx], self.data.image_index[idx]


class RetrievalSystem(L.LightningModule):
    """Trains a retrieval decoder (``"brain_module"`` or ``"ubp"``) on a :class:`RetrievalDataModule`.

    Parameters
    ----------
    decoder : str
        Registered decoder name.
    decoder_kwargs : dict | None
        Extra arguments for the decoder (signal size comes from the data).
    lr, weight_decay : float
        AdamW.
    blur_momentum, blur_z : float
        Running-average weight and interval width of the blur prior (UBP decoders only).
    """

    def __init__(self, decoder="brain_module", decoder_kwargs=None, lr=1e-3, weight_decay=1e-4,
                 blur_momentum=0.3, blur_z=1.96):
        super().__init__()
        self.save_hyperparameters()
        self.decoder = None
        self.prior = None

    def build(self, dm):
        """Create the decoder for ``dm``'s signal size (called by ``setup``)."""
        from ..decoders import create_decoder

        if self.decoder is not None:
            return
        kw = dm.signal_kwargs
        extra = dict(self.hparams.decoder_kwargs or {})
        if self.hparams.decoder == "ubp":
            extra.setdefault("blur", dm.blur)
        self.decoder = create_decoder(self.hparams.decoder, **kw, **extra)
        self.prior = BlurPrior(len(dm.data), mode=dm.blur, momentum=self.hparams.blur_momentum,
                               z=self.hparams.blur_z)
        self._targets = torch.from_numpy(dm.targets.levels)
        self._val_candidates = dm.targets.candidates(dm.val_images)
        self._val_rows = {int(r): i for i, r in enumerate(dm.val_images)}

    def setup(self, stage=None):
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None:
            raise UsageError("RetrievalSystem needs a RetrievalDataModule (trainer.fit(system, datamodule=...)).")
        dm.setup(stage)
        self.build(dm)

    def forward(self, x, subject=None):
        return self.decoder(x, subject)

    def training_step(self, batch, batch_idx):
        x, subj, img, pair = batch
        levels = self.prior.levels(pair.numpy())
        target = self._targets[img, torch.from_numpy(levels)]
        pred = self.decoder(x, subj)
        loss = self.decoder.loss(pred, target)
        if self.prior.mode == "uncertainty":
            with torch.no_grad():
                sim = (self.decoder.logit_scale * torch.nn.functional.cosine_similarity(pred, target, dim=-1))
            self.prior.update(pair.numpy(), sim.cpu().numpy())
        self.log("train_loss", loss, prog_bar=False, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, subj, img, _ = batch
        pred = self.decoder(x, subj).cpu().numpy()
        rows = np.array([self._val_rows[int(i)] for i in img])
        s = retrieval_scores(pred, self._val_candidates, rows, ks=())
        self.log("val_top5", s["top5"], batch_size=len(x))
        self.log("val_top1", s["top1"], batch_size=len(x))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


class _KeepBest(L.Callback):
    """Keeps the decoder weights of the best ``val_top5`` epoch in memory (no files) and restores them."""

    def __init__(self, patience=8):
        self.best, self.state, self.patience, self.bad = -1.0, None, patience, 0

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        v = float(trainer.callback_metrics.get("val_top5", -1))
        logger.info("epoch %d: train_loss %.4f val_top5 %.3f", trainer.current_epoch,
                    float(trainer.callback_metrics.get("train_loss", float("nan"))), v)
        if v > self.best:
            self.best, self.bad = v, 0
            self.state = copy.deepcopy(pl_module.decoder.state_dict())
        else:
            self.bad += 1
            if self.bad >= self.patience:
                trainer.should_stop = True

    def on_fit_end(self, trainer, pl_module):
        if self.state is not None:
            pl_module.decoder.load_state_dict(self.state)


def fit_retrieval(dm, decoder="brain_module", decoder_kwargs=None, *, max_epochs=40, lr=1e-3, weight_decay=1e-4,
                  patience=8, seed=0):
    """Train ``decoder`` on ``dm`` with Lightning on the CPU; return the trained system.

    The epoch with the best validation top-5 (validation concepts come from the training set) is kept.
    """
    L.seed_everything(seed, workers=True, verbose=False)
    system = RetrievalSystem(decoder, decoder_kwargs, lr=lr, weight_decay=weight_decay)
    keep = _KeepBest(patience)
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[keep], num_sanity_val_steps=0, deterministic=True)
    trainer.fit(system, datamodule=dm)
    system.best_val_top5 = keep.best
    system.epochs_run = trainer.current_epoch
    return system


def evaluate_decoder(predict, dm, *, ks=(2, 10, 50)):
    """Retrieval scores of ``predict(X, subject) -> (n, d)`` on ``dm``'s test trials.

    Candidates are all test images (medium blur level for blur-trained targets); each test trial is
    ranked among them.
    """
    X, subj, img = dm.arrays("test")
    pred = predict(X, subj)
    rows = np.searchsorted(dm.test_images, img)
    return retrieval_scores(pred, dm.targets.candidates(dm.test_images), rows, ks=ks)


METHODS = ("ridge", "ridge_per_subject", "brain_module", "ubp")


def _fit_ridge(X, Y, img, Xv, img_v, dm, kw):
    """Ridge for each feature set (penalty by image-grouped CV); keep the best validation top-5.

    Returns ``(model, val_top5)``.
    """
    from ..decoders.brain_module import RIDGE_FEATURES, RidgeRetrieval

    kw = dict(kw)
    kw.setdefault("bin_samples", max(1, int(round(0.05 * dm.data.sfreq))))  # 50-ms bins
    choices = [kw.pop("features")] if "features" in kw else list(RIDGE_FEATURES)
    best = None
    for feats in choices:
        cand = RidgeRetrieval(features=feats, **kw).fit(X, Y, groups=img)
        if len(img_v):
            rows = np.searchsorted(dm.val_images, img_v)
            v = retrieval_scores(cand.predict(Xv), dm.targets.candidates(dm.val_images), rows, ks=())
            key = (v["top5"], v["top1"])
        else:
            key = (float("nan"), float("nan"))
        logger.info("ridge features=%s alpha=%.3g val_top5=%.3f", feats, cand.alpha_, key[0])
        if best is None or key > best[0]:
            best = (key, cand)
    return best[1], float(best[0][0])


def run_retrieval(dm, method="brain_module", *, decoder_kwargs=None, max_epochs=40, lr=None, patience=8, seed=0):
    """Fit ``method`` on ``dm``'s training trials and score it on its test trials.

    Parameters
    ----------
    dm : RetrievalDataModule
        Its ``blur`` sets the target space (UBP's blur prior with ``"uncertainty"``).
    method : {"ridge", "ridge_per_subject", "brain_module", "ubp"}
        ``"ridge"`` pools all subjects' trials in one model; ``"ridge_per_subject"`` fits one per
        subject (each with its own penalty and feature set) and decodes each trial with its subject's.
    decoder_kwargs : dict | None
        Extra decoder arguments.
    max_epochs, lr, patience, seed
        Training settings (ridge ignores them). Default ``lr``: 1e-3 brain module, 3e-4 UBP.

    Returns
    -------
    scores : dict
        :func:`~neurodecode.decoders.retrieval_metrics.retrieval_scores` plus ``method``, ``blur``,
        ``fit_seconds``, ``epochs`` and ``val_top5`` (model selection used the validation concepts only).
    model : object
        The fitted decoder (has ``encode(inst) -> BrainConditioning``).
    """
    import time

    check_option("method", method, METHODS)
    dm.setup()
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    if method == "ridge":
        # Both feature sets; penalty by cross-validation over training images (folds never split an
        # image), feature set by top-5 on the validation images (the brain module's early-stopping set).
        X, subj, img = dm.arrays("fit")
        Xv, _, img_v = dm.arrays("val")
        model, v5 = _fit_ridge(X, dm.targets.levels[img, BlurPrior.MEDIUM], img, Xv, img_v, dm, decoder_kwargs or {})
        extra = {"epochs": 0, "val_top5": v5, "alpha": model.alpha_, "features": model.features}
        predict = model.predict
    elif method == "ridge_per_subject":
        from ..decoders.brain_module import SubjectwiseRidge

        X, subj, img = dm.arrays("fit")
        Xv, subj_v, img_v = dm.arrays("val")
        models, feats, v5 = {}, [], []
        for s_ in np.unique(subj):
            m, mv = subj == s_, subj_v == s_
            models[int(s_)], v = _fit_ridge(X[m], dm.targets.levels[img[m], BlurPrior.MEDIUM], img[m], Xv[mv],
                                            img_v[mv], dm, decoder_kwargs or {})
            feats.append(models[int(s_)].features)
            v5.append(v)
        model = SubjectwiseRidge(models)
        extra = {"epochs": 0, "val_top5": float(np.mean(v5)),
                 "features": "/".join(sorted(set(feats))) if len(set(feats)) == 1 else
                 ",".join(f"{f}x{feats.count(f)}" for f in sorted(set(feats)))}
        predict = model.predict
    else:
        lr = lr if lr is not None else (1e-3 if method == "brain_module" else 3e-4)
        system = fit_retrieval(dm, method, decoder_kwargs, max_epochs=max_epochs, lr=lr, patience=patience, seed=seed)
        model = system.decoder

        def predict(X, subj):
            model.eval()
            with torch.no_grad():
                xt = torch.as_tensor(X, dtype=torch.float32)
                st = torch.as_tensor(np.asarray(subj), dtype=torch.long)
                return torch.cat([model(xt[i : i + 512], st[i : i + 512]) for i in range(0, len(xt), 512)]).numpy()

        extra = {"epochs": int(system.epochs_run), "val_top5": float(system.best_val_top5)}
        if system.prior is not None and system.prior.mode == "uncertainty":
            extra["blur_levels"] = system.prior.stats()
    fit_s = time.perf_counter() - t0
    scores = evaluate_decoder(predict, dm)
    scores.update(extra, method=method, blur=dm.blur, fit_seconds=round(fit_s, 1))
    return scores, model
