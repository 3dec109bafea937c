"""Lightning training of hvEEGNet / vEEGNet on eegmmidb windows, then calibration and export.

Run (the shipped weights were made this way)::

    python -m neurodecode.training.hveegnet_system --config pipelines/hveegnet_eegmmidb.yaml \
        --out neurodecode/weights/hveegnet_eegmmidb.safetensors

Data: PhysioNet eegmmidb motor-imagery runs R04/R08/R12, the 19 10-20 channels, resampled to
128 Hz, non-overlapping 1 s windows (demeaned per channel, in uV). Subject-wise split: the
subjects of ``train_subjects`` for training and calibration, ``val_subjects`` for model
selection (best validation loss), and the remaining subjects (S009-S011 by default) are never
touched here: they are the benchmark's held-out test set.
"""

import argparse
import importlib
import logging
import time
from pathlib import Path

import numpy as np
import torch

try:
    import lightning as L
except ImportError:  # pragma: no cover
    import pytorch_lightning as L

from ..artifacts.hveegnet import CALIBRATION_BUFFERS, HVEEGNet
from ..utils import InputFileError, data_dir

logger = logging.getLogger("neurodecode")

__all__ = ["eegmmidb_windows", "HVEEGNetDataModule", "HVEEGNetSystem", "train"]


def eegmmidb_windows(model, subjects, runs=(4, 8, 12), root=None, stride_s=None):
    """Model-ready windows from eegmmidb runs.

    Parameters
    ----------
    model : HVEEGNet
        Gives channels, rate and window length.
    subjects : sequence of int
    runs : sequence of int
    root : path-like | None
        The eegmmidb folder (default ``data_dir() / "eegmmidb"``).
    stride_s : float | None
        Window step in seconds (default: one window, no overlap).

    Returns
    -------
    windows : ndarray, shape (n_windows, n_chans, n_times), float32, uV
    groups : ndarray, shape (n_windows,)
        Recording of each window, ``100 * subject + run``.
    """
    from ..io import read_raw
    from ..artifacts.hveegnet import match_channels

    root = Path(root) if root is not None else data_dir() / "eegmmidb"
    stride = int(round(stride_s * model.sfreq)) if stride_s else None
    out, groups = [], []
    for s in subjects:
        for r in runs:
            path = root / f"S{s:03d}" / f"S{s:03d}R{r:02d}.edf"
            if not path.is_file():
                raise InputFileError(f"{path}: eegmmidb run not found (see shared/data/MANIFEST.md).")
            raw = read_raw(path, preload=True)
            picks, _ = match_channels(raw.info, model.ch_names, source=str(path))
            w, _ = model.windows_from_array(raw.get_data(picks=picks), raw.info["sfreq"], stride=stride)
            out.append(w)
            groups.append(np.full(len(w), 100 * s + r))
    return np.concatenate(out), np.concatenate(groups)


class HVEEGNetDataModule(L.LightningDataModule):
    """eegmmidb windows with a subject-wise train/validation split.

    Parameters
    ----------
    train_subjects, val_subjects : list of int
    runs : list of int
    windows_per_epoch : int
        Training windows drawn (without replacement) per epoch; bounds an epoch's cost
        because soft-DTW is O(T^2) per channel.
    val_windows : int
        Fixed random subset of validation windows (seeded).
    batch_size : int
    seed : int
    """

    def __init__(
        self,
        train_subjects: list = (1, 2, 3, 4, 5, 6, 7),
        val_subjects: list = (8,),
        runs: list = (4, 8, 12),
        windows_per_epoch: int = 1024,
        val_windows: int = 256,
        batch_size: int = 32,
        seed: int = 0,
    ):
        super().__init__()
        self.train_subjects, self.val_subjects, self.runs = list(train_subjects), list(val_subjects), list(runs)
        self.windows_per_epoch, self.val_windows = windows_per_epoch, val_windows
        self.batch_size, self.seed = batch_size, seed
        self.model_ref = None

    def setup_for(self, model):
        if getattr(self, "train_x", None) is not None:
            return
        self.train_x, self.train_groups = eegmmidb_windows(model, self.train_subjects, self.runs)
        val_x, _ = eegmmidb_windows(model, self.val_subjects, self.runs)
        rng = np.random.default_rng(self.seed)
        self.val_x = val_x[rng.permutation(len(val_x))[: self.val_windows]]
        logger.info("hvEEGNet data: %d train windows, %d val windows", len(self.train_x), len(self.val_x))

    def train_dataloader(self):
        x = torch.from_numpy(self.train_x)
        sampler = torch.utils.data.RandomSampler(
            x, replacement=False, num_samples=min(self.windows_per_epoch, len(x)),
            generator=torch.Generator().manual_seed(self.seed),
        )
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=self.batch_size, sampler=sampler)

    def val_dataloader(self):
        x = torch.from_numpy(self.val_x)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=64)


