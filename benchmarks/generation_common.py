"""Shared set-up of the generation benchmarks: data, split, model configs (imported by the scripts)."""

import numpy as np

# The digits' native resolution is 8x8; the encoder sees them upsampled to 16x16 (then 224), and the
# denoisers work at 8x8, which keeps training to minutes on one shared CPU core.
ENCODED_SIZE = 16
IMAGE_SIZE = 8
SPLIT_SEED = 0

# Denoisers sized for minutes of CPU training on one thread (16x16 grey digits).
ANN_CONFIG = dict(sample_size=IMAGE_SIZE, in_channels=1, cond_dim=1280, n_tokens=4, cross_attention_dim=64,
                  block_out_channels=(32, 64), layers_per_block=1, attention_levels=(False, True),
                  attention_head_dim=16, norm_num_groups=8)
SNN_CONFIG = dict(sample_size=IMAGE_SIZE, in_channels=1, cond_dim=1280, n_tokens=4, cross_attention_dim=64,
                  block_out_channels=(32, 64), layers_per_block=1, attention_levels=(False, True),
                  attention_head_dim=16, time_steps=4, tau=None, threshold=1.0)


def load_digits_with_embeddings(cache_dir=None):
    """Real 8x8 scikit-learn digits upsampled to 16x16, their EfficientNet-Lite0 embeddings and split.

    Returns
    -------
    images : ndarray (n, 16, 16, 3) uint8
        What the encoder embedded (use :func:`to_model_size` for the denoisers' 8x8 targets).
    labels : ndarray (n,)
    embeds : ndarray (n, 1280) float32
    split : ndarray (n,) of "train" / "calib" / "test"
    encoder : ImageEncoder
    """
    from neurodecode.datasets.paired import load_image_set
    from neurodecode.decoders.image_encoders import encode_cached, get_image_encoder
    from neurodecode.training.generation_system import image_split

    s = load_image_set("digits", size=ENCODED_SIZE)
    enc = get_image_encoder()
    embeds = encode_cached(enc, s.images, cache_dir=cache_dir)
    split = image_split(s.labels, calib_fraction=0.1, test_fraction=0.2, seed=SPLIT_SEED)
    return s.images, s.labels, np.asarray(embeds, np.float32), split, enc


def noise_conditioning(embeds_train, n, seed):
    """Out-of-distribution conditioning: Gaussian vectors with the training embeddings' per-dim mean and std."""
    rng = np.random.default_rng(seed)
    mu, sd = embeds_train.mean(0), embeds_train.std(0)
    return (mu + sd * rng.standard_normal((n, embeds_train.shape[1]))).astype(np.float32)


def to_model_size(images):
    """(n, 16, 16, 3) uint8 -> (n, 8, 8, 3) float in [0, 1] by 2x2 averaging."""
    x = np.asarray(images, np.float32) / 255.0
    n, h, w, c = x.shape
    f = h // IMAGE_SIZE
    return x.reshape(n, IMAGE_SIZE, f, IMAGE_SIZE, f, c).mean((2, 4))
