"""Leakage-free evaluation protocols for trial classification.

Every protocol returns a list of :class:`Fold` whose training and test trials never overlap and,
for cross-subject protocols, never share a subject. Trials are expected in chronological order
within each subject (as :func:`neurodecode.datasets.motor_imagery.load_motor_imagery` returns them).

==============  ==================================================================================
within-chrono   per subject: the first 80 % of the trials train, the last 20 % test (DBConformer "CO")
within-5fold    per subject: 5 contiguous, class-stratified folds without shuffling (DBConformer "CV")
loso            leave one subject out: train on all other subjects, test on the left-out one
holdout         train on every subject of one dataset, test on every subject of another
==============  ==================================================================================

Euclidean alignment references (when enabled) follow the split: within-subject folds use the
training trials' reference for both parts (no test trial is looked at); cross-subject folds use
each subject's own unlabelled trials, which is what a deployed system can compute from a new
user's calibration-free recording (labels are never used).
"""

from dataclasses import dataclass

import numpy as np

from ..utils import UsageError, check_option, record_warning

PROTOCOLS = ("within-chrono", "within-5fold", "loso", "holdout")


@dataclass
class Fold:
    """One train/test split.

    Attributes
    ----------
    name : str          e.g. ``"S003"`` (loso), ``"S003-f2"`` (within-5fold), ``"holdout"``
    subject : str | None  the test subject, when there is one
    train, test : ndarray of int  indices into the trial arrays
    within_subject : bool  decides how Euclidean alignment references are taken
    """

    name: str
    subject: object
    train: np.ndarray
    test: np.ndarray
    within_subject: bool


def _enough(y, idx, need, classes):
    counts = np.bincount(y[idx], minlength=len(classes))
    return bool((counts[classes] >= need).all())


def make_folds(protocol, subject, y, *, is_test=None, test_fraction=0.2, n_folds=5, min_per_class=2, problems=None):
    """Return the folds of ``protocol``.

    Parameters
    ----------
    protocol : str
        One of :data:`PROTOCOLS`.
    subject : array-like of str, (n_trials,)
    y : array-like of int, (n_trials,)
    is_test : array-like of bool | None
        For ``holdout`` only: True for trials of the test dataset.
    min_per_class : int
        A fold whose training part has fewer trials of some class is skipped with a warning naming
        the subject (every class must also appear at least once in its test part).

    Raises
    ------
    UsageError
        If the protocol is unknown, or no fold at all can be formed.
    """
    check_option("protocol", protocol, PROTOCOLS)
    subject = np.asarray(subject)
    y = np.asarray(y)
    classes = np.unique(y)
    subjects = list(dict.fromkeys(subject.tolist()))
    folds = []

    def add(fold):
        if not _enough(y, fold.train, min_per_class, classes) or not _enough(y, fold.test, 1, classes):
            record_warning(
                f"Subject {fold.subject or fold.name}: too few trials per class for fold {fold.name} of the "
                f"{protocol!r} protocol (need {min_per_class} per class to train and 1 to test); fold skipped.",
                problems,
            )
            return
        folds.append(fold)

    if protocol == "holdout":
        if is_test is None:
            raise UsageError("The 'holdout' protocol needs test data: pass --test-data-dir.")
        is_test = np.asarray(is_test, bool)
        add(Fold("holdout", None, np.flatnonzero(~is_test), np.flatnonzero(is_test), False))
    elif protocol == "loso":
        if len(subjects) < 2:
            raise UsageError(f"The 'loso' protocol needs at least 2 subjects, got {len(subjects)}: {subjects}.")
        for s in subjects:
            add(Fold(s, s, np.flatnonzero(subject != s), np.flatnonzero(subject == s), False))
    elif protocol == "within-chrono":
        for s in subjects:
            idx = np.flatnonzero(subject == s)
            n_test = max(1, int(round(test_fraction * len(idx))))
            add(Fold(s, s, idx[:-n_test], idx[-n_test:], True))
    else:  # within-5fold: contiguous blocks per class keep the chronology (no shuffling)
        from sklearn.model_selection import StratifiedKFold

        for s in subjects:
            idx = np.flatnonzero(subject == s)
            counts = np.bincount(y[idx], minlength=len(classes))[classes]
            if counts.min() < n_folds:
                record_warning(
                    f"Subject {s}: {counts.min()} trials in its smallest class, fewer than the {n_folds} folds of "
                    "'within-5fold'; subject skipped.",
                    problems,
                )
                continue
            for k, (tr, te) in enumerate(StratifiedKFold(n_folds, shuffle=False).split(idx, y[idx])):
                add(Fold(f"{s}-f{k}", s, idx[tr], idx[te], True))
    if not folds:
        raise UsageError(f"No fold of the {protocol!r} protocol could be formed from subjects {subjects}.")
    return folds
