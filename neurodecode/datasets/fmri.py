"""fMRI data path: 4D BOLD or NSD-style HDF5 betas -> per-stimulus response vectors.

The steps follow nilearn's ``NiftiMasker`` pattern without depending on nilearn:

1. a masker keeps brain voxels (``BoldMasker``), giving ``(n_volumes, n_voxels)``;
2. each run is linearly detrended and z-scored per voxel (``clean_signal``), so slow scanner
   drift and run-to-run gain changes do not leak into the responses;
3. each stimulus gets one response vector, the mean of the volumes acquired inside a window
   that starts ``hrf_delay`` seconds after the stimulus onset (``stimulus_responses``). The
   default delay, 4.5 s, is close to the peak of the canonical haemodynamic response (Glover's
   HRF peaks at about 5 s); the default window is 3 s, i.e. the volumes acquired between 4.5 s
   and 7.5 s after onset.

NSD-style HDF5 files already hold one GLM beta per trial (``betas``, ``(n_trials, n_voxels)``
as in MindEye's per-subject files, or ``(n_trials, X, Y, Z)`` as in NSD's per-session files);
:func:`read_nsd_responses` reads them, undoes NSD's int16 scaling (betas x 300) and z-scores
per session. :func:`average_repeats` averages repetitions of the same image.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..utils import InputFileError, UsageError, atomic_path, record_warning

#: Seconds from stimulus onset to the start of the averaging window (peak of the canonical HRF is ~5 s).
DEFAULT_HRF_DELAY = 4.5
#: Seconds of volumes averaged per stimulus.
DEFAULT_WINDOW = 3.0
#: NSD stores betas as int16 percent signal change multiplied by this factor.
NSD_BETA_SCALE = 300.0


@dataclass
class FMRIResponses:
    """Per-stimulus fMRI responses of one subject.

    Attributes
    ----------
    responses : ndarray of float32, shape (n_trials, n_voxels)
    stim_ids : ndarray of int64, shape (n_trials,)
        Index of the image each trial showed.
    subject : str
    sessions : ndarray of int64, shape (n_trials,)
        Session (or run) each trial came from; z-scoring is done within a session.
    meta : dict
        Provenance: source files, hrf_delay, window, detrend, standardize.
    """

    responses: np.ndarray
    stim_ids: np.ndarray
    subject: str = "sub-01"
    sessions: np.ndarray = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.responses = np.asarray(self.responses, dtype=np.float32)
        self.stim_ids = np.asarray(self.stim_ids, dtype=np.int64)
        if self.responses.ndim != 2:
            raise UsageError(f"responses must have shape (n_trials, n_voxels), got {self.responses.shape}.")
        if len(self.stim_ids) != len(self.responses):
            raise UsageError(
                f"stim_ids has {len(self.stim_ids)} entries but responses has {len(self.responses)} trials."
            )
        if self.sessions is None:
            self.sessions = np.zeros(len(self.responses), np.int64)
        self.sessions = np.asarray(self.sessions, dtype=np.int64)

    @property
    def n_voxels(self):
        return self.responses.shape[1]

    def __len__(self):
        return len(self.responses)


def clean_signal(X, *, detrend=True, standardize=True, problems=None, name="signal"):
    """Detrend and z-score each column of one run.

    Parameters
    ----------
    X : ndarray, shape (n_volumes, n_voxels)
        One run; never modified.
    detrend : bool
        Remove a least-squares line per voxel (scanner drift).
    standardize : bool
        Scale each voxel to zero mean and unit variance within the run. Voxels that are
        constant over the run are set to 0 and a warning is recorded.
    problems : list of str | None
        Collects the warnings for a report.
    name : str
        Names the run in warnings.

    Returns
    -------
    Xc : ndarray of float32, shape (n_volumes, n_voxels)
    """
    from scipy.signal import detrend as _detrend

    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise UsageError(f"{name}: expected shape (n_volumes, n_voxels), got {X.shape}.")
    if len(X) < 3 and (detrend or standardize):
        raise UsageError(f"{name}: detrending and z-scoring need at least 3 volumes, got {len(X)}.")
    Xc = _detrend(X, axis=0, type="linear") if detrend else X - X.mean(axis=0)
    if standardize:
        sd = Xc.std(axis=0)
        flat = sd < 1e-8 * max(1.0, float(np.abs(X).max(initial=0.0)))
        if flat.any():
            record_warning(f"{name}: {int(flat.sum())} voxel(s) are constant over the run; their responses are set to 0.", problems)
        sd[flat] = 1.0
        Xc = Xc / sd
        Xc[:, flat] = 0.0
    return Xc.astype(np.float32)


class BoldMasker:
    """Mask 4D BOLD runs to ``(n_volumes, n_voxels)`` and clean each run (nilearn's NiftiMasker pattern).

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z) | path-like | None
        Voxels to keep. ``None`` intersects the automatic brain masks of the runs given to
        :meth:`fit` (voxels that vary and whose mean is above a fifth of the brain mean).
    detrend, standardize : bool
        Passed to :func:`clean_signal` for each run separately.

    Attributes
    ----------
    mask_ : ndarray of bool, shape (X, Y, Z)
    n_voxels_ : int
    """

    def __init__(self, mask=None, *, detrend=True, standardize=True):
        self.mask = mask
        self.detrend = detrend
        self.standardize = standardize

    def fit(self, runs):
        """Set ``mask_`` from ``mask`` or from the runs' own brain masks; returns ``self``."""
        runs = _as_runs(runs)
        shape = runs[0].data.shape[:3]
        for r in runs[1:]:
            if r.data.shape[:3] != shape:
                raise InputFileError(
                    f"{r.source}: volume shape {r.data.shape[:3]} differs from {runs[0].source} {shape}; "
                    "runs given to one masker must share a grid."
                )
        if self.mask is None:
            mask = np.logical_and.reduce([r.mask for r in runs])
        else:
            mask = self.mask
            if isinstance(mask, (str, Path)):
                import nibabel as nib

                mask = np.asarray(nib.load(mask).dataobj)
            mask = np.asarray(mask).astype(bool)
            if mask.shape != shape:
                raise UsageError(f"The 'mask' has shape {mask.shape} but the runs' volumes have shape {shape}.")
        if not mask.any():
            raise UsageError("The mask keeps no voxel; pass a mask with at least one True voxel.")
        from ..io import RunMasker

        self.mask_ = mask
        self.n_voxels_ = int(mask.sum())
        self._run_masker = RunMasker(mask)  # volume <-> voxel mapping; this class adds fitting and cleaning
        return self

    def transform(self, run, problems=None):
        """Return the cleaned masked run, shape (n_volumes, n_voxels_)."""
        if not hasattr(self, "mask_"):
            raise UsageError("This BoldMasker is not fitted yet; call fit(runs) first.")
        (run,) = _as_runs([run])
        if run.data.shape[:3] != self.mask_.shape:
            raise InputFileError(f"{run.source}: volume shape {run.data.shape[:3]} does not match the mask {self.mask_.shape}.")
        X = self._run_masker.transform(run.data)
        return clean_signal(X, detrend=self.detrend, standardize=self.standardize, problems=problems, name=run.source or "run")

    def fit_transform(self, runs, problems=None):
        """Fit on ``runs`` and return a list of cleaned arrays, one per run."""
        runs = _as_runs(runs)
        self.fit(runs)
        return [self.transform(r, problems) for r in runs]

    def inverse_transform(self, X):
        """Put voxel values back in volume space: (n, n_voxels_) -> (X, Y, Z, n)."""
        if not hasattr(self, "mask_"):
            raise UsageError("This BoldMasker is not fitted yet; call fit(runs) first.")
        return self._run_masker.inverse_transform(np.atleast_2d(np.asarray(X)))


