"""Run models over protocol folds, resumably, and summarise them (tables, paired tests, plot).

Each (model, fold) result is one JSON file ``<out>/folds/<model>/<key>.json`` where ``key`` hashes
the model and its config, the protocol, the fold's train/test subjects, the data recipe, the
training settings and the seed. A rerun with the same settings reads those files instead of
training again; a changed setting changes the key, so stale results are never reused.
"""

import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from ..utils import atomic_path, config_hash, record_warning

logger = logging.getLogger("neurodecode")

REFERENCE_MODEL = "dbconformer"


def _aligned(X, subject, fold, euclidean_alignment):
    """Return (X_train, X_test) for a fold, aligned without ever using test labels."""
    from .euclidean_alignment import EuclideanAlignment, align_per_group

    Xtr, Xte = X[fold.train], X[fold.test]
    if not euclidean_alignment:
        return Xtr, Xte
    if fold.within_subject:
        # One subject: the reference comes from the training trials only, and is reused for the test trials.
        ea = EuclideanAlignment().fit(Xtr)
        return ea.transform(Xtr), ea.transform(Xte)
    # Across subjects: each subject is aligned with the mean covariance of its own (unlabelled) trials.
    return align_per_group(Xtr, subject[fold.train]), align_per_group(Xte, subject[fold.test])


def _balanced_accuracy(y, p):
    classes = np.unique(y)
    return float(np.mean([(p[y == c] == c).mean() for c in classes]))


