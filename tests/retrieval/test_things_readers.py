"""Readers for THINGS-EEG2 arrays, THINGS-MEG epochs and image + stimulus-table layouts (fixtures in tmp_path)."""

import numpy as np
import pandas as pd
import pytest

from neurodecode.datasets.things import read_image_table, read_things_eeg2, read_things_meg
from neurodecode.utils import InputFileError


def _write_png(path, value):
    from skimage.io import imsave

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((12, 12, 3), value, np.uint8)
    img[3:9, 3:9] = 255 - value
    imsave(path, img, check_contrast=False)


def _things_eeg2(root, n_train=6, n_test=4, reps=(4, 5), n_ch=3, n_t=10, with_images=True):
    rng = np.random.default_rng(0)
    concepts_tr = [f"{i // 2 + 1:05d}_c{i // 2}" for i in range(n_train)]
    concepts_te = [f"{i + 100:05d}_t{i}" for i in range(n_test)]
    meta = {
        "train_img_concepts": concepts_tr, "train_img_files": [f"tr{i}.png" for i in range(n_train)],
        "test_img_concepts": concepts_te, "test_img_files": [f"te{i}.png" for i in range(n_test)],
    }
    np.save(root / "image_metadata.npy", meta)
    sub = root / "sub-02"
    sub.mkdir()
    arrays = {}
    for name, n, r in (("training", n_train, reps[0]), ("test", n_test, reps[1])):
        x = rng.normal(size=(n, r, n_ch, n_t)).astype(np.float32)
        arrays[name] = x
        np.save(sub / f"preprocessed_eeg_{name}.npy",
                {"preprocessed_eeg_data": x, "ch_names": ["Oz", "O1", "O2"][:n_ch], "times": np.arange(n_t) / 100 - 0.2})
    if with_images:
        for i, (c, f) in enumerate(zip(concepts_tr, meta["train_img_files"])):
            _write_png(root / "training_images" / c / f, 10 * i)
        for i, (c, f) in enumerate(zip(concepts_te, meta["test_img_files"])):
            _write_png(root / "test_images" / c / f, 200 - 10 * i)
    return arrays


def test_things_eeg2_reader(tmp_path):
    arrays = _things_eeg2(tmp_path)
    d = read_things_eeg2(tmp_path, subject=2, load_images=True)
    assert d.X.shape == (10, 3, 10) and d.sfreq == pytest.approx(100.0)
    np.testing.assert_allclose(d.X[0], arrays["training"][0].mean(0), rtol=1e-6)
    np.testing.assert_allclose(d.X[7], arrays["test"][1].mean(0), rtol=1e-6)
    assert list(d.split) == ["train"] * 6 + ["test"] * 4
    assert list(d.image_index) == list(range(10))
    assert d.images.shape == (10, 12, 12, 3) and d.images[7, 0, 0, 0] == 190
    # Concepts: training images share concepts two by two; test concepts are new.
    assert d.image_labels[0] == d.image_labels[1] != d.image_labels[2]
    assert not set(d.image_labels[:6]) & set(d.image_labels[6:])
    e = read_things_eeg2(tmp_path, subject=2, average_repetitions=False)
    assert e.X.shape == (6 * 4 + 4 * 5, 3, 10) and e.images is None
    np.testing.assert_array_equal(e.image_index[:5], [0, 0, 0, 0, 1])


def test_things_eeg2_reader_errors(tmp_path):
    _things_eeg2(tmp_path, with_images=False)
    with pytest.raises(InputFileError, match="sub-07"):
        read_things_eeg2(tmp_path, subject=7)
    np.save(tmp_path / "sub-02" / "preprocessed_eeg_test.npy", {"wrong": 1})
    with pytest.raises(InputFileError, match="preprocessed_eeg_data"):
        read_things_eeg2(tmp_path, subject=2)


def _epochs_file(path, n, n_ch=4, n_t=20, kind="mag"):
    import mne

    info = mne.create_info([f"MEG{i:03d}" for i in range(n_ch)], 100.0, kind)
    for i, ch in enumerate(info["chs"]):
        ch["loc"][:3] = [0.05 * np.cos(i), 0.05 * np.sin(i), 0.04]
    x = np.random.default_rng(1).normal(size=(n, n_ch, n_t)) * 1e-13
    mne.EpochsArray(x, info, verbose="error").save(path, verbose="error")
    return x