def _as_runs(runs):
    from ..io import BoldRun, read_bold

    if isinstance(runs, (BoldRun, str, Path)):
        runs = [runs]
    runs = [read_bold(r) if isinstance(r, (str, Path)) else r for r in runs]
    if not runs:
        raise UsageError("At least one BOLD run is needed.")
    for r in runs:
        if not isinstance(r, BoldRun):
            raise UsageError(f"Expected BoldRun objects or file paths, got {type(r).__name__}.")
    return runs


def stimulus_responses(X, tr, onsets, *, hrf_delay=DEFAULT_HRF_DELAY, window=DEFAULT_WINDOW, problems=None, name="run"):
    """Average the volumes inside ``[onset + hrf_delay, onset + hrf_delay + window)`` per stimulus.

    Parameters
    ----------
    X : ndarray, shape (n_volumes, n_voxels)
        A cleaned run (see :func:`clean_signal`). Volume ``i`` is taken as acquired at ``i * tr``.
    tr : float
        Repetition time in seconds.
    onsets : array-like of float, shape (n_events,)
        Stimulus onsets in seconds from the first volume.
    hrf_delay : float
        Seconds from onset to the start of the window (haemodynamic delay).
    window : float
        Window length in seconds. When no volume falls inside (window shorter than a TR),
        the first volume at or after ``onset + hrf_delay`` is used.

    Returns
    -------
    responses : ndarray of float32, shape (n_kept, n_voxels)
    kept : ndarray of int, shape (n_kept,)
        Indices of the events kept; events whose window starts after the last volume are
        dropped with a recorded warning.
    """
    X = np.asarray(X, dtype=np.float32)
    if tr <= 0 or not np.isfinite(tr):
        raise UsageError(f"The 'tr' parameter must be a positive number of seconds, got {tr!r}.")
    if hrf_delay < 0 or window < 0:
        raise UsageError(f"'hrf_delay' and 'window' must be >= 0 seconds, got {hrf_delay!r} and {window!r}.")
    onsets = np.atleast_1d(np.asarray(onsets, dtype=np.float64))
    times = np.arange(len(X)) * tr
    out, kept = [], []
    for k, onset in enumerate(onsets):
        start = onset + hrf_delay
        sel = np.flatnonzero((times >= start - 1e-6) & (times < start + window - 1e-6))
        if sel.size == 0:
            after = np.flatnonzero(times >= start - 1e-6)
            if after.size == 0:
                continue
            sel = after[:1]
        out.append(X[sel].mean(axis=0))
        kept.append(k)
    if len(kept) < len(onsets):
        record_warning(
            f"{name}: {len(onsets) - len(kept)} event(s) start their response window after the last volume "
            f"({times[-1] + tr:.1f} s) and were dropped.",
            problems,
        )
    kept = np.asarray(kept, dtype=np.int64)
    if not out:
        return np.zeros((0, X.shape[1]), np.float32), kept
    return np.stack(out).astype(np.float32), kept


