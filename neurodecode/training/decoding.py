"""Lightning training of trial classifiers: :class:`DecodingSystem`, data modules, and ``fit_predict``.

The system receives its parts (a decoder, a loss, an optimizer class) and keeps only
JSON-primitive hyper-parameters, so that LightningCLI configs and ``weights_only`` checkpoints
work. A decoder given by registry name is built once the data module knows the signal shape.
"""

import importlib
import logging
import time
import warnings
from pathlib import Path
from typing import Optional, Union

import lightning as L
import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..decoders._registry import create_decoder
from ..utils import UsageError, seed_everything

logger = logging.getLogger("neurodecode")


def _resolve_optimizer(optimizer):
    if isinstance(optimizer, str):
        mod, _, name = optimizer.rpartition(".")
        try:
            return getattr(importlib.import_module(mod or "torch.optim"), name)
        except (ImportError, AttributeError) as err:
            raise UsageError(
                f"Invalid value for the 'optimizer' parameter: {optimizer!r} is not an importable class "
                "(e.g. 'torch.optim.AdamW')."
            ) from err
    return optimizer


class DecodingSystem(L.LightningModule):
    """Supervised trial classification.

    Parameters
    ----------
    decoder : str | torch.nn.Module
        A registry name (``"dbconformer"``, ``"eegnet"`` ...; built in :meth:`configure_model` from
        the data module's ``signal_kwargs()`` and ``decoder_kwargs``) or a ready module mapping
        ``(batch, n_chans, n_times)`` to logits ``(batch, n_classes)``.
    decoder_kwargs : dict | None
        Extra arguments of the registered decoder (e.g. ``{"num_heads": 10}``).
    loss : torch.nn.Module | None
        Default cross-entropy.
    optimizer : str | type
        Optimizer class or its dotted name (default Adam, as in the DBConformer paper).
    lr, weight_decay : float
    """

    def __init__(self, decoder: Union[str, nn.Module] = "dbconformer", decoder_kwargs: Optional[dict] = None,
                 loss: Optional[nn.Module] = None, optimizer: Union[str, type] = "torch.optim.Adam",
                 lr: float = 1e-3, weight_decay: float = 0.0):
        super().__init__()
        primitive = isinstance(decoder, str)
        self.save_hyperparameters(ignore=[] if primitive else ["decoder", "loss"])
        if not primitive and not isinstance(decoder, nn.Module):
            raise UsageError(f"Invalid value for the 'decoder' parameter: expected a name or a torch Module, got {type(decoder).__name__}.")
        self.decoder_name = decoder if primitive else type(decoder).__name__
        # Command-line overrides of dict entries arrive as strings ("1"); read them as YAML scalars.
        self.decoder_kwargs = {k: yaml.safe_load(v) if isinstance(v, str) else v
                               for k, v in (decoder_kwargs or {}).items()}
        self.decoder = None if primitive else decoder
        self.loss = loss if loss is not None else nn.CrossEntropyLoss()
        self.optimizer_cls = _resolve_optimizer(optimizer)
        self.lr = lr
        self.weight_decay = weight_decay

    def configure_model(self):
        if self.decoder is not None:
            return
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "signal_kwargs"):
            raise UsageError(
                f"DecodingSystem(decoder={self.decoder_name!r}) needs a data module with signal_kwargs() to size the model."
            )
        self.decoder = create_decoder(self.decoder_name, **dm.signal_kwargs(), **self.decoder_kwargs)

    def forward(self, x):
        return self.decoder(x)

    def _step(self, batch, stage):
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log(f"{stage}_loss", loss, prog_bar=stage != "train", batch_size=len(y))
        self.log(f"{stage}_acc", acc, prog_bar=True, batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x).argmax(1)

    def configure_optimizers(self):
        return self.optimizer_cls(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def _loader(X, y, batch_size, shuffle, seed):
    ds = TensorDataset(torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long))
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=0)


class ArrayDataModule(L.LightningDataModule):
    """Data module over in-memory trials (already preprocessed and, if wanted, aligned).

    Parameters
    ----------
    X_train, y_train : ndarray (n, n_chans, n_times), (n,)
    X_val, y_val : ndarray | None  validation trials (monitoring only; never used to select)
    sfreq : float | None
    batch_size, seed : int
    """

    def __init__(self, X_train, y_train, X_val=None, y_val=None, *, sfreq=None, n_outputs=None, batch_size=32, seed=0):
        super().__init__()
        self.X_train, self.y_train, self.X_val, self.y_val = X_train, y_train, X_val, y_val
        self.sfreq = sfreq
        self.n_outputs = int(n_outputs or (int(np.max(y_train)) + 1))
        self.batch_size = batch_size
        self.seed = seed

    def signal_kwargs(self):
        return {"n_chans": self.X_train.shape[1], "n_times": self.X_train.shape[2], "sfreq": self.sfreq,
                "n_outputs": self.n_outputs}

    def train_dataloader(self):
        return _loader(self.X_train, self.y_train, self.batch_size, True, self.seed)

    def val_dataloader(self):
        if self.X_val is None:
            return None
        return _loader(self.X_val, self.y_val, self.batch_size, False, self.seed)

    def test_dataloader(self):
        return self.val_dataloader()


