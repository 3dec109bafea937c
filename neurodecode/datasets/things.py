"""Readers for the public paired brain/image layouts users have.

All return :class:`~neurodecode.datasets.paired.PairedBrainImageData`, the same object the simulated
benchmark gives, so the decoders, the Lightning data module and the evaluation run unchanged.

- :func:`read_things_eeg2`: THINGS-EEG2 (Gifford et al. 2022) preprocessed arrays:
  ``sub-XX/preprocessed_eeg_training.npy`` and ``preprocessed_eeg_test.npy`` (each a NumPy-saved dict
  with ``preprocessed_eeg_data`` (n_images, n_repetitions, n_chans, n_times), ``ch_names``, ``times``)
  and ``image_metadata.npy`` (``train_img_concepts``, ``train_img_files``, ``test_img_concepts``,
  ``test_img_files``), images under ``training_images/<concept>/<file>`` and
  ``test_images/<concept>/<file>``.
- :func:`read_things_meg`: THINGS-MEG (Hebart et al. 2023) preprocessed epochs (``-epo.fif``) plus
  the per-participant sample-attribute table (CSV/TSV with the image path, trial type
  ``exp``/``test``/``catch`` and the concept number).
- :func:`read_image_table`: any epochs file (``-epo.fif``) or array file (``.npz`` with ``X``,
  ``sfreq``, ``ch_names``) whose trials are the rows of a stimulus table naming the image file of each
  trial (and optionally its split and concept).

The THINGS-EEG2 files are NumPy pickles (their published format): ``allow_pickle`` is needed to read
them, which can run code from a malicious file, so only read files from the official release.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..utils import InputFileError, UsageError
from .paired import PairedBrainImageData

__all__ = ["read_things_eeg2", "read_things_meg", "read_image_table", "load_image_files"]


def load_image_files(paths, size=None):
    """Read image files into uint8 ``(n, size, size, 3)`` (RGB; grey is repeated).

    Parameters
    ----------
    paths : list of path-like
    size : int | None
        Resize to ``size`` x ``size``; ``None`` requires all images to share a shape.
    """
    from skimage.io import imread
    from skimage.transform import resize

    out = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise InputFileError(f"Image file {p} named in the stimulus table does not exist.")
        try:
            im = imread(p)
        except Exception as err:
            raise InputFileError(f"Could not read image {p}: {err}") from err
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=-1)
        im = im[..., :3]
        if im.dtype != np.uint8:
            im = np.clip(np.round(255 * im / max(float(im.max()), 1e-12)), 0, 255).astype(np.uint8)
        if size is not None and im.shape[:2] != (size, size):
            im = np.clip(np.round(resize(im, (size, size), anti_aliasing=True, preserve_range=True)), 0, 255)
            im = im.astype(np.uint8)
        out.append(im)
    shapes = {im.shape for im in out}
    if len(shapes) > 1:
        raise UsageError(f"Images have different shapes {sorted(shapes)[:3]}...; pass image_size to resize them.")
    return np.stack(out)


def _load_pickled_dict(path, keys):
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"THINGS-EEG2 file {path} does not exist.")
    try:
        obj = np.load(path, allow_pickle=True)
        obj = obj.item() if isinstance(obj, np.ndarray) and obj.dtype == object and obj.ndim == 0 else obj
    except Exception as err:
        raise InputFileError(f"Could not read {path} as a THINGS-EEG2 NumPy file: {err}") from err
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise InputFileError(f"{path} is not a THINGS-EEG2 file: expected the keys {list(keys)}, found {have}.")
    return obj


def read_things_eeg2(root, subject=1, *, average_repetitions=True, load_images=False, image_size=None):
    """Read one THINGS-EEG2 subject's preprocessed data with its image list.

    Parameters
    ----------
    root : path-like
        Folder holding ``sub-XX/`` (or ``preprocessed_data/sub-XX/``), ``image_metadata.npy`` (or
        ``image_set/image_metadata.npy``) and, for ``load_images``, the image folders.
    subject : int
        Subject number (1-10).
    average_repetitions : bool
        Average the repetitions of each image (the usual protocol: train 4 -> 1, test 80 -> 1);
        otherwise every repetition is a trial.
    load_images : bool
        Also read the images (needed for embedding them and for the blur prior).
    image_size : int | None
        Resize loaded images.

    Returns
    -------
    PairedBrainImageData
        Image rows: training images first, then test images; ``image_labels`` index concepts, test
        concepts are disjoint from training concepts in the official split.
    """
    root = Path(root)
    sub = f"sub-{int(subject):02d}"
    cands = [root / sub, root / "preprocessed_data" / sub]
    sdir = next((c for c in cands if c.is_dir()), None)
    if sdir is None:
        raise InputFileError(f"No THINGS-EEG2 folder for {sub} under {root} (looked for {[str(c) for c in cands]}).")
    meta_path = next((p for p in (root / "image_metadata.npy", root / "image_set" / "image_metadata.npy")
                      if p.is_file()), root / "image_metadata.npy")
    meta = _load_pickled_dict(meta_path, ("train_img_concepts", "train_img_files", "test_img_concepts",
                                          "test_img_files"))
    parts = {}
    for split, fname in (("train", "preprocessed_eeg_training.npy"), ("test", "preprocessed_eeg_test.npy")):
        d = _load_pickled_dict(sdir / fname, ("preprocessed_eeg_data", "ch_names", "times"))
        arr = np.asarray(d["preprocessed_eeg_data"], dtype=np.float32)
        if arr.ndim != 4:
            raise InputFileError(
                f"{sdir / fname}: expected preprocessed_eeg_data of shape (images, repetitions, channels, times), "
                f"got {arr.shape}."
            )
        parts[split] = (arr, list(d["ch_names"]), np.asarray(d["times"], dtype=float))
    (tr, ch, times), (te, ch_te, _) = parts["train"], parts["test"]
    if ch != ch_te:
        raise InputFileError(f"{sdir}: training and test files have different channels.")
    n_tr, n_te = len(meta["train_img_files"]), len(meta["test_img_files"])
    if tr.shape[0] != n_tr or te.shape[0] != n_te:
        raise InputFileError(
            f"{sdir}: {tr.shape[0]} training / {te.shape[0]} test conditions but image_metadata lists "
            f"{n_tr} / {n_te} images."
        )
    Xs, idx, split = [], [], []
    for arr, offset, name in ((tr, 0, "train"), (te, n_tr, "test")):
        if average_repetitions:
            Xs.append(arr.mean(1))
            idx.append(offset + np.arange(len(arr)))
        else:
            Xs.append(arr.reshape(-1, *arr.shape[2:]))
            idx.append(offset + np.repeat(np.arange(len(arr)), arr.shape[1]))
        split.append(np.full(len(Xs[-1]), name))
    concepts = list(meta["train_img_concepts"]) + list(meta["test_img_concepts"])
    names, labels = np.unique(np.asarray(concepts, dtype=str), return_inverse=True)
    files = [root / "training_images" / c / f for c, f in zip(meta["train_img_concepts"], meta["train_img_files"])]
    files += [root / "test_images" / c / f for c, f in zip(meta["test_img_concepts"], meta["test_img_files"])]
    if not any(f.parent.parent.is_dir() for f in files[:1]):
        files = [root / "image_set" / f.relative_to(root) for f in files]
    images = load_image_files(files, image_size) if load_images else None
    sfreq = 1.0 / np.median(np.diff(times)) if len(times) > 1 else 1.0
    return PairedBrainImageData(
        X=np.concatenate(Xs), image_index=np.concatenate(idx), subject=np.zeros(sum(len(x) for x in Xs), int),
        split=np.concatenate(split), ch_names=ch, sfreq=float(sfreq), images=images, image_labels=labels,
        ch_type="eeg", meta={"simulated": False, "source": "THINGS-EEG2", "subject": int(subject),
                             "image_files": [str(f) for f in files], "concepts": names.tolist(),
                             "tmin": float(times[0])},
    )


def _read_table(path):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"Stimulus table {path} does not exist.")
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    try:
        return pd.read_csv(path, sep=sep)
    except Exception as err:
        raise InputFileError(f"Could not read the stimulus table {path}: {err}") from err


def _need_columns(table, path, cols):
    missing = [c for c in cols if c is not None and c not in table.columns]
    if missing:
        raise InputFileError(
            f"Stimulus table {path} lacks the column(s) {missing}; it has {list(table.columns)}. "
            "Name the right columns with the *_column parameters."
        )


def _read_brain(path):
    """Epochs file or ``.npz`` -> (X, ch_names, sfreq, ch_type, ch_pos)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"Brain data file {path} does not exist.")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for k in ("X", "sfreq", "ch_names"):
                if k not in z:
                    raise InputFileError(f"{path} lacks the array {k!r}; expected X, sfreq and ch_names.")
            X = z["X"].astype(np.float32)
            ch = [str(c) for c in z["ch_names"]]
            sfreq = float(z["sfreq"])
            ch_type = str(z["ch_type"]) if "ch_type" in z else "eeg"
            ch_pos = z["ch_pos"].astype(float) if "ch_pos" in z else None
        if X.ndim != 3 or X.shape[1] != len(ch):
            raise InputFileError(f"{path}: X must be (n_trials, {len(ch)} channels, n_times), got {X.shape}.")
        return X, ch, sfreq, ch_type, ch_pos
    import mne

    try:
        ep = mne.read_epochs(path, preload=True, verbose="error")
    except Exception as err:
        raise InputFileError(f"Could not read {path} as MNE epochs (-epo.fif): {err}") from err
    picks = mne.pick_types(ep.info, meg=True, eeg=True, exclude=())
    ep = ep.pick(picks)
    types = set(ep.get_channel_types())
    ch_type = "eeg" if types == {"eeg"} else ("mag" if "mag" in types else sorted(types)[0])
    pos = np.array([c["loc"][:3] for c in ep.info["chs"]])
    return ep.get_data().astype(np.float32), list(ep.ch_names), float(ep.info["sfreq"]), ch_type, pos


