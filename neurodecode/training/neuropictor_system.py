"""Training NeuroPictor's fMRI encoder: multi-subject pre-training, then single-subject refinement.

Data travel as *per-subject batches*: every batch holds trials of one subject only (each
subject has its own input layer and voxel count), and subjects take turns batch by batch so
the shared transformer sees all of them in every epoch.

Losses (all on the encoder's outputs, see :class:`~neurodecode.decoders.neuropictor.NeuroPictorEncoder`):

* high level: symmetric InfoNCE between decoded and true image embeddings (retrieval-style
  alignment) plus MSE on the L2-normalised embeddings; optionally MSE to a text embedding
  (``w_text``);
* low level: the spatial maps are read out (a 1x1 convolution, upsampled) into a coarse image and
  compared with the downsampled stimulus (MSE); the maps themselves are what the generator adds to
  its U-Net features. When a generation backend is given, :meth:`NeuroPictorSystem.diffusion_loss`
  adds the paper's objective: the frozen denoiser's noise-prediction error under the decoded
  conditioning.

Functions :func:`pretrain` and :func:`refine` run the two stages; :func:`train_from_config` is
the entry point for ``neurodecode train`` (files in, checkpoint out).
"""

import inspect
import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..utils import UsageError, atomic_path, seed_everything