def evaluate_models(X, y, subject, folds, models, *, out, protocol, recipe, sfreq, n_outputs, epochs=10,
                    batch_size=32, lr=1e-3, seed=0, euclidean_alignment=True, model_kwargs=None, progress=None,
                    problems=None):
    """Evaluate every model on every fold; return per-fold rows (list of dict).

    Parameters
    ----------
    X : ndarray (n_trials, n_chans, n_times); y : ndarray (n_trials,); subject : ndarray (n_trials,)
    folds : list of :class:`~neurodecode.training.protocols.Fold`
    models : list of str  registry names
    out : path-like  results folder (created)
    recipe : dict  the data recipe(s), part of the result key
    model_kwargs : dict of {name: dict} | None  extra decoder arguments per model
    progress : callable(str) | None  called after each result
    """
    from .decoding import fit_predict

    out = Path(out)
    rows = []
    model_kwargs = model_kwargs or {}
    aligned = {}
    # Model-major order: a model's folds finish together, so a run stopped early still has complete rows.
    for name in models:
        for fold in folds:
            kw = model_kwargs.get(name, {})
            key_cfg = {
                "model": name, "model_kwargs": kw, "protocol": protocol, "fold": fold.name,
                "train_subjects": sorted(set(subject[fold.train].tolist())),
                "test_subjects": sorted(set(subject[fold.test].tolist())),
                "n_train": int(len(fold.train)), "n_test": int(len(fold.test)),
                "recipe": recipe, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                "euclidean_alignment": euclidean_alignment,
            }
            key = config_hash(key_cfg)
            path = out / "folds" / name / f"{key}.json"
            if path.exists():
                rows.append(json.loads(path.read_text()))
                if progress:
                    progress(f"{name} {fold.name}: cached")
                continue
            if fold.name not in aligned:
                aligned[fold.name] = _aligned(X, subject, fold, euclidean_alignment)
            Xtr, Xte = aligned[fold.name]
            t0 = time.perf_counter()
            try:
                y_pred, n_params, train_time = fit_predict(
                    name, Xtr, y[fold.train], Xte, sfreq=sfreq, n_outputs=n_outputs, model_kwargs=kw,
                    epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
            except (ValueError, RuntimeError, np.linalg.LinAlgError) as err:
                record_warning(f"Model {name!r} failed on fold {fold.name} ({err}); fold skipped for this model.", problems)
                continue
            y_true = y[fold.test]
            row = {
                "model": name, "protocol": protocol, "fold": fold.name, "test_subject": fold.subject,
                "n_train": int(len(fold.train)), "n_test": int(len(fold.test)),
                "n_correct": int((y_pred == y_true).sum()),
                "accuracy": float((y_pred == y_true).mean()),
                "balanced_accuracy": _balanced_accuracy(y_true, y_pred),
                "n_params": int(n_params), "train_time_s": round(float(train_time), 2),
                "wall_time_s": round(time.perf_counter() - t0, 2),
                "seed": seed, "epochs": epochs, "euclidean_alignment": euclidean_alignment, "key": key,
                "y_true": y_true.tolist(), "y_pred": np.asarray(y_pred).tolist(),
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, overwrite=True) as tmp:
                tmp.write_text(json.dumps({**row, "config": key_cfg}, indent=1))
            rows.append(row)
            if progress:
                progress(f"{name} {fold.name}: acc {row['accuracy']:.3f} ({train_time:.0f} s)")
    return rows


def summarize(rows, *, n_classes=2, reference=REFERENCE_MODEL):
    """Summary table, chance tests and paired tests from per-fold rows.

    Returns
    -------
    summary : pandas.DataFrame
        One row per (protocol, model): folds, mean/std accuracy and balanced accuracy (over folds),
        pooled test trials, one-sided binomial p-value of the pooled accuracy against chance
        (1/n_classes), parameters and mean training time per fold.
    paired : pandas.DataFrame
        ``reference`` against each other model on the same folds: mean difference, paired t-test
        and Wilcoxon signed-rank p-values over folds (two-sided), Benjamini-Hochberg adjusted Wilcoxon p, and
        McNemar's exact test on the pooled test trials (each trial is tested once, so it also works for a
        single hold-out fold).
    """
    import pandas as pd
    from scipy import stats

    df = pd.DataFrame([{k: v for k, v in r.items() if k not in ("y_true", "y_pred")} for r in rows])
    summ = []
    for (proto, model), g in df.groupby(["protocol", "model"], sort=False):
        n_test, n_corr = int(g.n_test.sum()), int(g.n_correct.sum())
        p_chance = stats.binomtest(n_corr, n_test, 1.0 / n_classes, alternative="greater").pvalue
        summ.append({
            "protocol": proto, "model": model, "folds": len(g),
            "acc_mean": g.accuracy.mean(), "acc_std": g.accuracy.std(ddof=1) if len(g) > 1 else 0.0,
            "bacc_mean": g.balanced_accuracy.mean(),
            "bacc_std": g.balanced_accuracy.std(ddof=1) if len(g) > 1 else 0.0,
            "pooled_acc": n_corr / n_test, "n_test_trials": n_test, "p_vs_chance": p_chance,
            "n_params": int(g.n_params.max()), "train_time_s": g.train_time_s.mean(),
        })
    summary = pd.DataFrame(summ)
    # Trial-level correctness per (protocol, model, fold), for McNemar's test (also valid with a single fold).
    correct = {(r["protocol"], r["model"], r["fold"]): np.asarray(r["y_true"]) == np.asarray(r["y_pred"])
               for r in rows if "y_true" in r}
    paired = []
    for proto, g in df.groupby("protocol", sort=False):
        ref = g[g.model == reference].set_index("fold").accuracy
        if ref.empty:
            continue
        for model in g.model.unique():
            if model == reference:
                continue
            other = g[g.model == model].set_index("fold").accuracy
            common = ref.index.intersection(other.index)
            a, b = ref[common].to_numpy(), other[common].to_numpy()
            d = a - b
            t_p = w_p = float("nan")
            if len(common) >= 2 and np.any(d != 0):
                with warnings.catch_warnings():
                    # near-constant differences make scipy warn about precision; the p-value is still reported
                    warnings.simplefilter("ignore", RuntimeWarning)
                    t_p = float(stats.ttest_rel(a, b).pvalue)
                    w_p = float(stats.wilcoxon(a, b).pvalue)
            b = c = 0
            for f in common:
                ca, cb = correct.get((proto, reference, f)), correct.get((proto, model, f))
                if ca is not None and cb is not None:
                    b += int((ca & ~cb).sum())
                    c += int((~ca & cb).sum())
            mc_p = float(stats.binomtest(b, b + c, 0.5).pvalue) if b + c else float("nan")
            paired.append({"protocol": proto, "reference": reference, "model": model, "folds": len(common),
                           "mean_diff": float(d.mean()) if len(d) else float("nan"),
                           "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum()),
                           "p_ttest": t_p, "p_wilcoxon": w_p, "p_mcnemar": mc_p})
    paired = pd.DataFrame(paired)
    if len(paired):
        paired["p_wilcoxon_bh"] = np.nan
        for proto, g in paired.groupby("protocol"):
            ok = g.p_wilcoxon.notna()
            if ok.any():
                paired.loc[g.index[ok], "p_wilcoxon_bh"] = stats.false_discovery_control(g.p_wilcoxon[ok])
    return summary, paired


def markdown_tables(summary, paired):
    """Render the summary and paired tests as Markdown tables (strings)."""
    lines = ["| protocol | model | folds | accuracy (mean ± std) | balanced acc. (mean ± std) | pooled acc. "
             "| p vs chance | params | train s/fold |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.protocol} | {r.model} | {r.folds} | {100 * r.acc_mean:.2f} ± {100 * r.acc_std:.2f} "
                     f"| {100 * r.bacc_mean:.2f} ± {100 * r.bacc_std:.2f} | {100 * r.pooled_acc:.2f} "
                     f"| {r.p_vs_chance:.2g} | {r.n_params:,} | {r.train_time_s:.1f} |")
    out = "\n".join(lines)
    if len(paired):
        lines = ["| protocol | reference vs model | folds | mean diff (pp) | wins/ties/losses | paired t p "
                 "| Wilcoxon p | Wilcoxon p (BH) | McNemar p |", "|---|---|---|---|---|---|---|---|---|"]
        for r in paired.itertuples():
            lines.append(f"| {r.protocol} | {r.reference} vs {r.model} | {r.folds} | {100 * r.mean_diff:+.2f} "
                         f"| {r.wins}/{r.ties}/{r.losses} | {r.p_ttest:.3g} | {r.p_wilcoxon:.3g} "
                         f"| {r.p_wilcoxon_bh:.3g} | {r.p_mcnemar:.3g} |")
        out += "\n\n" + "\n".join(lines)
    return out


def plot_accuracies(rows, path):
    """Per-fold accuracy of each model (points) with the mean (bar), one panel per protocol; saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.DataFrame([{k: r[k] for k in ("model", "protocol", "fold", "accuracy")} for r in rows])
    protos = list(dict.fromkeys(df.protocol))
    fig, axes = plt.subplots(1, len(protos), figsize=(1.4 + 1.3 * df.model.nunique() * len(protos), 3.6), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, proto in zip(axes[0], protos):
        g = df[df.protocol == proto]
        models = list(dict.fromkeys(g.model))
        for i, m in enumerate(models):
            acc = g[g.model == m].accuracy.to_numpy()
            ax.bar(i, acc.mean(), color="#9ecae1", width=0.7)
            ax.scatter(i + rng.uniform(-0.2, 0.2, len(acc)), acc, s=10, color="#08519c", zorder=3)
        ax.axhline(0.5, color="grey", ls="--", lw=1)
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_title(proto)
        ax.set_ylabel("test accuracy per fold")
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def write_reports(rows, out, *, n_classes=2):
    """Write ``folds.csv``, ``summary.csv``, ``paired_tests.csv``, ``summary.md`` and ``accuracy.png`` in ``out``."""
    import pandas as pd

    out = Path(out)
    summary, paired = summarize(rows, n_classes=n_classes)
    folds = pd.DataFrame([{k: v for k, v in r.items() if k not in ("y_true", "y_pred")} for r in rows])
    for name, df in (("folds.csv", folds), ("summary.csv", summary), ("paired_tests.csv", paired)):
        with atomic_path(out / name, overwrite=True) as tmp:
            df.to_csv(tmp, index=False)
    md = markdown_tables(summary, paired)
    with atomic_path(out / "summary.md", overwrite=True) as tmp:
        tmp.write_text(md + "\n")
    plot_accuracies(rows, out / "accuracy.png")
    return summary, paired, md


DEFAULT_MODELS = ("dbconformer", "eegconformer", "eegnet", "shallow", "csp_lda", "ts_lr")


def evaluate_classification(protocol, models=DEFAULT_MODELS, *, data_dir=None, test_data_dir=None, out="results",
                            subjects=None, test_subjects=None, task="left_right", epochs=10, batch_size=32, lr=1e-3,
                            seed=0, euclidean_alignment=True, cache_dir=None, recipe=None, model_kwargs=None,
                            progress=None):
    """Motor-imagery classification benchmark: data -> folds -> models -> reports in ``out``.

    Parameters
    ----------
    protocol : {"within-chrono", "within-5fold", "loso", "holdout"}
    models : sequence of str  decoder registry names
    data_dir, test_data_dir : path-like | None  eegmmidb-layout folders (``test_data_dir`` for holdout)
    out : path-like  results folder; finished (model, fold) results found there are reused
    recipe : dict | None  overrides of :func:`neurodecode.datasets.motor_imagery.default_recipe`

    Returns
    -------
    dict with ``rows``, ``summary``, ``paired``, ``markdown`` and ``problems``.
    """
    from ..datasets.motor_imagery import load_motor_imagery
    from ..decoders._registry import list_decoders
    from ..utils import UsageError, check_option
    from .protocols import make_folds

    check_option("protocol", protocol, ("within-chrono", "within-5fold", "loso", "holdout"))
    available = list_decoders()
    for m in models:
        check_option("models", m, available)
    if protocol == "holdout" and test_data_dir is None:
        raise UsageError("The 'holdout' protocol needs --test-data-dir (the subjects to test on).")
    if protocol != "holdout" and test_data_dir is not None:
        raise UsageError(f"--test-data-dir is only used by the 'holdout' protocol, not {protocol!r}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = cache_dir if cache_dir is not None else out / "cache"
    problems = []
    recipe = dict(recipe or {}, task=task)
    data = load_motor_imagery(data_dir, subjects=subjects, cache_dir=cache_dir, problems=problems, **recipe)
    X, y, subject, is_test = data.X, data.y, data.subject, None
    recipes = {"train": data.recipe, "train_store": data.store.name}
    if protocol == "holdout":
        test = load_motor_imagery(test_data_dir, subjects=test_subjects, cache_dir=cache_dir, problems=problems,
                                  **recipe)
        if test.ch_names != data.ch_names or test.X.shape[2] != data.X.shape[2]:
            raise UsageError(f"{test_data_dir}: its channels/window differ from {data_dir}'s; use the same recipe.")
        # Subject names may repeat across datasets; prefix them so alignment groups stay separate.
        X = np.concatenate([data.X, test.X])
        y = np.concatenate([data.y, test.y])
        subject = np.concatenate([np.char.add("train:", data.subject.astype(str)),
                                  np.char.add("test:", test.subject.astype(str))])
        is_test = np.r_[np.zeros(len(data.y), bool), np.ones(len(test.y), bool)]
        recipes["test_store"] = test.store.name
    folds = make_folds(protocol, subject, y, is_test=is_test, problems=problems)
    rows = evaluate_models(X, y, subject, folds, list(models), out=out, protocol=protocol, recipe=recipes,
                           sfreq=data.sfreq, n_outputs=len(data.classes), epochs=epochs, batch_size=batch_size,
                           lr=lr, seed=seed, euclidean_alignment=euclidean_alignment, model_kwargs=model_kwargs,
                           progress=progress, problems=problems)
    if not rows:
        raise UsageError("No model produced a result; see the warnings above.")
    summary, paired, md = write_reports(rows, out, n_classes=len(data.classes))
    run = {"protocol": protocol, "models": list(models), "epochs": epochs, "batch_size": batch_size, "lr": lr,
           "seed": seed, "euclidean_alignment": euclidean_alignment, "recipe": data.recipe,
           "subjects": data.subjects, "problems": problems}
    with atomic_path(out / "run.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(run, indent=1, default=str))
    return {"rows": rows, "summary": summary, "paired": paired, "markdown": md, "problems": problems}