def bold_to_responses(runs, events, *, mask=None, subject="sub-01", hrf_delay=DEFAULT_HRF_DELAY,
                      window=DEFAULT_WINDOW, detrend=True, standardize=True, problems=None):
    """Turn 4D BOLD runs and their events into per-stimulus response vectors.

    Parameters
    ----------
    runs : list of BoldRun or path-like
        4D runs on one grid (read with :func:`neurodecode.io.read_bold`).
    events : list of array-like, shape (n_events, 2)
        Per run, rows of ``(onset_seconds, stim_id)``; a pandas DataFrame with ``onset`` and
        ``stim_id`` columns also works.
    mask, detrend, standardize :
        See :class:`BoldMasker`.
    hrf_delay, window :
        See :func:`stimulus_responses`.

    Returns
    -------
    FMRIResponses
        Responses of shape (n_trials, n_voxels); ``sessions`` holds the run index.
    """
    runs = _as_runs(runs)
    if len(events) != len(runs):
        raise UsageError(f"Got {len(runs)} run(s) but {len(events)} event table(s); give one table per run.")
    masker = BoldMasker(mask, detrend=detrend, standardize=standardize)
    cleaned = masker.fit_transform(runs, problems)
    resp, stim, sess = [], [], []
    for i, (run, X, ev) in enumerate(zip(runs, cleaned, events)):
        onsets, ids = _parse_events(ev, run.source)
        R, kept = stimulus_responses(X, run.tr, onsets, hrf_delay=hrf_delay, window=window, problems=problems,
                                     name=run.source or f"run {i}")
        resp.append(R)
        stim.append(ids[kept])
        sess.append(np.full(len(kept), i))
    out = FMRIResponses(np.concatenate(resp), np.concatenate(stim), subject, np.concatenate(sess),
                        meta={"sources": [r.source for r in runs], "hrf_delay": hrf_delay, "window": window,
                              "detrend": detrend, "standardize": standardize, "n_voxels": masker.n_voxels_})
    out.masker = masker
    return out


