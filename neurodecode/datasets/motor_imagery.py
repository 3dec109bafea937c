"""Motor-imagery windows from the PhysioNet EEG Motor Movement/Imagery layout (``SXXX/SXXXRYY.edf``).

:func:`build_motor_imagery` reads the imagery runs of every subject folder it finds, band-passes and
resamples each run, cuts one window per cue and writes an HDF5 window store (one group per run)
whose file name carries the hash of the recipe, so that a second call with the same recipe and
the same input files reuses it. :func:`load_motor_imagery` returns the stacked arrays.

Recipe (defaults; every key is a parameter and is part of the cache key):

============  ===============================================================================
task          ``"left_right"``: imagined left (T1) vs right (T2) fist, runs 4, 8, 12;
              ``"fists_feet"``: imagined both fists (T1) vs both feet (T2), runs 6, 10, 14
channels      ``"motor"``: the 21 FC/C/CP electrodes over sensorimotor cortex
              (FC5..FC6, C5..C6, CP5..CP6); ``"all"``: every EEG channel; or a list of names
l_freq/h_freq band-pass 8-30 Hz (mu and beta rhythms), MNE's zero-phase FIR
sfreq         resampled to 64 Hz after filtering (160 Hz in the files); keeps CPU training cheap
tmin/tmax     window 0.5-3.5 s after the cue onset (cues last 4.1 s; the first 0.5 s holds the visual
              evoked response to the cue); ``round((tmax-tmin)*sfreq)`` samples
============  ===============================================================================

Data are stored in volts, as read; models receive microvolts (see :func:`load_motor_imagery`).
"""

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils import InputFileError, UsageError, check_option, config_hash, data_dir, record_warning, sha256_file
from ..utils import cache_dir as default_cache_dir

logger = logging.getLogger("neurodecode")

TASKS = {
    "left_right": {"runs": (4, 8, 12), "classes": {"T1": "left_fist", "T2": "right_fist"}},
    "fists_feet": {"runs": (6, 10, 14), "classes": {"T1": "both_fists", "T2": "both_feet"}},
}
MOTOR_CHANNELS = (
    "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6",
    "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
    "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6",
)
RECIPE_VERSION = 1
_SUBJECT_RE = re.compile(r"^S\d{3}$")


def default_recipe(**overrides):
    """Return the preprocessing recipe (a JSON-able dict) with ``overrides`` applied."""
    recipe = {
        "dataset": "eegmmidb",
        "task": "left_right",
        "channels": "motor",
        "l_freq": 8.0,
        "h_freq": 30.0,
        "sfreq": 64.0,
        "tmin": 0.5,
        "tmax": 3.5,
        "version": RECIPE_VERSION,
    }
    unknown = set(overrides) - set(recipe)
    if unknown:
        raise UsageError(
            f"Unknown recipe key(s) {sorted(unknown)}; allowed keys are {sorted(k for k in recipe if k != 'version')}."
        )
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    check_option("task", recipe["task"], tuple(TASKS))
    if not 0 < recipe["l_freq"] < recipe["h_freq"] < recipe["sfreq"] / 2:
        raise UsageError(
            "Invalid band: expected 0 < l_freq < h_freq < sfreq/2, but got "
            f"l_freq={recipe['l_freq']}, h_freq={recipe['h_freq']}, sfreq={recipe['sfreq']}."
        )
    if recipe["tmax"] <= recipe["tmin"]:
        raise UsageError(f"Invalid window: tmax ({recipe['tmax']}) must be larger than tmin ({recipe['tmin']}).")
    if isinstance(recipe["channels"], (list, tuple)):
        recipe["channels"] = list(recipe["channels"])
    else:
        check_option("channels", recipe["channels"], ("motor", "all"))
    return recipe


@dataclass
class MotorImageryData:
    """Stacked windows of a motor-imagery store.

    Attributes
    ----------
    X : ndarray, (n_trials, n_chans, n_times) float32, microvolts
    y : ndarray, (n_trials,) int64, class index into ``classes``
    subject : ndarray of str, (n_trials,)
    run : ndarray of int, (n_trials,)
    classes : list of str
    ch_names : list of str
    sfreq : float
    recipe : dict
    store : Path
    problems : list of str  (warnings recorded while building)
    """

    X: np.ndarray
    y: np.ndarray
    subject: np.ndarray
    run: np.ndarray
    classes: list
    ch_names: list
    sfreq: float
    recipe: dict
    store: Path
    problems: list

    @property
    def subjects(self):
        """Subjects in order of first appearance."""
        return list(dict.fromkeys(self.subject.tolist()))

    def signal_kwargs(self):
        """braindecode signal arguments for a model of this data."""
        return {"n_chans": self.X.shape[1], "n_times": self.X.shape[2], "sfreq": self.sfreq, "n_outputs": len(self.classes)}