class HVEEGNetSystem(L.LightningModule):
    """Lightning system around an :class:`HVEEGNet` (AdamW + exponential LR decay, as in the paper).

    Parameters
    ----------
    model : HVEEGNet
    lr : float
    weight_decay : float
    lr_gamma : float
        Per-epoch multiplicative LR decay.
    sse_warmup_epochs : int
        First epochs trained with the squared-error reconstruction term instead of soft-DTW
        (a CPU-time saving: soft-DTW costs O(T^2) per channel, squared error O(T)). Validation
        and model selection always use the paper's soft-DTW loss.
    """

    def __init__(
        self, model: HVEEGNet, lr: float = 1e-2, weight_decay: float = 1e-2, lr_gamma: float = 0.999,
        sse_warmup_epochs: int = 0,
    ):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.lr_gamma = lr, weight_decay, lr_gamma
        self.sse_warmup_epochs = sse_warmup_epochs

    def training_step(self, batch, batch_idx):
        kind = "sse" if self.current_epoch < self.sse_warmup_epochs else "soft_dtw"
        total, rec, kl = self.model.loss(batch[0], recon_loss=kind)
        self.log_dict({"train_loss": total, "train_recon": rec, "train_kl": kl}, prog_bar=True, batch_size=len(batch[0]))
        return total

    def validation_step(self, batch, batch_idx):
        total, rec, kl = self.model.loss(batch[0])
        self.log_dict({"val_loss": total, "val_recon": rec, "val_kl": kl}, prog_bar=True, batch_size=len(batch[0]))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.ExponentialLR(opt, gamma=self.lr_gamma)}


def _build(config_path):
    """Instantiate model, system, data module and trainer settings from a pipeline YAML."""
    import yaml
    from jsonargparse import ArgumentParser

    # import by name so the classes are the same objects under ``python -m`` (where this file is __main__)
    mod = importlib.import_module("neurodecode.training.hveegnet_system")
    parser = ArgumentParser()
    parser.add_argument("--seed_everything", type=int, default=0)
    parser.add_subclass_arguments(mod.HVEEGNetSystem, "model")
    parser.add_class_arguments(mod.HVEEGNetDataModule, "data")
    parser.add_argument("--trainer", type=dict, default={})
    cfg = parser.parse_path(config_path)
    init = (parser.instantiate if hasattr(parser, "instantiate") else parser.instantiate_classes)(cfg)
    return init, yaml.safe_load(Path(config_path).read_text())


def load_network_weights(model, path):
    """Fine-tuning start: load the network weights of a saved hvEEGNet into ``model`` (same architecture).

    The calibration buffers (:data:`~neurodecode.artifacts.hveegnet.CALIBRATION_BUFFERS`) are
    left as they are: ``train`` recalibrates after training, and files saved before the spatial
    map existed do not have it.
    """
    from ..utils import read_safetensors

    state, _ = read_safetensors(path, what="hvEEGNet weights")
    net = {k: v for k, v in state.items() if k not in CALIBRATION_BUFFERS}
    missing, unexpected = model.load_state_dict(net, strict=False)
    if unexpected or set(missing) - set(CALIBRATION_BUFFERS):
        raise InputFileError(
            f"{path}: does not match the configured architecture "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})."
        )
    return model