def low_level_target(images, size):
    """Images (n, C, H, W) or (n, H, W) in [0, 1] -> (n, C, size, size) area-downsampled, centred at 0."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.ndim == 3:
        x = x[:, None]
    return F.adaptive_avg_pool2d(x, size) * 2 - 1


class SubjectBatches(torch.utils.data.IterableDataset):
    """Yield batches of one subject at a time, subjects interleaved.

    Parameters
    ----------
    data : dict of str to dict
        Per subject: ``x`` (n, n_voxels), ``embeds`` (n, d), ``low`` (n, C, s, s) and optionally
        ``text`` (n, t); arrays or tensors.
    batch_size : int
    shuffle : bool
    seed : int
    """

    def __init__(self, data, batch_size=32, shuffle=True, seed=0):
        super().__init__()
        if not data:
            raise UsageError("No subject data given for training.")
        self.data = {s: {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in d.items()} for s, d in data.items()}
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = 0

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        queues = []
        for s, d in self.data.items():
            n = len(d["x"])
            order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
            queues.append([(s, order[i:i + self.batch_size]) for i in range(0, n, self.batch_size)])
        # Interleave: one batch per subject per round, until each subject's batches are used up.
        for r in range(max(len(q) for q in queues)):
            for q in queues:
                if r < len(q):
                    s, idx = q[r]
                    batch = {k: v[idx] for k, v in self.data[s].items()}
                    batch["subject"] = s
                    yield batch


class NeuroPictorSystem(L.LightningModule):
    """Lightning system training a :class:`NeuroPictorEncoder`.

    Parameters
    ----------
    encoder : NeuroPictorEncoder
    lr, weight_decay : float
        AdamW settings (the paper: 1e-4 and 0.01 at a much larger scale).
    temperature : float
        InfoNCE temperature.
    w_contrastive, w_embed, w_low, w_text, w_diffusion : float
        Loss weights (see the module docstring).
    low_channels, low_size : int
        Channels and size of the coarse image the low-level readout predicts.
    low_readout : bool
        Read the maps out through a learned 1x1 convolution (``True``), or compare the maps
        themselves with the coarse image (``False``; needs ``map_channels == low_channels``), which
        makes the maps a coarse image the generator can take as its spatial input.
    init_weights : str | None
        A checkpoint of :func:`save_checkpoint` to start from (the refinement stage of a
        pipeline config); the input layers of subjects it lacks stay freshly initialised.
    backend : object | None
        Generation backend offering ``diffusion_loss(images, conditioning)``
        (:class:`~neurodecode.generation.control.DiffusionBackend`): its U-Net is frozen, its control copy trained.
    generator : str | None
        Instead of ``backend``: a generator file whose denoiser is a ``ControlledUNet``
        (``BrainToImagePipeline.save_weights``); the diffusion stage of a pipeline config.
    """

    def __init__(self, encoder, lr=1e-3, weight_decay=0.01, temperature=0.07, w_contrastive=1.0, w_embed=1.0,
                 w_low=1.0, w_text=0.0, w_diffusion=0.0, low_channels=1, low_size=16, low_readout=True, init_weights=None,
                 backend=None, generator=None):
        super().__init__()
        self.encoder = encoder
        if backend is None and generator is not None:
            backend = diffusion_backend(generator)
        self.backend = backend
        self.save_hyperparameters(ignore=["encoder", "backend"])
        if not low_readout and encoder.map_channels != low_channels:
            raise UsageError(
                f"low_readout=False compares the maps with the coarse image directly, so the encoder's map_channels "
                f"({encoder.map_channels}) must equal low_channels ({low_channels})."
            )
        self.readout = nn.Conv2d(encoder.map_channels, low_channels, 1) if low_readout else nn.Identity()
        if init_weights is not None:
            self._load_init(init_weights)

    def _load_init(self, path):
        from safetensors.torch import load_file

        from ..utils import InputFileError

        if not Path(path).is_file():
            raise InputFileError(f"{path}: no such checkpoint (init_weights).")
        state = load_file(str(path))
        own = self.state_dict()
        # Only tensors whose name and shape match: a new subject keeps its fresh input layer.
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not any(k.startswith("encoder.transformer.") for k in usable):
            raise InputFileError(f"{path}: no shared-transformer weights matching this encoder; wrong checkpoint?")
        self.load_state_dict(usable, strict=False)

    def forward(self, x, subject):
        return self.encoder(x, subject)

    def low_image(self, maps):
        """Coarse image read out of the low-level maps, shape (B, low_channels, low_size, low_size)."""
        if maps.shape[-1] != self.hparams.low_size:
            maps = F.interpolate(maps, size=self.hparams.low_size, mode="bilinear", align_corners=False)
        return self.readout(maps)

    def losses(self, batch):
        out = self.encoder(batch["x"], batch["subject"])
        hp = self.hparams
        pred = F.normalize(out["embeds"], dim=-1)
        true = F.normalize(batch["embeds"], dim=-1)
        logits = pred @ true.T / hp.temperature
        labels = torch.arange(len(pred))
        parts = {
            "contrastive": (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2,
            "embed": F.mse_loss(pred, true) * pred.shape[1],
            "low": F.mse_loss(self.low_image(out["maps"]), batch["low"]),
        }
        total = hp.w_contrastive * parts["contrastive"] + hp.w_embed * parts["embed"] + hp.w_low * parts["low"]
        if hp.w_text and "text" in batch and "text" in out:
            parts["text"] = F.mse_loss(F.normalize(out["text"], dim=-1), F.normalize(batch["text"], dim=-1)) * out["text"].shape[1]
            total = total + hp.w_text * parts["text"]
        if hp.w_diffusion and self.backend is not None and "images" in batch:
            parts["diffusion"] = self.backend.diffusion_loss(batch["images"], out)
            total = total + hp.w_diffusion * parts["diffusion"]
        parts["loss"] = total
        return parts

    def training_step(self, batch, batch_idx):
        parts = self.losses(batch)
        for k, v in parts.items():
            self.log(f"train/{k}", v.detach(), batch_size=len(batch["x"]), prog_bar=False)
        return parts["loss"]

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def diffusion_backend(generator, *, train_control=True, cond_dropout=0.1, map_dropout=0.1):
    """A :class:`~neurodecode.generation.control.DiffusionBackend` from a generator file (ControlledUNet denoiser).

    The forward noising follows the generator's stored scheduler configuration (its training noise).
    """
    from diffusers import DDPMScheduler

    from ..generation.control import ControlledUNet, DiffusionBackend
    from ..generation.pipeline import BrainToImagePipeline
    from ..utils import InputFileError

    pipe = BrainToImagePipeline.from_weights(generator)
    if not isinstance(pipe.denoiser, ControlledUNet):
        raise InputFileError(
            f"{generator}: the diffusion stage needs a generator with a control copy (ControlledUNet), "
            f"but its denoiser is a {type(pipe.denoiser).__name__}."
        )
    return DiffusionBackend(pipe.denoiser, DDPMScheduler.from_config(pipe.scheduler.config), train_control=train_control,
                            cond_dropout=cond_dropout, map_dropout=map_dropout)


class NeuroPictorDataModule(L.LightningDataModule):
    """Per-subject batches read from an NSD-style responses file and an images file (for pipeline configs).

    Parameters
    ----------
    responses, images, subjects :
        See :func:`load_training_data`.
    batch_size : int
    low_size, low_channels : int
        Coarse-image target of the low-level maps.
    image_size : int | None
        Also give the seen images at the generator's resolution (the diffusion stage).
    seed : int
    """

    def __init__(self, responses, images, subjects=None, batch_size=32, low_size=16, low_channels=1, image_size=None,
                 seed=0):
        super().__init__()
        self.responses, self.images, self.subjects = responses, images, subjects
        self.batch_size, self.low_size, self.low_channels, self.seed = batch_size, low_size, low_channels, seed
        self.image_size = image_size

    def setup(self, stage=None):
        data = load_training_data(self.responses, self.images, self.subjects, low_size=self.low_size,
                                  low_channels=self.low_channels, image_size=self.image_size)
        self.data = {s: {k: v for k, v in d.items() if k != "stim_ids"} for s, d in data.items()}

    def train_dataloader(self):
        return torch.utils.data.DataLoader(SubjectBatches(self.data, self.batch_size, seed=self.seed), batch_size=None)


class ExportNeuroPictor(L.Callback):
    """Write the trained encoder with :func:`save_checkpoint` when fitting ends (for pipeline configs).

    Parameters
    ----------
    path : str
        Output safetensors file.
    generator_path : str | None
        Where to write the generator with its trained control copy (diffusion stage).
    overwrite : bool
    """

    def __init__(self, path, generator_path=None, overwrite=False):
        self.path, self.generator_path, self.overwrite = path, generator_path, overwrite

    def on_fit_end(self, trainer, pl_module):
        save_checkpoint(pl_module, self.path, overwrite=self.overwrite,
                        extra={"epochs": trainer.current_epoch, "steps": trainer.global_step,
                               "subjects": pl_module.encoder.subjects})
        if self.generator_path and pl_module.backend is not None:
            save_generator(pl_module.backend, self.generator_path, overwrite=self.overwrite)


def save_generator(backend, path, *, overwrite=False):
    """Write the backend's denoiser (frozen U-Net + trained control copy) as a generator file."""
    from diffusers import DDIMScheduler

    from ..generation.pipeline import BrainToImagePipeline

    pipe = BrainToImagePipeline(backend.denoiser, DDIMScheduler.from_config(backend.noise_scheduler.config))
    return pipe.save_weights(path, overwrite=overwrite)


