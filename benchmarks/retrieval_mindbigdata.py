"""Retrieval on REAL EEG: the MindBigData "MW" sample (one FP1 channel while digits 0-9 were shown).

Each trial is paired with one real image of its digit; retrieval is among the 10 digit images
(closed set; chance top-1 10 %, top-5 50 %), chronological split (first 70 % of events train, the last
10 % of those validate, last 30 % test). 174 trials from a consumer headset: expect chance.

    python benchmarks/retrieval_mindbigdata.py --seeds 0 1 2
"""

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from neurodecode.datasets.things import read_mindbigdata_mw  # noqa: E402
from neurodecode.decoders.retrieval_metrics import cosine_similarity  # noqa: E402
from neurodecode.training.retrieval import RetrievalDataModule, run_retrieval  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--methods", nargs="+", default=["ridge", "brain_module", "ubp", "ubp:uncertainty"],
                   help="method or method:blur")
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/neurodecode/embeddings"))
    args = p.parse_args(argv)
    print(f"# command: python benchmarks/retrieval_mindbigdata.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    data = read_mindbigdata_mw()
    print(f"# {len(data)} trials ({(data.split == 'train').sum()} train incl. validation, "
          f"{(data.split == 'test').sum()} test), 10 candidate digit images")
    # A decoder that ignores the EEG and always ranks the most frequent training digit first scores the
    # test frequency of that digit: the real floor to beat, above the uniform 10 %.
    tr_codes = data.image_index[data.split == "train"]
    te_codes = data.image_index[data.split == "test"]
    major = np.bincount(tr_codes, minlength=10).argmax()
    print(f"# majority-class floor: always digit {major} -> top-1 {100 * np.mean(te_codes == major):.1f} % "
          f"(test digit counts {np.bincount(te_codes, minlength=10).tolist()})")
    print("| method | blur | seed | top-1 % | top-5 % | median rank | chance top-1 / top-5 % | most frequent top-1 guess |")
    print("|---|---|---|---|---|---|---|---|")
    rows = {}
    for spec in args.methods:
        method, blur = (spec.split(":") + ["none"])[:2]
        for seed in args.seeds if method != "ridge" else args.seeds[:1]:
            dm = RetrievalDataModule(data=data, blur=blur, val_mode="trials", encoder_size=128, seed=seed,
                                     cache_dir=args.cache_dir, batch_size=32)
            kw = {"hidden_dim": 32, "depth": 4} if method == "brain_module" else None
            s, model = run_retrieval(dm, method, decoder_kwargs=kw, max_epochs=args.epochs, seed=seed)
            rows.setdefault((method, blur), []).append(s)
            # Which digit does the decoder put first? A decoder that ignores the EEG always picks the same one.
            X, subj, _ = dm.arrays("test")
            pred = model.predict(X, subj) if method == "ridge" else model.eval()(
                torch.as_tensor(X), torch.as_tensor(subj)).detach().numpy()
            first = cosine_similarity(pred, dm.targets.candidates(dm.test_images)).argmax(1)
            top = np.bincount(first, minlength=10)
            print(f"| {method} | {blur} | {seed} | {100 * s['top1']:.1f} | {100 * s['top5']:.1f} | "
                  f"{s['median_rank']:.1f} | 10.0 / 50.0 | digit {top.argmax()} for {100 * top.max() / len(first):.0f} % |",
                  flush=True)
    print("\n| method | blur | mean top-1 % | mean top-5 % | seeds |")
    print("|---|---|---|---|---|")
    for (method, blur), ss in rows.items():
        print(f"| {method} | {blur} | {100 * np.mean([s['top1'] for s in ss]):.1f} | "
              f"{100 * np.mean([s['top5'] for s in ss]):.1f} | {len(ss)} |")


if __name__ == "__main__":
    main()