def _find_subjects(root, subjects):
    if not root.is_dir():
        raise InputFileError(
            f"{root}: no such data folder. Expected the eegmmidb layout SXXX/SXXXRYY.edf "
            "(pass --data-dir or set NEURODECODE_DATA)."
        )
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and _SUBJECT_RE.match(p.name))
    if subjects is None:
        if not found:
            raise InputFileError(f"{root}: no subject folders named like S001 found (eegmmidb layout SXXX/SXXXRYY.edf).")
        return found
    subjects = [s if isinstance(s, str) and s.startswith("S") else f"S{int(s):03d}" for s in subjects]
    missing = [s for s in subjects if s not in found]
    if missing:
        raise InputFileError(f"{root}: subject folder(s) {missing} not found; available: {found or 'none'}.")
    return subjects


def _pick_channels(raw, recipe, path):
    eeg = [raw.ch_names[i] for i in range(len(raw.ch_names)) if raw.get_channel_types([i])[0] == "eeg"]
    if recipe["channels"] == "all":
        return eeg
    wanted = list(MOTOR_CHANNELS) if recipe["channels"] == "motor" else list(recipe["channels"])
    lower = {n.lower(): n for n in eeg}
    missing = [c for c in wanted if c.lower() not in lower]
    if missing:
        raise InputFileError(f"{path}: channel(s) {missing} of the recipe are missing (file has {len(eeg)} EEG channels).")
    return [lower[c.lower()] for c in wanted]


def _read_run(path, recipe, classes):
    """Return (data (C, T) float32 volts, windows (n, 2), labels (n,), ch_names) of one run."""
    from ..io import read_raw

    raw = read_raw(path, preload=True)
    picks = _pick_channels(raw, recipe, path)
    raw.pick(picks)
    if raw.info["sfreq"] < 2 * recipe["h_freq"]:
        raise InputFileError(
            f"{path}: sampled at {raw.info['sfreq']:g} Hz, too low for the {recipe['h_freq']:g} Hz upper band edge."
        )
    raw.filter(recipe["l_freq"], recipe["h_freq"], verbose="error")
    if raw.info["sfreq"] != recipe["sfreq"]:
        raw.resample(recipe["sfreq"], verbose="error")
    sf = raw.info["sfreq"]
    n_win = int(round((recipe["tmax"] - recipe["tmin"]) * sf))
    label_of = {code: i for i, code in enumerate(classes)}
    windows, labels = [], []
    for ann in raw.annotations:
        code = ann["description"]
        if code not in label_of:
            continue
        start = int(round((ann["onset"] - raw.first_time + recipe["tmin"]) * sf))
        if start < 0 or start + n_win > raw.n_times:
            continue  # a cue cut by the end of the file: no complete window exists
        windows.append((start, start + n_win))
        labels.append(label_of[code])
    return raw.get_data().astype(np.float32), np.array(windows, np.int64).reshape(-1, 2), np.array(labels, np.int64), raw.ch_names