def _fit(system, data, epochs, batch_size, seed, *, steps=-1):
    # epochs=-1 with steps > 0: a fixed number of optimiser updates whatever the amount of data.
    seed_everything(seed)
    loader = torch.utils.data.DataLoader(SubjectBatches(data, batch_size, seed=seed), batch_size=None)
    trainer = L.Trainer(max_epochs=epochs, max_steps=steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        deterministic=True)
    trainer.fit(system, loader)
    return system


def pretrain(system, data, *, epochs=30, batch_size=32, seed=0):
    """Stage 1: train on every subject in ``data`` (subjects interleaved batch by batch)."""
    return _fit(system, data, epochs, batch_size, seed)


def finetune_diffusion(system, data, *, steps=150, batch_size=32, lr=None, seed=0):
    """Diffusion stage: train the encoder (and the control copy) through the frozen generator's denoising loss.

    NeuroPictor's objective: the decoded embedding (high level) and maps (low level) condition the frozen
    U-Net (maps through its ControlNet-style copy), and the noise-prediction error on the seen images
    is minimised with respect to the encoder and the control copy. The regression terms stay as
    auxiliaries with the system's weights (set them to 0 for the pure diffusion objective).

    Parameters
    ----------
    system : NeuroPictorSystem
        With a ``backend`` (:class:`~neurodecode.generation.control.DiffusionBackend`) and ``w_diffusion > 0``.
    data : dict of str to dict
        As for :func:`pretrain`, each subject's dict also holding ``images`` (n, C, S, S) in [-1, 1] at the
        generator's resolution.
    steps : int
        Optimiser updates (whatever the amount of data, so that subjects with few trials get as many).
    lr : float | None
        Learning rate of this stage (default: the system's).
    """
    if system.backend is None or not system.hparams.w_diffusion:
        raise UsageError("The diffusion stage needs a NeuroPictorSystem built with backend=DiffusionBackend(...) and w_diffusion > 0.")
    missing = [s for s, d in data.items() if "images" not in d]
    if missing:
        raise UsageError(f"The diffusion stage needs 'images' (n, C, S, S) in [-1, 1] for every subject; missing for {missing}.")
    if lr is not None:
        system.hparams.lr = lr
    return _fit(system, data, -1, batch_size, seed, steps=int(steps))


