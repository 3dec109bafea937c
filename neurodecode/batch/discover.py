"""Find the recordings of a dataset: a BIDS dataset through mne-bids, or any folder tree."""

import fnmatch
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..utils import UsageError

# Formats worth finding in a folder walk. Generic extensions that MNE can read but that other
# files share (.bin, .hdr, .data) are left out: a batch must not try to read every .bin file.
_EXTENSIONS = (".edf", ".bdf", ".gdf", ".fif", ".fif.gz", ".vhdr", ".set", ".cnt", ".nxe", ".sqd", ".con", ".snirf", ".eeg")
_COMPANIONS = {".vhdr": (".vmrk", ".eeg"), ".set": (".fdt",), ".eeg": (".21e", ".pnt", ".log")}
# FIF files that are not continuous recordings.
_NOT_RAW_FIF = re.compile(r"[-_](epo|ave|cov|fwd|inv|trans|ica|sol|proj|annot|bem|src|morph)\.fif(\.gz)?$", re.I)
_SPLIT_CONT = re.compile(r"(-\d+\.fif|_split-0*[2-9]\d*_[a-z]+\.fif)$", re.I)
_BIDS_DATATYPES = ("eeg", "meg", "ieeg")


@dataclass
class Recording:
    """One input recording and where its derivatives go.

    Attributes
    ----------
    path : str
        Absolute path of the file the reader opens.
    relpath : str
        Path relative to the input root (stable across machines; used in the status table).
    companions : list of str
        Other files whose bytes are part of the recording (``.fdt``, ``.vmrk``/``.eeg``).
    entities : dict
        BIDS entities (``subject``, ``session``, ``task``, ``acquisition``, ``run``) of the output name.
    datatype : str | None
        ``eeg``, ``meg`` or ``ieeg`` when known from BIDS; otherwise decided from the channels.
    """

    path: str
    relpath: str
    companions: list = field(default_factory=list)
    entities: dict = field(default_factory=dict)
    datatype: str | None = None

    @property
    def uid(self):
        """Output base name without datatype suffix, e.g. ``sub-01_ses-a_task-rest_run-1``."""
        keys = (("sub", "subject"), ("ses", "session"), ("task", "task"), ("acq", "acquisition"), ("run", "run"))
        return "_".join(f"{k}-{self.entities[e]}" for k, e in keys if self.entities.get(e))

    def to_dict(self):
        return asdict(self)


def _label(text):
    """BIDS labels are letters and digits only."""
    return re.sub(r"[^A-Za-z0-9]", "", text)


def _ext(path):
    name = path.name.lower()
    return next((e for e in sorted(_EXTENSIONS, key=len, reverse=True) if name.endswith(e)), None)


def _companions(path, ext):
    stem = path.name[: -len(ext)]
    return sorted(str(path.parent / (stem + c)) for c in _COMPANIONS.get(ext, ()) if (path.parent / (stem + c)).exists())


def is_bids(root):
    return (Path(root) / "dataset_description.json").is_file() and any(Path(root).glob("sub-*"))


def _wanted(relpath, include):
    return not include or any(fnmatch.fnmatch(relpath, pat) for pat in include)


def discover(root, include=()):
    """Return the recordings under ``root``, sorted by relative path.

    Parameters
    ----------
    root : path-like
        A BIDS dataset (has ``dataset_description.json`` and ``sub-*`` folders) or any folder.
        A single file is accepted too.
    include : list of str
        Glob patterns matched against the path relative to ``root``; empty keeps everything.

    Returns
    -------
    recordings : list of Recording
    """
    root = Path(root)
    if not root.exists():
        raise UsageError(f"Input {root} does not exist.")
    if root.is_file():
        ext = _ext(root)
        if ext is None:
            raise UsageError(f"Input {root} is not a recording this batch reads ({', '.join(_EXTENSIONS)}).")
        recs = [_plain(root, root.parent, ext)]
    elif is_bids(root):
        recs = _discover_bids(root, include)
    else:
        recs = _discover_tree(root, include)
    _deduplicate(recs)
    return recs


def _discover_bids(root, include):
    import mne_bids

    paths = mne_bids.find_matching_paths(
        root, datatypes=list(_BIDS_DATATYPES), extensions=[e for e in _EXTENSIONS if e != ".fif.gz"],
        ignore_json=True, ignore_nosub=True,
    )
    recs = []
    for bp in sorted(paths, key=lambda p: str(p.fpath)):
        fpath = Path(bp.fpath)
        rel = fpath.relative_to(root).as_posix()
        if "derivatives" in fpath.relative_to(root).parts or bp.suffix not in _BIDS_DATATYPES:
            continue
        ext = _ext(fpath)
        if ext == ".eeg" and fpath.with_suffix(".vhdr").exists():
            continue  # BrainVision binary, opened through its .vhdr
        if ext is None or not _wanted(rel, include) or _SPLIT_CONT.search(fpath.name):
            continue
        ents = {k: bp.entities.get(k) for k in ("subject", "session", "task", "acquisition", "run")}
        ents = {k: (str(v) if v is not None else None) for k, v in ents.items()}
        recs.append(Recording(str(fpath), rel, _companions(fpath, ext), ents, bp.datatype or bp.suffix))
    return recs


def _plain(path, root, ext):
    rel = path.relative_to(root).as_posix()
    parent = _label("".join(path.relative_to(root).parts[:-1])) or "00"
    stem = _label(path.name[: -len(ext)]) or "recording"
    return Recording(str(path), rel, _companions(path, ext), {"subject": parent, "task": stem})


def _discover_tree(root, include):
    recs = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden folders and derivatives are not inputs; sorted for a stable order.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "derivatives")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            ext = _ext(path)
            if ext is None or name.startswith("."):
                continue
            if ext == ".eeg" and (path.with_suffix(".vhdr").exists() or not path.with_suffix(".21e").exists()):
                continue  # a BrainVision binary, or not a Nihon Kohden recording
            if ext in (".fif", ".fif.gz") and (_NOT_RAW_FIF.search(name) or _SPLIT_CONT.search(name)):
                continue
            rel = path.relative_to(root).as_posix()
            if _wanted(rel, include):
                recs.append(_plain(path, root, ext))
    return recs


def _deduplicate(recs):
    """Two inputs must never share an output name: add the format, then a counter, to clashing names."""
    for add_counter in (False, True):
        seen = {}
        for rec in recs:
            seen.setdefault(rec.uid, []).append(rec)
        for group in seen.values():
            if len(group) > 1:
                for i, rec in enumerate(group, 1):
                    extra = str(i) if add_counter else _label(_ext(Path(rec.path)) or "")
                    rec.entities["task"] = (rec.entities.get("task") or "") + extra
    uids = [r.uid for r in recs]
    if len(set(uids)) != len(uids):
        raise UsageError("Two input recordings map to the same output name; rename one of them.")