def train(config_path, out, *, overwrite=False, max_epochs=None, log_dir=None, init_weights=None):
    """Train from a pipeline YAML, keep the best-validation weights, calibrate, save safetensors.

    Returns
    -------
    model : HVEEGNet
    info : dict
        Data sizes, best validation loss, wall time.
    """
    from ..utils import seed_everything

    t0 = time.time()
    init, _ = _build(config_path)
    seed_everything(init.seed_everything)
    system, dm = init.model, init.data
    if init_weights is not None:
        load_network_weights(system.model, init_weights)
    dm.setup_for(system.model)
    trainer_kw = dict(init.trainer)
    if max_epochs is not None:
        trainer_kw["max_epochs"] = max_epochs
    ckpt = L.pytorch.callbacks.ModelCheckpoint(monitor="val_loss", mode="min", save_top_k=1, save_weights_only=True) \
        if hasattr(L, "pytorch") else L.callbacks.ModelCheckpoint(monitor="val_loss", mode="min", save_top_k=1, save_weights_only=True)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, callbacks=[ckpt], default_root_dir=log_dir or "results/hveegnet",
        enable_model_summary=False, **trainer_kw,
    )
    trainer.fit(system, datamodule=dm)
    best = torch.load(ckpt.best_model_path, weights_only=True, map_location="cpu")["state_dict"]
    system.load_state_dict(best)
    model = system.model.eval()
    model.calibrate(dm.train_x, groups=dm.train_groups)
    info = {
        "train_windows": len(dm.train_x), "val_windows": len(dm.val_x),
        "best_val_loss": float(ckpt.best_model_score) if ckpt.best_model_score is not None else float("nan"),
        "epochs": trainer.current_epoch, "wall_s": round(time.time() - t0, 1), "seed": init.seed_everything,
        "threshold": float(model.threshold), "config_file": str(config_path),
        "init_weights": str(init_weights) if init_weights is not None else None,
    }
    model.save_pretrained(out, metadata={"training": __import__("json").dumps(info)}, overwrite=overwrite)
    return model, info


def main(argv=None):
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="pipelines/hveegnet_*.yaml")
    p.add_argument("--out", required=True, help="output .safetensors")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--log-dir", default=None, help="Lightning log folder (default results/hveegnet)")
    p.add_argument("--init-weights", default=None, metavar="WEIGHTS",
                   help="Start from the network weights of WEIGHTS (fine-tuning) instead of a random init.")
    p.add_argument("--calibrate-only", default=None, metavar="WEIGHTS",
                   help="Do not train: load WEIGHTS, recalibrate on the config's training subjects, save to --out.")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.calibrate_only:
        import json

        from safetensors import safe_open

        init, _ = _build(args.config)
        model = HVEEGNet.from_pretrained(args.calibrate_only)
        # the score's features are part of the calibration: take them from the config
        model.set_score_features(init.model.model.score_features)
        model.set_spatial(init.model.model.spatial)
        x, groups = eegmmidb_windows(model, init.data.train_subjects, init.data.runs)
        model.calibrate(x, groups=groups)
        with safe_open(str(args.calibrate_only), framework="pt") as f:
            meta = dict(f.metadata() or {})
        info = json.loads(meta.get("training", "{}"))
        info.update(threshold=float(model.threshold), score_features=list(model.score_features), spatial=model.spatial,
                    calibration="recalibrated per recording (reference=%s)" % model.reference)
        meta["training"] = json.dumps(info)
        meta.pop("config", None), meta.pop("format", None)
        model.save_pretrained(args.out, metadata=meta, overwrite=args.overwrite)
        print(info)
        return
    _, info = train(args.config, args.out, overwrite=args.overwrite, max_epochs=args.max_epochs, log_dir=args.log_dir,
                    init_weights=args.init_weights)
    print(info)


if __name__ == "__main__":
    main()