def refine(system, data, subject, *, epochs=30, batch_size=32, lr=None, seed=0):
    """Stage 2: continue on ``subject`` only (all weights, as in the paper's single-subject fine-tuning).

    ``lr`` lowers the learning rate for this stage when given.
    """
    if subject not in data:
        raise UsageError(f"Invalid value for the 'subject' parameter. Allowed values are {sorted(data)}, but got {subject!r} instead.")
    if lr is not None:
        system.hparams.lr = lr
    return _fit(system, {subject: data[subject]}, epochs, batch_size, seed)


# --------------------------------------------------------------------------------------------
# Checkpoints and the entry point for ``neurodecode train``
# --------------------------------------------------------------------------------------------
def save_checkpoint(system, path, *, overwrite=False, extra=None, half=False):
    """Write the encoder + readout weights (safetensors) and its config (JSON in the metadata).

    ``half=True`` stores floating-point tensors in float16 (half the size; loaded back as float32).
    """
    from safetensors.torch import save_file

    enc = system.encoder
    config = {
        "encoder": {"n_voxels": enc.n_voxels, "embed_dim": enc.embed_dim, "n_tokens": enc.n_tokens,
                    "d_model": enc.d_model, "depth": len(enc.transformer.layers),
                    "n_heads": enc.transformer.layers[0].self_attn.num_heads, "n_cond_tokens": enc.n_cond_tokens,
                    "cond_dim": enc.cond_dim, "map_channels": enc.map_channels, "map_size": enc.map_size,
                    "text_dim": enc.text_dim, "dropout": enc.dropout},
        # Only this class's own arguments (LightningCLI adds e.g. "_class_path"); init_weights is spent.
        "system": {k: v for k, v in system.hparams.items() if k in _SYSTEM_ARGS
                   and isinstance(v, (int, float, str, bool, type(None)))},
        "extra": extra or {},
    }
    state = {k: v.detach().contiguous() for k, v in system.state_dict().items() if not k.startswith("backend.")}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp), metadata={"config": json.dumps(config)})
    return Path(path)


_SYSTEM_ARGS = set(inspect.signature(NeuroPictorSystem.__init__).parameters) - {"self", "encoder", "backend", "init_weights",
                                                                                 "generator"}


def load_checkpoint(path):
    """Rebuild a :class:`NeuroPictorSystem` from :func:`save_checkpoint`'s file."""
    from ..decoders.neuropictor import NeuroPictorEncoder
    from ..utils import InputFileError, read_safetensors

    path = Path(path)
    state, meta = read_safetensors(path, what="a NeuroPictor checkpoint")
    try:
        config = json.loads(meta["config"])
    except (KeyError, ValueError) as err:
        raise InputFileError(f"{path}: not a NeuroPictor checkpoint written by save_checkpoint ({err}).") from err
    system = NeuroPictorSystem(NeuroPictorEncoder(**config["encoder"]), **config["system"])
    system.load_state_dict(state)
    system.extra = config.get("extra", {})
    return system