def build_motor_imagery(data_dir_=None, *, subjects=None, cache_dir=None, overwrite=False, problems=None, **recipe):
    """Build (or reuse) the HDF5 window store of a motor-imagery recipe.

    Parameters
    ----------
    data_dir_ : path-like | None
        Folder in the eegmmidb layout (``S001/S001R04.edf`` ...). Default ``$NEURODECODE_DATA/eegmmidb``.
    subjects : list of str or int | None
        Subjects to include (``"S001"`` or ``1``); default every ``SXXX`` folder.
    cache_dir : path-like | None
        Where the store is written (never inside the data folder, which is only read);
        default :func:`neurodecode.utils.cache_dir` (``$XDG_CACHE_HOME/neurodecode`` or ``~/.cache/neurodecode``).
    overwrite : bool
        Rebuild even if a store with the same key exists.
    problems : list | None
        Collects one sentence per recording that was skipped or worked around.
    **recipe
        Overrides of :func:`default_recipe`.

    Returns
    -------
    path : Path
        The store. Its name is ``eegmmidb_<task>-<hash>.h5``, the hash covering the recipe, the
        subjects and the SHA-256 of every input file.
    """
    from ..io import write_windows

    recipe = default_recipe(**recipe)
    root = Path(data_dir_) if data_dir_ is not None else data_dir() / "eegmmidb"
    subjects = _find_subjects(root, subjects)
    problems = [] if problems is None else problems
    spec = TASKS[recipe["task"]]
    codes = list(spec["classes"])

    # The key covers the exact bytes of the inputs, so edited files are never served stale.
    sources = {}
    for subj in subjects:
        for run in spec["runs"]:
            p = root / subj / f"{subj}R{run:02d}.edf"
            if p.exists():
                sources[p.relative_to(root).as_posix()] = sha256_file(p)
    key = config_hash({"recipe": recipe, "sources": sources})
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"eegmmidb_{recipe['task']}-{key}.h5"
    if out.exists() and not overwrite:
        logger.info("reusing window store %s", out)
        return out

    recordings, ref_channels = [], None
    for subj in subjects:
        runs = [r for r in spec["runs"] if f"{subj}/{subj}R{r:02d}.edf" in sources]
        absent = [f"{subj}R{r:02d}.edf" for r in spec["runs"] if r not in runs]
        if not runs:
            record_warning(f"{root / subj}: none of the {recipe['task']} runs {list(spec['runs'])} found; subject skipped.", problems)
            continue
        if absent:
            record_warning(f"{root / subj}: missing {', '.join(absent)}; using the other runs of {subj}.", problems)
        for run in runs:
            p = root / subj / f"{subj}R{run:02d}.edf"
            try:
                data, windows, labels, ch_names = _read_run(p, recipe, codes)
            except InputFileError as err:
                record_warning(f"{err} Recording skipped.", problems)
                continue
            if ref_channels is None:
                ref_channels = ch_names
            elif ch_names != ref_channels:
                record_warning(f"{p}: channel set differs from the first recording; recording skipped.", problems)
                continue
            if len(windows) == 0:
                record_warning(f"{p}: no complete T1/T2 cue windows; recording skipped.", problems)
                continue
            recordings.append({
                "name": f"{subj}R{run:02d}",
                "data": data,
                "sfreq": recipe["sfreq"],
                "ch_names": ch_names,
                "windows": windows,
                "labels": labels,
                "source_sha256": sources[f"{subj}/{subj}R{run:02d}.edf"],
                "attrs": {"subject": subj, "run": run, "classes": [spec["classes"][c] for c in codes]},
            })
    if not recordings:
        raise InputFileError(f"{root}: no usable {recipe['task']} recordings among subjects {subjects}.")
    write_windows(out, recordings, config={"recipe": recipe, "sources": sources}, overwrite=True)
    return out


def load_motor_imagery(data_dir_=None, *, subjects=None, cache_dir=None, scale=1e6, problems=None, **recipe):
    """Build or reuse the store and return every window as :class:`MotorImageryData`.

    Windows are ordered by subject, then run, then cue onset (chronological within a subject),
    which the chronological protocols rely on. ``scale`` converts volts to microvolts.
    """
    from ..io import WindowStore

    problems = [] if problems is None else problems
    path = build_motor_imagery(data_dir_, subjects=subjects, cache_dir=cache_dir, problems=problems, **recipe)
    Xs, ys, subj, runs = [], [], [], []
    with WindowStore(path) as store:
        names = sorted(store.recordings)
        info = store.info(names[0])
        classes = json.loads(info["classes"])
        for name in names:
            X, y = store.windows(name)
            a = store.info(name)
            Xs.append(X)
            ys.append(y)
            subj += [json.loads(a["subject"])] * len(y)
            runs += [json.loads(a["run"])] * len(y)
        recipe_used = store.config["recipe"]
    return MotorImageryData(
        X=(np.concatenate(Xs) * scale).astype(np.float32),
        y=np.concatenate(ys).astype(np.int64),
        subject=np.array(subj),
        run=np.array(runs),
        classes=classes,
        ch_names=list(info["ch_names"]),
        sfreq=float(info["sfreq"]),
        recipe=recipe_used,
        store=path,
        problems=problems,
    )
