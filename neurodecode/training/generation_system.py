"""Lightning system and data module that train the generation backend's denoisers.

``GenerationSystem`` receives its denoiser (ANN :class:`~neurodecode.generation.unet.ConditionalUNet` or
spiking :class:`~neurodecode.generation.spiking.SpikingUNet`) and trains it to predict the noise added by a
diffusers DDPM schedule (MSE on epsilon), dropping the conditioning on a fraction of samples so that
classifier-free guidance works at sampling time. For a spiking denoiser, the last ``tsm_finetune_fraction``
of the steps train only the temporal-wise scales ``p`` (the paper's short TSM fine-tune).

``GenerationDataModule`` pairs real images with conditioning vectors (image-encoder embeddings, or a
decoder's outputs), with an image-level split: ``train`` / ``calib`` (held out; hallucination calibration,
guidance choice) / ``test`` (final numbers only).
"""

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from diffusers import DDPMScheduler

from ..utils import UsageError


def image_split(labels, *, calib_fraction=0.1, test_fraction=0.2, seed=0):
    """Stratified image-level split into ``"train"``, ``"calib"`` and ``"test"``.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Concept of each image; every concept is spread over the three parts.
    calib_fraction, test_fraction : float
    seed : int

    Returns
    -------
    ndarray of str, shape (n,)
    """
    labels = np.asarray(labels)
    if not (0 <= calib_fraction < 1 and 0 < test_fraction < 1 and calib_fraction + test_fraction < 1):
        raise UsageError(
            f"Invalid split fractions: calib_fraction={calib_fraction} and test_fraction={test_fraction} must be in "
            "[0, 1) with a sum below 1."
        )
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), "train", dtype=object)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(idx)))
        n_cal = int(round(calib_fraction * len(idx)))
        split[idx[:n_test]] = "test"
        split[idx[n_test : n_test + n_cal]] = "calib"
    return split.astype(str)


def images_to_tensor(images, channels=1):
    """uint8 (n, H, W, 3) or float [0, 1] images -> float tensor (n, channels, H, W) in [-1, 1]."""
    x = np.asarray(images)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if channels == 1 and x.shape[-1] == 3:
        x = x.mean(-1, keepdims=True)
    if x.shape[-1] != channels:
        raise UsageError(f"Invalid images: expected {channels} channel(s), but got shape {x.shape}.")
    return torch.from_numpy(x * 2 - 1).permute(0, 3, 1, 2).contiguous()


class GenerationDataModule(L.LightningDataModule):
    """Images and their conditioning vectors, split by image.

    Parameters
    ----------
    images : ndarray, shape (n, H, W, 3) or (n, H, W), uint8 or float in [0, 1]
    embeds : ndarray, shape (n, d)
        Conditioning of each image (encoder embedding or decoder output).
    split : ndarray of str, shape (n,)
        ``"train"``, ``"calib"`` or ``"test"`` per image (see :func:`image_split`).
    channels : int
        Image channels the denoiser works on (1: grey).
    spatial_maps : ndarray, shape (n, C, h, w) | None
    batch_size : int
    seed : int
        Seeds the shuffling.
    autoencoder : str, path or diffusers autoencoder | None
        Latent-space training: a local ``AutoencoderKL``/``AutoencoderTiny`` folder (or the loaded model);
        images (with ``channels`` = its input channels) are encoded once to scaled latents, which become
        the denoiser's training samples (``part(...)["images"]`` then holds latents). Never downloads.
    """

    def __init__(self, images, embeds, split, channels=1, spatial_maps=None, batch_size=64, seed=0, autoencoder=None):
        super().__init__()
        if len(images) != len(embeds) or len(images) != len(split):
            raise UsageError(
                f"images ({len(images)}), embeds ({len(embeds)}) and split ({len(split)}) must have one entry per image."
            )
        self.x = images_to_tensor(images, channels)
        self.autoencoder = None
        if autoencoder is not None:
            from ..generation.latent import encode_latents, load_autoencoder

            self.autoencoder = load_autoencoder(autoencoder) if isinstance(autoencoder, (str, Path)) else autoencoder
            self.x = encode_latents(self.autoencoder, self.x)
        self.e = torch.as_tensor(np.asarray(embeds), dtype=torch.float32)
        self.maps = None if spatial_maps is None else torch.as_tensor(np.asarray(spatial_maps), dtype=torch.float32)
        self.split = np.asarray(split)
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    def part(self, name):
        """Tensors of one split part as a dict (images, embeds[, spatial_maps])."""
        m = torch.from_numpy(self.split == name)
        out = {"images": self.x[m], "embeds": self.e[m]}
        if self.maps is not None:
            out["spatial_maps"] = self.maps[m]
        return out

    def train_dataloader(self):
        from torch.utils.data import DataLoader, StackDataset

        d = self.part("train")
        ds = StackDataset(**d)
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=True, drop_last=True, generator=g)


