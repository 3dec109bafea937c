"""fMRI: real 4D NIfTI files, masker round trip, NSD-style HDF5, bad inputs."""

import h5py
import numpy as np
import pytest

from neurodecode.io import RunMasker, read_bold
from neurodecode.utils import InputFileError
from neurodecode.utils._errors import RecoverableDamageWarning


@pytest.mark.parametrize(
    "rel, shape, tr",
    [
        (("fmri_nitime", "fmri1.nii.gz"), (10, 10, 18, 40), 1.35),
        (("fmri_nipy", "functional.nii.gz"), (17, 21, 3, 20), 2.0),
    ],
)
def test_real_bold(data_file, rel, shape, tr):
    run = read_bold(data_file(*rel))
    assert run.data.shape == shape
    assert run.tr == pytest.approx(tr, rel=1e-4)
    X = run.to_array()
    assert X.shape[0] == shape[-1] and 0 < X.shape[1] <= np.prod(shape[:3])
    back = run.masker.inverse_transform(X)
    np.testing.assert_allclose(back[run.masker.mask], run.data[run.masker.mask])


def test_millisecond_tr_header_is_repaired_with_a_warning(data_file):
    with pytest.warns(RecoverableDamageWarning, match="implausible"):
        run = read_bold(data_file("fmri_nibabel", "example4d.nii.gz"))
    assert run.tr == pytest.approx(2.0)


def test_3d_anatomical_refused(data_file):
    with pytest.raises(InputFileError, match="expected a 4D BOLD image"):
        read_bold(data_file("fmri_nipy", "anatomical.nii.gz"))


def test_nsd_style_betas(tmp_path):
    betas = np.random.default_rng(0).normal(size=(30, 500)).astype(np.float32)
    p = tmp_path / "betas_session01.hdf5"
    with h5py.File(p, "w") as f:
        f.create_dataset("betas", data=betas)
    run = read_bold(p)
    np.testing.assert_array_equal(run.to_array(), betas)


def test_h5_with_several_datasets_needs_a_name(tmp_path):
    p = tmp_path / "multi.h5"
    with h5py.File(p, "w") as f:
        f["a"] = np.zeros((2, 3))
        f["b"] = np.zeros((2, 3))
    with pytest.raises(InputFileError, match="name the dataset"):
        read_bold(p)
    assert read_bold(p, dataset="b").to_array().shape == (2, 3)


def test_masker_rejects_wrong_shape():
    m = RunMasker(np.ones((2, 2, 2), bool))
    with pytest.raises(ValueError, match="does not match the mask"):
        m.transform(np.zeros((3, 2, 2, 5)))