def test_things_meg_reader(tmp_path):
    rows = []
    for i in range(6):
        rows.append({"image_path": f"img/train{i}.png", "trial_type": "exp", "things_category_nr": i // 2})
    for rep in range(3):
        for j in range(2):
            rows.append({"image_path": f"img/test{j}.png", "trial_type": "test", "things_category_nr": 10 + j})
    rows.append({"image_path": "img/catch.png", "trial_type": "catch", "things_category_nr": 99})
    pd.DataFrame(rows).to_csv(tmp_path / "sample_attributes_P1.csv", index=False)
    x = _epochs_file(tmp_path / "preprocessed_P1-epo.fif", len(rows))
    for r in rows:
        _write_png(tmp_path / r["image_path"], 50)
    d = read_things_meg(tmp_path / "preprocessed_P1-epo.fif", tmp_path / "sample_attributes_P1.csv", load_images=True)
    assert (d.split == "train").sum() == 6 and (d.split == "test").sum() == 2  # 3 repetitions averaged, catch dropped
    assert d.ch_type == "mag" and d.X.shape[1:] == (4, 20) and d.images.shape[0] == 8
    test_rows = np.flatnonzero(d.split == "test")
    img0 = d.image_index[test_rows[0]]
    name = d.meta["image_files"][img0].rsplit("/", 1)[-1]
    assert name.startswith("test")
    trials = [i for i, r in enumerate(rows) if r["image_path"].endswith("/" + name)]
    assert len(trials) == 3
    np.testing.assert_allclose(d.X[test_rows[0]], x[trials].mean(0), rtol=1e-5)
    assert not set(d.image_labels[d.image_index[d.split == "train"]]) & set(d.image_labels[d.image_index[test_rows]])


def test_things_meg_reader_errors(tmp_path):
    pd.DataFrame({"image_path": ["a.png"], "trial_type": ["oops"], "things_category_nr": [1]}).to_csv(
        tmp_path / "t.csv", index=False)
    _epochs_file(tmp_path / "x-epo.fif", 1)
    with pytest.raises(InputFileError, match="exp/test/catch"):
        read_things_meg(tmp_path / "x-epo.fif", tmp_path / "t.csv")
    pd.DataFrame({"img": ["a.png"]}).to_csv(tmp_path / "u.csv", index=False)
    with pytest.raises(InputFileError, match="lacks the column"):
        read_things_meg(tmp_path / "x-epo.fif", tmp_path / "u.csv")


def test_image_table_reader_npz(tmp_path):
    x = np.random.default_rng(2).normal(size=(5, 3, 8)).astype(np.float32)
    np.savez(tmp_path / "brain.npz", X=x, sfreq=50.0, ch_names=np.array(["Oz", "O1", "O2"]))
    tab = pd.DataFrame({"image": ["a.png", "b.png", "a.png", "c.png", "c.png"],
                        "split": ["train", "train", "train", "test", "test"], "label": ["x", "y", "x", "z", "z"]})
    tab.to_csv(tmp_path / "stim.csv", index=False)
    for name, v in (("a.png", 0), ("b.png", 100), ("c.png", 200)):
        _write_png(tmp_path / name, v)
    d = read_image_table(tmp_path / "brain.npz", tmp_path / "stim.csv", label_column="label")
    assert d.X.shape == (5, 3, 8) and d.images.shape == (3, 12, 12, 3)
    np.testing.assert_array_equal(d.image_index, [0, 1, 0, 2, 2])
    avg = read_image_table(tmp_path / "brain.npz", tmp_path / "stim.csv", average_repetitions=True, load_images=False)
    assert len(avg) == 3
    np.testing.assert_allclose(avg.X[0], x[[0, 2]].mean(0), rtol=1e-6)
    tab.iloc[:4].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(InputFileError, match="4 rows"):
        read_image_table(tmp_path / "brain.npz", tmp_path / "short.csv")
    (tmp_path / "c.png").unlink()
    with pytest.raises(InputFileError, match="c.png"):
        read_image_table(tmp_path / "brain.npz", tmp_path / "stim.csv")