def _parse_events(ev, source):
    if hasattr(ev, "columns"):
        missing = {"onset", "stim_id"} - set(ev.columns)
        if missing:
            raise UsageError(f"Events for {source} lack the column(s) {sorted(missing)}; expected 'onset' and 'stim_id'.")
        return ev["onset"].to_numpy(float), ev["stim_id"].to_numpy(np.int64)
    ev = np.asarray(ev, dtype=np.float64)
    if ev.ndim != 2 or ev.shape[1] != 2:
        raise UsageError(f"Events for {source} must have shape (n_events, 2) = (onset_seconds, stim_id), got {ev.shape}.")
    return ev[:, 0], ev[:, 1].astype(np.int64)


def zscore_sessions(responses, sessions):
    """Z-score each voxel within each session (NSD practice for betas).

    Parameters
    ----------
    responses : ndarray, shape (n_trials, n_voxels)
    sessions : ndarray of int, shape (n_trials,)

    Returns
    -------
    ndarray of float32, same shape (a new array).
    """
    R = np.array(responses, dtype=np.float64)
    for s in np.unique(sessions):
        idx = sessions == s
        if idx.sum() < 2:
            continue
        mu, sd = R[idx].mean(0), R[idx].std(0)
        sd[sd < 1e-8] = 1.0
        R[idx] = (R[idx] - mu) / sd
    return R.astype(np.float32)


def average_repeats(data):
    """Average the trials that showed the same image.

    Parameters
    ----------
    data : FMRIResponses

    Returns
    -------
    FMRIResponses
        One row per distinct stimulus, in increasing ``stim_id`` order; ``meta["n_repeats"]``
        lists how many trials each row averages.
    """
    ids, inv, counts = np.unique(data.stim_ids, return_inverse=True, return_counts=True)
    out = np.zeros((len(ids), data.n_voxels), np.float64)
    np.add.at(out, inv, data.responses)
    out /= counts[:, None]
    meta = dict(data.meta, n_repeats=counts.tolist())
    return FMRIResponses(out, ids, data.subject, np.zeros(len(ids), np.int64), meta)