def _labels_from(values):
    _, inv = np.unique(np.asarray(values).astype(str), return_inverse=True)
    return inv


def read_image_table(brain, table, *, image_root=None, image_column="image", split_column="split",
                     label_column=None, load_images=True, image_size=None, average_repetitions=False):
    """Pair trials of an epochs/array file with the images named in a stimulus table.

    Parameters
    ----------
    brain : path-like
        ``-epo.fif`` (MNE epochs) or ``.npz`` with ``X`` (n_trials, n_chans, n_times), ``sfreq``,
        ``ch_names`` (optionally ``ch_type``, ``ch_pos``). Trial ``i`` is table row ``i``.
    table : path-like
        CSV (or TSV) with one row per trial.
    image_root : path-like | None
        Folder the image paths are relative to (default: the table's folder).
    image_column, split_column, label_column : str | None
        Column names: image path; ``"train"``/``"test"`` split (``None``: all ``"train"``); concept
        label (``None``: each image its own concept).
    average_repetitions : bool
        Average trials that show the same image within a split.

    Returns
    -------
    PairedBrainImageData
    """
    table_path = Path(table)
    tab = _read_table(table_path)
    _need_columns(tab, table_path, [image_column, split_column, label_column])
    X, ch, sfreq, ch_type, ch_pos = _read_brain(brain)
    if len(tab) != len(X):
        raise InputFileError(f"{brain} has {len(X)} trials but the stimulus table {table_path} has {len(tab)} rows.")
    split = tab[split_column].astype(str).str.lower().to_numpy() if split_column else np.full(len(tab), "train")
    bad = sorted(set(split) - {"train", "test"})
    if bad:
        raise InputFileError(f"Column {split_column!r} of {table_path} must hold 'train' or 'test', found {bad}.")
    root = Path(image_root) if image_root is not None else table_path.parent
    uniq, image_index = np.unique(tab[image_column].astype(str).to_numpy(), return_inverse=True)
    labels_all = _labels_from(tab[label_column]) if label_column else image_index
    img_labels = np.zeros(len(uniq), int)
    img_labels[image_index] = labels_all
    X, image_index, split, subject = _maybe_average(X, image_index, split, average_repetitions)
    images = load_image_files([root / u for u in uniq], image_size) if load_images else None
    return PairedBrainImageData(
        X=X, image_index=image_index, subject=subject, split=split, ch_names=ch, sfreq=sfreq, images=images,
        image_labels=img_labels, ch_pos=ch_pos, ch_type=ch_type,
        meta={"simulated": False, "source": str(brain), "table": str(table_path),
              "image_files": [str(root / u) for u in uniq]},
    )