class GenerationSystem(L.LightningModule):
    """Trains a conditional denoiser with the epsilon objective and conditioning dropout.

    Parameters
    ----------
    denoiser : ConditionalUNet or SpikingUNet
    num_train_timesteps : int
        Diffusion steps of the forward process.
    beta_schedule : str
        diffusers beta schedule ("linear", "scaled_linear", "squaredcos_cap_v2").
    cond_dropout : float
        Probability of replacing a sample's conditioning with the null vector (classifier-free guidance).
    cond_noise : float
        Gaussian noise (in standardised units) added to the conditioning during training, which makes the
        denoiser tolerant of a decoder's imperfect predictions.
    lr, weight_decay : float
        AdamW settings; the learning rate follows a cosine decay over ``trainer.max_steps``.
    warmup_steps : int
    tsm_finetune_fraction : float
        Spiking denoiser only: fraction of the final steps that train only the TSM scales.
    teacher : nn.Module | None
        A trained denoiser (e.g. the ANN U-Net) whose noise predictions, on the same noisy inputs and
        conditioning, are a second target (knowledge distillation; frozen, not saved with this system).
    distill_weight : float
        Weight ``w`` of the teacher term: loss = ``(1 - w) * MSE(pred, noise) + w * MSE(pred, teacher)``.
    """

    def __init__(
        self,
        denoiser,
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        cond_dropout=0.1,
        cond_noise=0.0,
        lr=2e-3,
        weight_decay=0.0,
        warmup_steps=100,
        tsm_finetune_fraction=0.0,
        teacher=None,
        distill_weight=0.0,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["denoiser", "teacher"])
        if not 0 <= distill_weight <= 1 or (distill_weight > 0 and teacher is None):
            raise UsageError(
                f"Invalid value for 'distill_weight': expected a number in [0, 1] (above 0 only with a teacher), "
                f"but got {distill_weight}."
            )
        self.denoiser = denoiser
        # Kept out of the module tree: the teacher is neither trained nor saved in checkpoints.
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)
        cfg = getattr(denoiser, "config", {})
        if cfg.get("output_skip") and (cfg.get("num_train_timesteps"), cfg.get("beta_schedule")) != (
                num_train_timesteps, beta_schedule):
            raise UsageError(
                f"The denoiser's preconditioned output assumes the schedule ({cfg.get('num_train_timesteps')}, "
                f"{cfg.get('beta_schedule')!r}) but the system trains with ({num_train_timesteps}, {beta_schedule!r})."
            )
        self._tsm_phase = False

    def scheduler_config(self):
        """The training noise schedule (the samplers must use the same betas)."""
        return dict(self.noise_scheduler.config)

    def loss(self, batch):
        x0 = batch["images"]
        b = x0.shape[0]
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.hparams.num_train_timesteps, (b,), device=x0.device)
        xt = self.noise_scheduler.add_noise(x0, noise, t)
        e = batch["embeds"]
        if self.hparams.cond_noise > 0:
            e = e + self.hparams.cond_noise * self.denoiser.cond_std * torch.randn_like(e)
        drop = torch.rand(b, device=x0.device) < self.hparams.cond_dropout
        maps = batch.get("spatial_maps")
        pred = self.denoiser(xt, t, e, spatial_maps=maps, drop_mask=drop)
        loss = torch.nn.functional.mse_loss(pred, noise)
        w = self.hparams.distill_weight
        if w > 0:
            with torch.no_grad():
                target = self._teacher[0](xt, t, e, spatial_maps=maps, drop_mask=drop)
            loss = (1 - w) * loss + w * torch.nn.functional.mse_loss(pred, target)
        return loss

    def on_fit_start(self):
        # The denoiser standardises its conditioning with the training set's statistics.
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "part") and hasattr(self.denoiser, "set_conditioning_stats"):
            self.denoiser.set_conditioning_stats(dm.part("train")["embeds"])

    def on_train_batch_start(self, batch, batch_idx):
        f = self.hparams.tsm_finetune_fraction
        if f > 0 and not self._tsm_phase and hasattr(self.denoiser, "tsm_parameters"):
            if self.global_step >= int((1 - f) * self.trainer.max_steps):
                # TSM fine-tune: everything else frozen, only the per-step scales p learn.
                tsm = {id(p) for p in self.denoiser.tsm_parameters()}
                for p in self.denoiser.parameters():
                    p.requires_grad_(id(p) in tsm)
                self._tsm_phase = True

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.denoiser.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(int(self.trainer.max_steps), 1) if self.trainer is not None and self.trainer.max_steps > 0 else 10000
        warm = self.hparams.warmup_steps
        # Cosine decay over the main phase; the TSM fine-tune (if any) runs at a tenth of the peak rate.
        main = int(total * (1 - self.hparams.tsm_finetune_fraction))

        def lam(step):
            if step < warm:
                return (step + 1) / warm
            if step >= main:
                return 0.1
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, main - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class ImageEmbeddingDataModule(GenerationDataModule):
    """Real offline images conditioned on the default image encoder's embeddings (YAML-friendly).

    Parameters
    ----------
    image_source : str
        An image set of :func:`neurodecode.datasets.paired.load_image_set` ("digits", "photos", "faces").
    encoded_size : int
        Side of the images given to the encoder (which resizes them to its own input size).
    model_size : int
        Side of the images the denoiser generates (area-averaged from ``encoded_size``; must divide it).
    encoder : str
        Image encoder name (see :func:`neurodecode.decoders.image_encoders.get_image_encoder`).
    cache_dir : str | None
        HDF5 embedding cache.
    calib_fraction, test_fraction, split_seed
        See :func:`image_split`.
    channels, batch_size, seed, autoencoder
        See :class:`GenerationDataModule` (with an autoencoder, ``model_size`` is the side of the images it
        encodes, not of the latents).
    """

    def __init__(self, image_source="digits", encoded_size=16, model_size=8, encoder="efficientnet_lite0",
                 cache_dir=None, calib_fraction=0.1, test_fraction=0.2, split_seed=0, channels=1, batch_size=32, seed=0,
                 autoencoder=None):
        from ..datasets.paired import load_image_set
        from ..decoders.image_encoders import encode_cached, get_image_encoder

        if encoded_size % model_size:
            raise UsageError(f"'model_size' ({model_size}) must divide 'encoded_size' ({encoded_size}).")
        s = load_image_set(image_source, size=encoded_size)
        embeds = encode_cached(get_image_encoder(encoder), s.images, cache_dir=cache_dir)
        f = encoded_size // model_size
        x = s.images.astype(np.float32) / 255.0
        x = x.reshape(len(x), model_size, f, model_size, f, x.shape[-1]).mean((2, 4))
        split = image_split(s.labels, calib_fraction=calib_fraction, test_fraction=test_fraction, seed=split_seed)
        super().__init__(x, embeds, split, channels=channels, batch_size=batch_size, seed=seed, autoencoder=autoencoder)
        self.labels = s.labels