class MotorImageryDataModule(ArrayDataModule):
    """eegmmidb motor-imagery trials for ``neurodecode train`` (LightningCLI).

    Parameters
    ----------
    data_dir : str | None
        eegmmidb layout folder; default ``$NEURODECODE_DATA/eegmmidb``.
    train_subjects, val_subjects : list of str | None
        Subjects to train on and to monitor on (cross-subject); default: all but the last
        subject train, the last one is monitored. The monitored subject never drives selection:
        training runs a fixed number of epochs.
    task, channels, l_freq, h_freq, resample_sfreq, tmin, tmax
        The recipe (see :mod:`neurodecode.datasets.motor_imagery`).
    euclidean_alignment : bool
        Align each subject with its own reference (label-free).
    cache_dir : str | None
    batch_size, seed : int
    """

    def __init__(self, data_dir: Optional[str] = None, train_subjects: Optional[list] = None,
                 val_subjects: Optional[list] = None, task: str = "left_right", channels: str = "motor",
                 l_freq: float = 8.0, h_freq: float = 30.0, resample_sfreq: float = 64.0, tmin: float = 0.5,
                 tmax: float = 3.5, euclidean_alignment: bool = True, cache_dir: Optional[str] = None,
                 batch_size: int = 32, seed: int = 0):
        from ..datasets.motor_imagery import load_motor_imagery
        from .euclidean_alignment import align_per_group

        subjects = None
        if train_subjects is not None:
            subjects = list(train_subjects) + list(val_subjects or [])
        data = load_motor_imagery(data_dir, subjects=subjects, cache_dir=cache_dir, task=task, channels=channels,
                                  l_freq=l_freq, h_freq=h_freq, sfreq=resample_sfreq, tmin=tmin, tmax=tmax)
        X = align_per_group(data.X, data.subject) if euclidean_alignment else data.X
        subs = data.subjects
        if val_subjects is None:
            val_subjects = [s for s in subs if s not in (train_subjects or [])] if train_subjects else subs[-1:]
        val_subjects = [s if str(s).startswith("S") else f"S{int(s):03d}" for s in val_subjects]
        val = np.isin(data.subject, val_subjects)
        super().__init__(X[~val], data.y[~val], X[val] if val.any() else None, data.y[val] if val.any() else None,
                         sfreq=data.sfreq, n_outputs=len(data.classes), batch_size=batch_size, seed=seed)
        self.data = data


def count_parameters(model):
    """Trainable parameters of a torch module (0 for scikit-learn pipelines)."""
    if isinstance(model, nn.Module):
        return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    return 0


def _quiet_trainer(**kw):
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, **kw)


def fit_predict(model_name, X_train, y_train, X_test, *, sfreq, n_outputs, model_kwargs=None, epochs=25,
                batch_size=32, lr=1e-3, seed=0):
    """Train ``model_name`` on the training trials and predict the test trials.

    Neural decoders train for exactly ``epochs`` epochs (no early stopping, no look at the test
    trials); scikit-learn pipelines are fitted once.

    Returns
    -------
    y_pred : ndarray (n_test,)
    n_params : int
    train_time_s : float
    """
    seed_everything(seed)
    torch.manual_seed(seed)
    kw = {"n_chans": X_train.shape[1], "n_times": X_train.shape[2], "sfreq": sfreq, "n_outputs": n_outputs}
    model = create_decoder(model_name, **kw, **(model_kwargs or {}))
    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        import mne

        with mne.utils.use_log_level("warning"):  # CSP logs every covariance estimate otherwise
            model.fit(X_train.astype(np.float64), y_train)
            train_time = time.perf_counter() - t0
            return np.asarray(model.predict(X_test.astype(np.float64))), 0, train_time
    system = DecodingSystem(model, lr=lr)
    dm = ArrayDataModule(X_train, y_train, sfreq=sfreq, n_outputs=n_outputs, batch_size=batch_size, seed=seed)
    trainer = _quiet_trainer(max_epochs=epochs, limit_val_batches=0, num_sanity_val_steps=0)
    with warnings.catch_warnings():
        # num_workers=0 is deliberate: one core per process, data already in memory.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own internal deprecation
        trainer.fit(system, datamodule=dm)
    train_time = time.perf_counter() - t0
    system.eval()
    with torch.no_grad():
        preds = [system(xb).argmax(1) for xb, _ in _loader(X_test, np.zeros(len(X_test)), 256, False, seed)]
    return torch.cat(preds).numpy(), count_parameters(model), train_time


def _root_dir_override(config, overrides):
    """``--trainer.default_root_dir`` for a config that names none, else nothing.

    Without a logger Lightning's log directory is the working directory, so LightningCLI would
    write (and, on a rerun, replace) ``config.yaml`` wherever the user happens to stand; each
    pipeline gets its own folder under ``results/train/`` instead.
    """
    if any(o.startswith("--trainer.default_root_dir") for o in overrides):
        return []
    try:
        cfg = yaml.safe_load(Path(config).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []  # LightningCLI reports an unreadable config itself
    trainer = cfg.get("trainer") if isinstance(cfg, dict) else None
    if isinstance(trainer, dict) and trainer.get("default_root_dir"):
        return []
    return [f"--trainer.default_root_dir={Path('results') / 'train' / Path(config).stem}"]


def run_lightning_cli(config, overrides=()):
    """Run ``LightningCLI fit`` with ``config`` (YAML path) and ``--key=value`` ``overrides``; return the CLI.

    A config without ``trainer.default_root_dir`` runs in ``results/train/<config stem>/``.
    """
    from lightning.pytorch.cli import LightningCLI

    torch.set_num_threads(1)
    overrides = [*overrides, *_root_dir_override(config, list(overrides))]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")  # small data sets
        # sys.argv holds the neurodecode command line, already parsed into ``overrides``.
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        return LightningCLI(
            L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
            args=["fit", "--config", str(config), *overrides], save_config_kwargs={"overwrite": True},
        )