def load_training_data(responses_path, images_path, subjects=None, *, low_size=16, low_channels=1, image_size=None):
    """Read an NSD-style responses file and an images file into per-subject training arrays.

    Parameters
    ----------
    responses_path : path-like
        Written by :func:`neurodecode.datasets.fmri.write_nsd_responses`.
    images_path : path-like
        HDF5 with ``images`` (n, C, H, W) float in [0, 1] and ``embeddings`` (n, d), indexed by ``stim_ids``.
    subjects : list of str | None
        Subjects to read; ``None`` reads all groups.

    image_size : int | None
        Also return ``images`` (n, low_channels, image_size, image_size) in [-1, 1] (area-resized), the
        diffusion stage's targets.

    Returns
    -------
    dict of str to dict
        Per subject ``x``, ``embeds``, ``low``, ``stim_ids`` (and ``images``).
    """
    import h5py

    from ..datasets.fmri import read_nsd_responses
    from ..utils import InputFileError

    with h5py.File(responses_path, "r") as f:
        available = [k for k in f if isinstance(f[k], h5py.Group)]
    subjects = available if subjects is None else list(subjects)
    with h5py.File(images_path, "r") as f:
        if "images" not in f or "embeddings" not in f:
            raise InputFileError(f"{images_path}: expected datasets 'images' and 'embeddings'.")
        images = np.asarray(f["images"], np.float32)
        embeds = np.asarray(f["embeddings"], np.float32)
    if low_channels == 1 and images.ndim == 4:
        images = images.mean(1, keepdims=True)
    low = low_level_target(images, low_size).numpy()
    full = low_level_target(images, image_size).numpy() if image_size else None
    data = {}
    for s in subjects:
        r = read_nsd_responses(responses_path, s)
        if r.stim_ids.max(initial=0) >= len(images):
            raise InputFileError(f"{responses_path}: subject {s} references image {r.stim_ids.max()} but {images_path} has {len(images)}.")
        data[s] = {"x": r.responses, "embeds": embeds[r.stim_ids], "low": low[r.stim_ids], "stim_ids": r.stim_ids}
        if full is not None:
            data[s]["images"] = full[r.stim_ids]
    return data