def _maybe_average(X, image_index, split, average):
    if not average:
        return X, image_index, split, np.zeros(len(X), int)
    keys = sorted(set(zip(split.tolist(), image_index.tolist())), key=lambda k: (k[0] != "train", k[1]))
    Xa = np.stack([X[(split == s) & (image_index == i)].mean(0) for s, i in keys])
    return (Xa.astype(np.float32), np.array([i for _, i in keys]), np.array([s for s, _ in keys]),
            np.zeros(len(keys), int))


def read_things_meg(epochs, attributes, *, image_root=None, image_column="image_path",
                    trial_type_column="trial_type", concept_column="things_category_nr",
                    average_test=True, load_images=False, image_size=None):
    """Read one THINGS-MEG participant: preprocessed epochs + sample-attribute table.

    Parameters
    ----------
    epochs : path-like
        ``preprocessed_P{n}-epo.fif`` (MNE epochs, one per trial, in table order).
    attributes : path-like
        ``sample_attributes_P{n}.csv`` (or TSV): one row per epoch.
    image_column, trial_type_column, concept_column : str
        Columns with the image path, the trial type (``exp`` training, ``test`` test, ``catch`` dropped)
        and the concept number.
    average_test : bool
        Average the repetitions of each test image (the NICE/UBP protocol: 12 -> 1).

    Returns
    -------
    PairedBrainImageData
    """
    tab_path = Path(attributes)
    tab = _read_table(tab_path)
    _need_columns(tab, tab_path, [image_column, trial_type_column, concept_column])
    X, ch, sfreq, ch_type, ch_pos = _read_brain(epochs)
    if len(tab) != len(X):
        raise InputFileError(f"{epochs} has {len(X)} epochs but {tab_path} has {len(tab)} rows.")
    ttype = tab[trial_type_column].astype(str).str.lower().to_numpy()
    unknown = sorted(set(ttype) - {"exp", "test", "catch"})
    if unknown:
        raise InputFileError(f"Column {trial_type_column!r} of {tab_path}: expected exp/test/catch, found {unknown}.")
    keep = ttype != "catch"
    tab, X, ttype = tab[keep].reset_index(drop=True), X[keep], ttype[keep]
    split = np.where(ttype == "test", "test", "train")
    uniq, image_index = np.unique(tab[image_column].astype(str).to_numpy(), return_inverse=True)
    concept = _labels_from(tab[concept_column])
    img_labels = np.zeros(len(uniq), int)
    img_labels[image_index] = concept
    if average_test:
        te = split == "test"
        Xt, it, st, _ = _maybe_average(X[te], image_index[te], split[te], True)
        X = np.concatenate([X[~te], Xt])
        image_index = np.concatenate([image_index[~te], it])
        split = np.concatenate([split[~te], st])
    root = Path(image_root) if image_root is not None else tab_path.parent
    images = load_image_files([root / u for u in uniq], image_size) if load_images else None
    return PairedBrainImageData(
        X=X.astype(np.float32), image_index=image_index, subject=np.zeros(len(X), int), split=split, ch_names=ch,
        sfreq=sfreq, images=images, image_labels=img_labels, ch_pos=ch_pos, ch_type=ch_type,
        meta={"simulated": False, "source": "THINGS-MEG", "epochs": str(epochs), "attributes": str(tab_path),
              "image_files": [str(root / u) for u in uniq]},
    )