# --------------------------------------------------------------------------------------------
# NSD-style HDF5
# --------------------------------------------------------------------------------------------
def write_nsd_responses(path, responses, *, overwrite=False):
    """Write one or several subjects' responses to an NSD-style HDF5 file (atomically).

    Layout: one group per subject holding ``betas`` float32 ``(n_trials, n_voxels)``,
    ``stim_ids`` int64 and ``sessions`` int64; the group's attributes hold the provenance
    (``meta`` as JSON). A single subject's group can also be read by :func:`read_bold`
    with ``dataset="<subject>/betas"``.

    Parameters
    ----------
    path : path-like
    responses : FMRIResponses or list of FMRIResponses
    overwrite : bool
    """
    import json

    import h5py

    if isinstance(responses, FMRIResponses):
        responses = [responses]
    names = [r.subject for r in responses]
    if len(set(names)) != len(names):
        raise UsageError(f"Subjects must be unique in one file, got {names}.")
    with atomic_path(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["layout"] = "neurodecode-nsd-responses"
            f.attrs["version"] = 1
            for r in responses:
                g = f.create_group(r.subject)
                g.create_dataset("betas", data=r.responses, chunks=(min(len(r), 64), r.n_voxels))
                g.create_dataset("stim_ids", data=r.stim_ids)
                g.create_dataset("sessions", data=r.sessions)
                g.attrs["meta"] = json.dumps(r.meta, default=str)
    return Path(path)


def read_nsd_responses(path, subject=None, *, stim_ids=None, mask=None, zscore=None, problems=None):
    """Read per-trial responses from an NSD-style HDF5 file.

    Three layouts are recognised:

    * neurodecode's (:func:`write_nsd_responses`): a group per subject with ``betas``,
      ``stim_ids`` and ``sessions``;
    * MindEye-style: top-level ``betas`` ``(n_trials, n_voxels)`` (float or NSD int16) with
      ``stim_ids`` (or ``trial_ids``/``images``) either in the file or given as ``stim_ids``;
    * NSD per-session: top-level ``betas`` ``(n_trials, X, Y, Z)`` plus a ``mask`` (boolean
      ``(X, Y, Z)``, in the file or given) selecting the voxels.

    int16 betas are divided by 300 (NSD's storage scale).

    Parameters
    ----------
    path : path-like
    subject : str | None
        Group to read in a multi-subject file; ``None`` takes the only one.
    stim_ids : array-like | None
        Stimulus index per trial when the file does not hold them.
    mask : ndarray of bool | None
        Voxel mask for 4D betas when the file does not hold one.
    zscore : bool | None
        Z-score per session. ``None``: yes for raw NSD betas (top-level layouts), no for
        neurodecode's layout (already cleaned).

    Returns
    -------
    FMRIResponses
    """
    import json

    import h5py

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file.")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputFileError(f"{path}: not a readable HDF5 file ({err}).") from err
    with f:
        if "betas" not in f:
            groups = [k for k in f if isinstance(f[k], h5py.Group) and "betas" in f[k]]
            if not groups:
                raise InputFileError(f"{path}: no 'betas' dataset found, neither at the top level nor in a subject group.")
            if subject is None:
                if len(groups) > 1:
                    raise UsageError(f"{path} holds several subjects {groups}; pass subject= one of them.")
                subject = groups[0]
            if subject not in groups:
                raise UsageError(
                    f"Invalid value for the 'subject' parameter. Allowed values are {groups}, but got {subject!r} instead."
                )
            g = f[subject]
            betas = np.asarray(g["betas"])
            ids = np.asarray(g["stim_ids"]) if "stim_ids" in g else stim_ids
            sessions = np.asarray(g["sessions"]) if "sessions" in g else None
            meta = json.loads(g.attrs.get("meta", "{}"))
            default_z = False
        else:
            ds = f["betas"]
            betas = np.asarray(ds)
            ids = stim_ids
            for key in ("stim_ids", "trial_ids", "images"):
                if ids is None and key in f and f[key].ndim == 1:
                    ids = np.asarray(f[key])
            sessions = np.asarray(f["sessions"]) if "sessions" in f else None
            if mask is None and "mask" in f:
                mask = np.asarray(f["mask"])
            subject = subject or str(f.attrs.get("subject", path.stem))
            meta = {}
            default_z = True
    if ids is None:
        raise InputFileError(f"{path}: no stimulus ids ('stim_ids' dataset); pass stim_ids= with one entry per trial.")
    if betas.dtype == np.int16:
        betas = betas.astype(np.float32) / NSD_BETA_SCALE
    if betas.ndim == 4:
        if mask is None:
            raise InputFileError(f"{path}: 4D betas {betas.shape} need a voxel 'mask' (in the file or as mask=).")
        mask = np.asarray(mask).astype(bool)
        if mask.shape != betas.shape[1:]:
            raise UsageError(f"The 'mask' has shape {mask.shape} but {path} betas have volumes of shape {betas.shape[1:]}.")
        betas = betas[:, mask]
    elif betas.ndim != 2:
        raise InputFileError(f"{path}: 'betas' must be (n_trials, n_voxels) or (n_trials, X, Y, Z), got {betas.shape}.")
    betas = betas.astype(np.float32)
    bad = ~np.isfinite(betas)
    if bad.any():
        record_warning(f"{path}: {int(bad.sum())} non-finite beta value(s) were set to 0.", problems)
        betas = np.where(bad, 0.0, betas).astype(np.float32)
    ids = np.asarray(ids)
    if len(ids) != len(betas):
        raise InputFileError(f"{path}: {len(betas)} trials of betas but {len(ids)} stimulus ids.")
    if sessions is None:
        sessions = np.zeros(len(betas), np.int64)
    if zscore if zscore is not None else default_z:
        betas = zscore_sessions(betas, sessions)
    meta = dict(meta, source=str(path))
    return FMRIResponses(betas, ids, str(subject), sessions, meta)
