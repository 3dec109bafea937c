"""Write a demo input for ``neurodecode reconstruct``: held-out digits, their embeddings, simulated EEG.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/generation_demo.py /tmp/demo.npz --n 16
    neurodecode reconstruct --decoder embeds --generator spiking-digits --input /tmp/demo.npz -o /tmp/demo_out
"""

import argparse

import numpy as np

from generation_common import load_digits_with_embeddings, to_model_size


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--cache-dir", default=None)
    a = p.parse_args()
    images, labels, embeds, split, _ = load_digits_with_embeddings(a.cache_dir)
    idx = np.flatnonzero(split == "test")[: a.n]
    # Test images only: the shipped generators never saw them.
    np.savez_compressed(a.out, images=to_model_size(images[idx]), embeds=embeds[idx], labels=labels[idx])
    print(f"wrote {a.out}: {len(idx)} held-out digits with their embeddings")


if __name__ == "__main__":
    main()
