"""End-to-end evaluation: resumable results, reports, CLI errors and the train command."""

import json
from pathlib import Path

import pandas as pd
import pytest

from neurodecode.cli import main
from neurodecode.training import decoding
from neurodecode.training.evaluation import evaluate_classification


def test_loso_evaluation_resumes_and_reports(mi_folder, tmp_path, monkeypatch):
    out = tmp_path / "res"
    res = evaluate_classification("loso", ["csp_lda", "dbconformer"], data_dir=mi_folder, out=out, epochs=1,
                                  cache_dir=tmp_path / "cache")
    folds = pd.read_csv(out / "folds.csv")
    assert len(folds) == 6 and set(folds.test_subject) == {"S001", "S002", "S003"}
    summ = pd.read_csv(out / "summary.csv").set_index("model")
    # the synthetic classes differ by a lateralised rhythm: CSP must find it across subjects
    assert summ.loc["csp_lda", "acc_mean"] > 0.8 and summ.loc["csp_lda", "p_vs_chance"] < 1e-3
    assert summ.loc["dbconformer", "n_params"] > 50_000
    paired = pd.read_csv(out / "paired_tests.csv")
    assert paired.model.tolist() == ["csp_lda"] and paired.folds.tolist() == [3]
    assert (out / "accuracy.png").stat().st_size > 1000 and "dbconformer vs csp_lda" in res["markdown"]
    assert len(list((out / "folds" / "dbconformer").glob("*.json"))) == 3

    def boom(*a, **k):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(decoding, "fit_predict", boom)
    res2 = evaluate_classification("loso", ["csp_lda", "dbconformer"], data_dir=mi_folder, out=out, epochs=1,
                                   cache_dir=tmp_path / "cache")
    assert [r["accuracy"] for r in res2["rows"]] == [r["accuracy"] for r in res["rows"]]
    with pytest.raises(AssertionError, match="trained again"):  # a new setting is a new key
        evaluate_classification("loso", ["csp_lda"], data_dir=mi_folder, out=out, epochs=1, seed=1,
                                cache_dir=tmp_path / "cache")
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 0 and run["recipe"]["sfreq"] == 64.0


def test_holdout_trains_on_one_folder_tests_on_another(mi_folder, tmp_path):
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir(), test.mkdir()
    for s in ("S001", "S002"):
        (train / s).symlink_to(mi_folder / s)
    (test / "S003").symlink_to(mi_folder / "S003")
    res = evaluate_classification("holdout", ["ts_lr"], data_dir=train, test_data_dir=test, out=tmp_path / "o",
                                  cache_dir=tmp_path / "cache")
    (row,) = res["rows"]
    assert row["n_train"] == 48 and row["n_test"] == 24


def test_mcnemar_counts_discordant_trials():
    from neurodecode.training.evaluation import summarize

    y = [0, 1] * 10
    rows = [{"model": m, "protocol": "holdout", "fold": "holdout", "n_test": 20, "n_correct": k,
             "accuracy": k / 20, "balanced_accuracy": k / 20, "n_params": 0, "train_time_s": 0.0,
             "y_true": y, "y_pred": p} for m, k, p in
            [("dbconformer", 20, y), ("csp_lda", 10, [1 - v if i % 2 else v for i, v in enumerate(y)])]]
    summary, paired = summarize(rows)
    # 10 trials right only for the reference, none the other way: exact two-sided p = 2 * 0.5**10
    assert paired.p_mcnemar.iloc[0] == pytest.approx(2 * 0.5 ** 10)
    assert summary.set_index("model").loc["dbconformer", "p_vs_chance"] == pytest.approx(0.5 ** 20)


@pytest.mark.parametrize("argv, code, msg", [
    (["evaluate", "--protocol", "lodo"], 2, "'protocol'.*'lodo'"),
    (["evaluate", "--protocol", "holdout"], 2, "test-data-dir"),
    (["evaluate", "--protocol", "loso", "--models", "dbconformer,nope"], 2, "'models'.*'nope'"),
    (["evaluate", "--task", "segmentation", "--protocol", "loso"], 2, "'--task'"),
    (["train", "missing.yaml"], 1, "no such pipeline config"),
    (["evaluate", "--protocol", "loso", "--kk", "3"], 2, "No such option.*--kk 3"),
])
def test_cli_errors_are_one_sentence(argv, code, msg, mi_folder, tmp_path, capsys):
    extra = [] if argv[0] == "train" else ["--data-dir", str(mi_folder), "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        main(argv + extra)
    assert exc.value.code == code
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "Traceback" not in err
    import re

    assert re.search(msg, err)


def test_train_command_runs_the_pipeline_config(mi_folder, tmp_path):
    cfg = "pipelines/dbconformer_mi.yaml"
    with pytest.raises(SystemExit) as exc:
        main(["train", cfg, "--trainer.max_epochs=1", f"--data.data_dir={mi_folder}", "--data.val_subjects=[S003]",
              f"--data.cache_dir={tmp_path}", f"--trainer.default_root_dir={tmp_path}",
              f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.enable_progress_bar=false",
              "--model.init_args.decoder_kwargs.tem_depth=1"])
    assert exc.value.code == 0
    ckpts = list(tmp_path.rglob("*.ckpt"))
    metrics = pd.read_csv(next(tmp_path.rglob("metrics.csv")))
    assert len(ckpts) == 1 and "val_acc" in metrics.columns


def test_evaluate_dispatches_retrieval_task(capsys):
    from neurodecode.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--task", "retrieval", "--method", "nope", "--out", "/tmp/nd_unused"])
    assert exc.value.code == 2
    assert "'method'" in capsys.readouterr().err


def test_train_without_root_dir_runs_in_its_own_results_folder(tmp_path):
    from neurodecode.training.decoding import _root_dir_override

    bare = tmp_path / "atat_emg.yaml"
    bare.write_text("trainer:\n  logger: false\nmodel: {}\n")
    assert _root_dir_override(bare, []) == [f"--trainer.default_root_dir={Path('results/train/atat_emg')}"]
    # the config's own folder, or the user's override, wins
    assert _root_dir_override(bare, [f"--trainer.default_root_dir={tmp_path}"]) == []
    named = tmp_path / "named.yaml"
    named.write_text("trainer:\n  default_root_dir: somewhere\n")
    assert _root_dir_override(named, []) == []
