"""Protocols never mix training and test trials, and refuse what they cannot do."""

import numpy as np
import pytest

from neurodecode.training.euclidean_alignment import EuclideanAlignment, align_per_group, reference_matrix
from neurodecode.training.protocols import make_folds
from neurodecode.utils import UsageError

SUBJ = np.repeat(["S001", "S002", "S003"], 20)
Y = np.tile(np.r_[0, 1], 30)


def test_loso_holds_out_each_subject():
    folds = make_folds("loso", SUBJ, Y)
    assert [f.name for f in folds] == ["S001", "S002", "S003"]
    for f in folds:
        assert set(SUBJ[f.test]) == {f.subject} and f.subject not in set(SUBJ[f.train])
        assert len(f.train) + len(f.test) == 60 and not f.within_subject


def test_within_chrono_tests_on_the_last_trials():
    folds = make_folds("within-chrono", SUBJ, Y)
    f = folds[1]
    idx = np.flatnonzero(SUBJ == "S002")
    assert list(f.test) == list(idx[-4:]) and list(f.train) == list(idx[:-4])
    assert f.train.max() < f.test.min() and f.within_subject


def test_within_5fold_is_stratified_disjoint_and_covers_all():
    folds = make_folds("within-5fold", SUBJ, Y)
    assert len(folds) == 15
    s1 = [f for f in folds if f.subject == "S001"]
    tests = np.concatenate([f.test for f in s1])
    assert sorted(tests) == list(range(20))
    for f in s1:
        assert not set(f.train) & set(f.test)
        assert np.bincount(Y[f.test]).tolist() == [2, 2]


def test_holdout_needs_test_flags_and_splits_by_them():
    with pytest.raises(UsageError, match="test-data-dir"):
        make_folds("holdout", SUBJ, Y)
    (f,) = make_folds("holdout", SUBJ, Y, is_test=SUBJ == "S003")
    assert set(SUBJ[f.test]) == {"S003"} and set(SUBJ[f.train]) == {"S001", "S002"}


def test_too_few_trials_names_the_subject_and_continues():
    subj = np.r_[SUBJ, ["S004"] * 3]
    y = np.r_[Y, [0, 0, 1]]
    problems = []
    with pytest.warns(UserWarning, match="Subject S004"):
        folds = make_folds("within-5fold", subj, y, problems=problems)
    assert len(folds) == 15 and "S004" in problems[0]


def test_bad_protocol_and_single_subject():
    with pytest.raises(UsageError, match="'protocol'.*but got 'lodo'"):
        make_folds("lodo", SUBJ, Y)
    with pytest.raises(UsageError, match="at least 2 subjects"):
        make_folds("loso", SUBJ[:20], Y[:20])


def test_euclidean_alignment_whitens_each_subject_without_touching_input():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(4, 4))
    X = np.einsum("cd,ndt->nct", mix, rng.normal(size=(30, 4, 200))).astype(np.float32)
    X[15:] *= 5
    before = X.copy()
    Xa = align_per_group(X, np.repeat(["a", "b"], 15))
    assert np.array_equal(X, before)
    for part in (Xa[:15], Xa[15:]):
        np.testing.assert_allclose(reference_matrix(part), np.eye(4), atol=1e-4)
    # a reference fitted on some trials is applied unchanged to others (within-subject folds)
    ea = EuclideanAlignment().fit(X[:10])
    assert not np.allclose(reference_matrix(ea.transform(X[10:15])), np.eye(4), atol=1e-3)
    with pytest.raises(ValueError, match="n_trials, n_chans, n_times"):
        reference_matrix(X[0])


@pytest.mark.parametrize("protocol", ["within-chrono", "loso"])
def test_alignment_of_training_trials_ignores_test_trials(protocol):
    from neurodecode.training.evaluation import _aligned

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 4, 50)).astype(np.float32)
    fold = make_folds(protocol, SUBJ, Y)[0]
    a_tr, a_te = _aligned(X, SUBJ, fold, True)
    X2 = X.copy()
    X2[fold.test] *= 10  # change only the test trials
    b_tr, b_te = _aligned(X2, SUBJ, fold, True)
    np.testing.assert_allclose(a_tr, b_tr, rtol=1e-5)
    if protocol == "within-chrono":  # the training reference is applied unchanged to the test trials
        np.testing.assert_allclose(b_te, 10 * a_te, rtol=1e-4)
    else:  # the test subject is whitened by its own (label-free) reference: scale disappears
        np.testing.assert_allclose(b_te, a_te, rtol=1e-3, atol=1e-4)


def test_decoding_system_needs_a_sized_decoder():
    from neurodecode.training.decoding import DecodingSystem

    system = DecodingSystem("dbconformer")
    with pytest.raises(UsageError, match="signal_kwargs"):
        system.configure_model()
    with pytest.raises(UsageError, match="'optimizer'"):
        DecodingSystem("dbconformer", optimizer="torch.optim.Adamz")