def train_from_config(stage, responses, images, output, *, subjects=None, subject=None, init=None, epochs=30,
                      batch_size=32, lr=1e-3, seed=0, encoder_kwargs=None, overwrite=False, generator=None,
                      generator_output=None, steps=150, aux_weight=0.1):
    """Run one NeuroPictor stage from files; the function ``neurodecode train`` can call.

    Parameters
    ----------
    stage : {"pretrain", "refine", "diffusion"}
        ``"diffusion"`` fine-tunes ``init`` (on ``subject``, or on ``subjects``) and the generator's control copy
        through the frozen generator's denoising loss for ``steps`` updates, with the regression terms
        weighted by ``aux_weight``; it needs ``generator`` (a ControlledUNet generator file) and writes the
        updated generator to ``generator_output``.
    responses, images : path-like
        See :func:`load_training_data`.
    output : path-like
        Checkpoint to write (safetensors; never overwritten unless ``overwrite``).
    subjects : list of str | None
        Pre-training subjects (default: all in ``responses``).
    subject : str | None
        Refinement subject (required for ``"refine"``).
    init : path-like | None
        Checkpoint to start from (required for ``"refine"``). A refinement subject absent from
        it gets a fresh input layer.
    encoder_kwargs : dict | None
        Extra :class:`NeuroPictorEncoder` arguments for pre-training.

    Returns
    -------
    Path
    """
    from ..decoders.neuropictor import NeuroPictorEncoder
    from ..utils import check_option

    check_option("stage", stage, ["pretrain", "refine", "diffusion"])
    if stage == "refine":
        if subject is None or init is None:
            raise UsageError("The 'refine' stage needs both subject= (who to refine on) and init= (a pre-trained checkpoint).")
        subjects = [subject]
    image_size = None
    if stage == "diffusion":
        if init is None or generator is None or generator_output is None:
            raise UsageError("The 'diffusion' stage needs init= (an encoder checkpoint), generator= (a generator with a "
                             "control copy) and generator_output= (where to write its trained copy).")
        backend = diffusion_backend(generator)
        image_size = backend.denoiser.config.sample_size
        subjects = [subject] if subject is not None else subjects
    data = load_training_data(responses, images, subjects, image_size=image_size)
    data = {s: {k: v for k, v in d.items() if k != "stim_ids"} for s, d in data.items()}
    if init is not None:
        system = load_checkpoint(init)
        system.hparams.lr = lr
        for s, d in data.items():
            if s not in system.encoder.n_voxels:
                system.encoder.add_subject(s, d["x"].shape[1])
    else:
        embed_dim = next(iter(data.values()))["embeds"].shape[1]
        enc = NeuroPictorEncoder({s: d["x"].shape[1] for s, d in data.items()}, embed_dim=embed_dim,
                                 **(encoder_kwargs or {}))
        system = NeuroPictorSystem(enc, lr=lr)
    if stage == "pretrain":
        pretrain(system, data, epochs=epochs, batch_size=batch_size, seed=seed)
    elif stage == "refine":
        refine(system, data, subject, epochs=epochs, batch_size=batch_size, seed=seed)
    else:
        for k in ("w_contrastive", "w_embed", "w_low", "w_text"):
            system.hparams[k] = float(aux_weight) * (1.0 if k != "w_text" or system.encoder.text_dim else 0.0)
        system.hparams.w_diffusion = 1.0
        system.backend = backend
        finetune_diffusion(system, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
        save_generator(backend, generator_output, overwrite=overwrite)
    return save_checkpoint(system, output, overwrite=overwrite,
                           extra={"stage": stage, "subjects": sorted(data), "epochs": epochs, "seed": seed,
                                  "responses": str(responses), "images": str(images)})


# --------------------------------------------------------------------------------------------
# Evaluation (MindEye's protocol, at our image size)
# --------------------------------------------------------------------------------------------
def _grey(images):
    x = np.asarray(images, np.float64)
    if x.ndim == 4:
        # (n, H, W, C) or (n, C, H, W): average the colour axis, whichever it is
        x = x.mean(-1) if x.shape[-1] in (1, 3) else x.mean(1)
    return x


def pixcorr(recon, true, *, per_image=False):
    """Mean per-image Pearson correlation of grey pixel values.

    Parameters
    ----------
    recon, true : ndarray, shape (n, H, W[, C]) or (n, C, H, W), values in [0, 1]
    per_image : bool
        Return the n per-image correlations instead of their mean (for paired comparisons).

    Returns
    -------
    float, or ndarray of shape (n,)
    """
    a = _grey(recon).reshape(len(recon), -1)
    b = _grey(true).reshape(len(true), -1)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    r = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return r if per_image else float(r.mean())


def ssim_score(recon, true, *, per_image=False):
    """Mean grey-level SSIM (Gaussian weights, sigma 1.5, as in MindEye's evaluation); ``per_image`` returns
    the n per-image values, shape (n,)."""
    from skimage.metrics import structural_similarity

    a, b = _grey(recon), _grey(true)
    side = min(a.shape[1:])
    if side < 3:
        raise UsageError(f"SSIM needs images of at least 3x3 pixels, got {a.shape[1:]}.")
    # The Gaussian window spans 11 px; smaller images fall back to the largest odd uniform window.
    kw = (dict(gaussian_weights=True, sigma=1.5) if side >= 11
          else dict(gaussian_weights=False, win_size=side if side % 2 else side - 1))
    v = np.array([structural_similarity(x, y, use_sample_covariance=False, data_range=1.0, **kw) for x, y in zip(a, b)])
    return v if per_image else float(v.mean())


def two_way_identification(pred, true, *, per_image=False):
    """Two-way identification: how often a prediction correlates more with its own target than with another.

    Parameters
    ----------
    pred, true : ndarray, shape (n, d)
        Features of the reconstructions (or decoded embeddings) and of the seen images.
    per_image : bool
        Return each item's fraction of distractors beaten, shape (n,), instead of the mean.

    Returns
    -------
    float, or ndarray of shape (n,)
        Mean over items of the fraction of distractors beaten (chance 0.5).
    """
    p = np.asarray(pred, np.float64)
    t = np.asarray(true, np.float64)
    p = (p - p.mean(1, keepdims=True)) / (p.std(1, keepdims=True) + 1e-12)
    t = (t - t.mean(1, keepdims=True)) / (t.std(1, keepdims=True) + 1e-12)
    r = p @ t.T / p.shape[1]
    n = len(r)
    if n < 2:
        raise UsageError("Two-way identification needs at least 2 items.")
    own = np.diag(r)[:, None]
    beaten = (own > r).sum(1) / (n - 1)  # the diagonal never counts: own > own is False
    return beaten if per_image else float(beaten.mean())


def paired_difference(a, b, *, n_boot=10000, level=0.95, seed=0):
    """Mean paired difference ``a - b`` over items (groups) with a bootstrap confidence interval.

    Items are resampled with replacement. With several groups (e.g. one row per benchmark seed), images
    are resampled within each group and the group means are averaged, so every seed weighs the same.

    Parameters
    ----------
    a, b : ndarray, shape (n,) or (n_groups, n)
        Per-item scores of two methods on the same items (e.g. per-image two-way identification of two
        reconstructions of the same test images).
    n_boot : int
    level : float
        Coverage of the percentile interval.
    seed : int

    Returns
    -------
    dict
        ``mean``, ``low``, ``high`` (the interval), ``p_le_0`` (fraction of bootstrap means <= 0) and ``n``.
    """
    a = np.atleast_2d(np.asarray(a, np.float64))
    b = np.atleast_2d(np.asarray(b, np.float64))
    if a.shape != b.shape or a.shape[1] < 2:
        raise UsageError(f"Paired scores need the same shape with at least 2 items per group; got {a.shape} and {b.shape}.")
    d = a - b
    rng = np.random.default_rng(seed)
    g, n = d.shape
    idx = rng.integers(0, n, size=(n_boot, g, n))
    boot = np.take_along_axis(np.broadcast_to(d, (n_boot, g, n)), idx, axis=2).mean(2).mean(1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(d.mean(1).mean()), "low": float(lo), "high": float(hi), "p_le_0": float((boot <= 0).mean()),
            "n": int(g * n)}


# --------------------------------------------------------------------------------------------
# Reconstruction from files (``neurodecode reconstruct --modality fmri``)
# --------------------------------------------------------------------------------------------
def reconstruct_fmri(checkpoint, generator, responses, output_dir, *, subject=None, levels=("high", "low"),
                     num_inference_steps=20, guidance_scale=2.0, seed=0, images=None, overwrite=False):
    """Decode fMRI responses with a NeuroPictor checkpoint and generate images with the shared backend.

    Parameters
    ----------
    checkpoint : path-like
        NeuroPictor encoder (:func:`save_checkpoint`).
    generator : path-like
        Generation backend weights (``BrainToImagePipeline.save_weights``).
    responses : path-like
        NSD-style HDF5 (:func:`neurodecode.datasets.fmri.read_nsd_responses`); repeated trials of
        the same stimulus are averaged first.
    output_dir : path-like
        Folder for ``stim-<id>.png`` files and ``report.json``; created; an existing non-empty
        folder is refused unless ``overwrite``.
    subject : str | None
        Subject group in ``responses`` (and in the checkpoint).
    levels : tuple of {"high", "low"}
        Guidance levels used (ablation).
    images : path-like | None
        HDF5 with the seen ``images`` (n, C, H, W) in [0, 1] indexed by stim id; when given,
        PixCorr and SSIM are added to the report.

    Returns
    -------
    dict
        The report: per image its stim id, file, hallucination score and flag; energy; settings.
    """
    import h5py
    from PIL import Image

    from ..datasets.fmri import average_repeats, read_nsd_responses
    from ..decoders.neuropictor import backend_conditioning
    from ..generation.pipeline import BrainToImagePipeline

    out_dir = Path(output_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise UsageError(f"Refusing to write into {out_dir}: the folder is not empty. Pass overwrite=True (--overwrite).")
    system = load_checkpoint(checkpoint)
    enc = system.encoder.eval()
    pipe = BrainToImagePipeline.from_weights(generator)
    data = average_repeats(read_nsd_responses(responses, subject))
    subj = data.subject
    if subj not in enc.n_voxels:
        raise UsageError(
            f"Subject {subj!r} of {responses} has no input layer in {checkpoint} (it has {enc.subjects}); refine on it first."
        )
    cond = backend_conditioning(enc.encode(data.responses, subj, levels=tuple(levels)), pipe.denoiser)
    out = pipe(cond, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
               generator=torch.Generator().manual_seed(seed))
    recon = np.clip(out.images, 0, 1)  # (n, H, W, C)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for i, sid in enumerate(data.stim_ids):
        p = out_dir / f"stim-{int(sid):05d}.png"
        arr = (recon[i] * 255).round().astype(np.uint8)
        with atomic_path(p, overwrite=overwrite) as tmp:
            Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(tmp, format="PNG")
        flag = None if out.hallucinated is None else bool(out.hallucinated[i])
        items.append({"stim_id": int(sid), "file": p.name, "hallucination_score": float(out.hallucination_score[i]),
                      "hallucinated": flag, "n_repeats": int(data.meta["n_repeats"][i])})
    report = {"modality": "fmri", "decoder": "neuropictor", "subject": subj, "levels": list(levels),
              "checkpoint": str(checkpoint), "generator": str(generator), "responses": str(responses),
              "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale, "seed": seed,
              "energy": out.energy, "images": items}
    if images is not None:
        with h5py.File(images, "r") as f:
            truth = np.asarray(f["images"], np.float32)[data.stim_ids]
        if truth.ndim == 4 and truth.shape[1] in (1, 3):
            truth = truth.transpose(0, 2, 3, 1)
        if truth.shape[1:3] != recon.shape[1:3]:
            t = torch.as_tensor(truth).permute(0, 3, 1, 2)
            truth = F.interpolate(t, size=recon.shape[1:3], mode="area").permute(0, 2, 3, 1).numpy()
        report["metrics"] = {"PixCorr": pixcorr(recon, truth), "SSIM": ssim_score(recon, truth)}
    with atomic_path(out_dir / "report.json", overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return report


#: Shipped demo names: the simulated benchmark's sim-01 model (``neurodecode/weights``) and its test
#: responses, which hold real BOLD noise and so are rebuilt on demand into the user's cache
#: (:func:`neurodecode.datasets.simulated_fmri.neuropictor_demo_file`), never shipped.
SHIPPED = {"neuropictor-sim": "neuropictor_sim", "neuropictor-sim-demo": None}


def shipped_file(spec, suffix):
    """A path as given, or a shipped name -> its file.

    ``neuropictor-sim`` -> its file in neurodecode/weights; ``neuropictor-sim-demo`` -> the demo
    responses, regenerated into the cache on first use (needs the data folder, ``NEURODECODE_DATA``).
    """
    if Path(str(spec)).exists() or str(spec) not in SHIPPED:
        return spec
    if SHIPPED[str(spec)] is None:
        from ..datasets.simulated_fmri import neuropictor_demo_file

        return neuropictor_demo_file()
    return Path(__file__).resolve().parents[1] / "weights" / f"{SHIPPED[str(spec)]}{suffix}"


def fmri_conditioning(decoder, input_path, levels=("high", "low"), **_):
    """Handler of ``neurodecode reconstruct --modality fmri`` (see ``_cli/reconstruct.py``).

    Parameters
    ----------
    decoder : path-like
        NeuroPictor checkpoint (:func:`save_checkpoint`), or ``neuropictor-sim`` (shipped demo model).
    input_path : path-like
        NSD-style HDF5 responses of one subject, or ``neuropictor-sim-demo`` (the simulated test
        responses of the demo model's subject, rebuilt into the cache from the data folder on first use); ``file.h5#sub-02`` picks a subject in a multi-subject
        file. Repeats of a stimulus are averaged. When the file also holds a top-level ``images``
        dataset (n, H, W[, C]) or (n, C, H, W) indexed by stim id, those are returned as the seen images.
    levels : tuple of {"high", "low"}

    Returns
    -------
    conditioning : BrainConditioning
    seen : ndarray, shape (n, H, W[, C]) | None
    meta : dict
    """
    import h5py

    from ..datasets.fmri import average_repeats, read_nsd_responses

    path, _, subject = str(input_path).partition("#")
    path = shipped_file(path, ".h5")
    decoder = shipped_file(decoder, ".safetensors")
    data = average_repeats(read_nsd_responses(path, subject or None))
    system = load_checkpoint(decoder)
    enc = system.encoder.eval()
    if data.subject not in enc.n_voxels:
        raise UsageError(
            f"Subject {data.subject!r} of {path} has no input layer in {decoder} (it has {enc.subjects}); refine on it first."
        )
    cond = enc.encode(data.responses, data.subject, levels=tuple(levels))
    seen = None
    with h5py.File(path, "r") as f:
        if "images" in f:
            seen = np.asarray(f["images"])[data.stim_ids]
            if seen.ndim == 4 and seen.shape[1] in (1, 3) and seen.shape[-1] not in (1, 3):
                seen = seen.transpose(0, 2, 3, 1)
    meta = {"decoder": str(decoder), "subject": data.subject, "levels": list(levels),
            "stim_ids": data.stim_ids.tolist(), "n_repeats": data.meta["n_repeats"]}
    return cond, seen, meta
