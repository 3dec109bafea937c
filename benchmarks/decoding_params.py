"""Print parameter counts of DBConformer and the braindecode baselines, at the paper's
configuration (BNCI2014001: 22 channels, 1000 samples at 250 Hz) and at ours (eegmmidb recipe:
21 channels, 3 s at 64 Hz).

    python benchmarks/decoding_params.py
"""

from neurodecode.decoders import create_decoder

CONFIGS = {
    "paper (22 ch, 1000 samples, 250 Hz)": dict(n_chans=22, n_outputs=2, n_times=1000, sfreq=250.0),
    "eegmmidb recipe (21 ch, 192 samples, 64 Hz)": dict(n_chans=21, n_outputs=2, n_times=192, sfreq=64.0),
}
MODELS = ("dbconformer", "eegconformer", "eegnet", "shallow")


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def main():
    print("| configuration | " + " | ".join(MODELS) + " | EEGConformer / DBConformer |")
    print("|---" * (len(MODELS) + 2) + "|")
    for name, kw in CONFIGS.items():
        counts = {m: n_params(create_decoder(m, **kw)) for m in MODELS}
        cells = " | ".join(f"{counts[m]:,}" for m in MODELS)
        print(f"| {name} | {cells} | {counts['eegconformer'] / counts['dbconformer']:.2f} |")
    db = create_decoder("dbconformer", **CONFIGS["paper (22 ch, 1000 samples, 250 Hz)"])
    print(f"\nDBConformer at the paper's configuration without the channel-attention pooling: "
          f"{n_params(db) - n_params(db.channel_pool):,}")


if __name__ == "__main__":
    main()
